"""Drawing primitives on uint8 RGB images [H, W, 3] (numpy in, new array out), and
the one set of landmark colours every picture uses."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

DETECTED_COLOUR = (40, 110, 255)  # blue: the detected (target) landmarks, as in the seed's figure
PREDICTED_COLOUR = (255, 50, 40)  # red: the fitted model's projected landmarks
# Preprocessing check pictures: one colour per group of the 68 points (jaw, brows,
# nose, right eye, left eye, lips) so that the order can be checked by eye.
LANDMARK_GROUPS = (
    (0, 17, (255, 255, 255)), (17, 27, (255, 128, 0)), (27, 36, (255, 255, 0)),
    (36, 42, (0, 255, 255)), (42, 48, (0, 128, 255)), (48, 68, (255, 0, 128)),
)


def overlay(image: np.ndarray, render: np.ndarray, mask: np.ndarray, opacity: float = 0.75) -> np.ndarray:
    """Render blended over the photo where it covers it.

    image uint8 [H, W, 3]; render float [H, W, 3] in [0, 1]; mask float [H, W] in
    [0, 1] (render coverage); opacity of the render. Returns uint8 [H, W, 3].
    """
    alpha = np.clip(mask, 0.0, 1.0)[..., None] * opacity
    blended = image.astype(np.float32) / 255.0 * (1 - alpha) + np.clip(render, 0.0, 1.0) * alpha
    return np.round(blended * 255).astype(np.uint8)


def draw_landmarks(image: np.ndarray, points: np.ndarray, colour: tuple[int, int, int], radius: float = 1.5) -> np.ndarray:
    """Dots at points [L, 2] (x, y) px; non-finite points are skipped."""
    canvas = Image.fromarray(np.ascontiguousarray(image))
    pen = ImageDraw.Draw(canvas)
    for x, y in np.asarray(points, dtype=np.float64):
        if np.isfinite(x) and np.isfinite(y):
            pen.ellipse([x - radius, y - radius, x + radius, y + radius], fill=colour)
    return np.asarray(canvas).copy()


def label(image: np.ndarray, text: str, colour: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """Text in the top-left corner on a dark strip, so it reads on any background."""
    canvas = Image.fromarray(np.ascontiguousarray(image))
    pen = ImageDraw.Draw(canvas)
    left, top, right, bottom = pen.textbbox((3, 2), text)
    pen.rectangle([0, 0, right + 3, bottom + 2], fill=(0, 0, 0))
    pen.text((3, 2), text, fill=colour)
    return np.asarray(canvas).copy()
