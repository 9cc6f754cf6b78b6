"""Pictures for checking preprocessing by eye: parsing colours and numbered-order
landmarks drawn over a crop."""
from __future__ import annotations

import cv2
import numpy as np

from lib.visualize.draw import LANDMARK_GROUPS

PARSING_COLOURS = np.array(
    [
        (0, 0, 0),  # background
        (230, 180, 140),  # skin
        (120, 60, 20),  # left brow
        (60, 120, 20),  # right brow
        (40, 90, 255),  # left eye
        (0, 220, 255),  # right eye
        (255, 220, 0),  # nose
        (255, 60, 60),  # upper lip
        (120, 0, 120),  # inner mouth
        (255, 120, 200),  # lower lip
    ],
    dtype=np.uint8,
)
"""uint8 [10, 3] RGB colour of each parsing class."""



def colour_parsing(parsing: np.ndarray) -> np.ndarray:
    """uint8 [H, W] labels -> uint8 [H, W, 3] RGB picture."""
    return PARSING_COLOURS[np.asarray(parsing)]


def draw_overlay(image: np.ndarray, landmarks: np.ndarray | None, parsing: np.ndarray | None = None, scale: int = 2) -> np.ndarray:
    """Side-by-side picture uint8 [H*scale, 2*W*scale, 3]: the image with landmarks
    (groups in different colours, iBUG 36-41 and 42-47 distinct) and, right of it, the
    parsing map blended over the image. landmarks: [68, 2] px in `image`."""
    rgb = np.asarray(image, dtype=np.uint8)
    height, width = rgb.shape[:2]
    big = cv2.resize(rgb, (width * scale, height * scale), interpolation=cv2.INTER_CUBIC)
    left = big.copy()
    if landmarks is not None:
        for start, stop, colour in LANDMARK_GROUPS:
            for x, y in np.asarray(landmarks[start:stop], dtype=np.float64) * scale:
                cv2.circle(left, (int(round(x)), int(round(y))), max(scale, 2), colour, -1, cv2.LINE_AA)
    if parsing is None:
        right = big
    else:
        colours = cv2.resize(colour_parsing(parsing), (width * scale, height * scale), interpolation=cv2.INTER_NEAREST)
        right = (0.45 * big + 0.55 * colours).astype(np.uint8)
    return np.concatenate([left, right], axis=1)
