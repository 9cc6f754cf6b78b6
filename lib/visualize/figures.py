"""The per-view figure (like the seed's example), the per-subject sheet and the
reconstruction figure (inputs, reconstruction, error heat maps)."""
from __future__ import annotations

import numpy as np
from PIL import Image

from lib.visualize.draw import DETECTED_COLOUR, PREDICTED_COLOUR, draw_landmarks, label, overlay

GAP = 4  # px between panels
GAP_COLOUR = 255


def view_figure(
    image: np.ndarray,
    render: np.ndarray,
    mask: np.ndarray,
    predicted: np.ndarray,
    detected: np.ndarray | None,
    title: str,
) -> np.ndarray:
    """Three panels side by side: the photo, the render over it, and the landmarks
    (detected blue, fitted model red) with their median distance.

    image uint8 [H, W, 3]; render float [H, W, 3] in [0, 1] and mask [H, W] at the
    image's size; predicted, detected [68, 2] px (detected may be None). Returns
    uint8 [H, 3W + 2 GAP, 3].
    """
    panel_input = label(image, title)
    panel_overlay = label(overlay(image, render, mask), "fit")
    dots = image
    caption = "landmarks: red fit"
    if detected is not None:
        dots = draw_landmarks(dots, detected, DETECTED_COLOUR)
        median = float(np.median(np.linalg.norm(predicted - detected, axis=-1)))
        caption = f"blue detected, red fit: {median:.1f} px"
    dots = draw_landmarks(dots, predicted, PREDICTED_COLOUR)
    return _row([panel_input, panel_overlay, label(dots, caption)])


def subject_sheet(view_figures: list[np.ndarray], novel: list[np.ndarray], title: str) -> np.ndarray:
    """Stack the view figures, then a row of novel-angle renders scaled to the view
    height, under a title strip. Returns uint8 [H', W', 3]."""
    width = max(f.shape[1] for f in view_figures)
    height = view_figures[0].shape[0]
    scaled = [_resize(p, height) for p in novel]
    rows = [_pad_width(f, width) for f in view_figures] + [_pad_width(_row(scaled), width)]
    header = label(np.zeros((16, width, 3), np.uint8), title)
    return _stack([header] + rows)


def reconstruction_figure(panels: list[tuple[str, np.ndarray]], height: int = 192) -> np.ndarray:
    """One row of labelled panels scaled to `height` px, e.g. the input views, a render
    of the reconstruction and its error heat map. panels: (caption, uint8 [h, w, 3]).
    Returns uint8 [height, W, 3]."""
    return _row([label(_resize(image, height), caption) for caption, image in panels])


def stacked(images: list[np.ndarray]) -> np.ndarray:
    """Images one under another, GAP px apart, padded on the right to the widest.
    Returns uint8 [sum H + gaps, max W, 3]."""
    width = max(image.shape[1] for image in images)
    return _stack([_pad_width(image, width) for image in images])


def _row(panels: list[np.ndarray]) -> np.ndarray:
    height = max(p.shape[0] for p in panels)
    gap = np.full((height, GAP, 3), GAP_COLOUR, np.uint8)
    parts = []
    for i, panel in enumerate(panels):
        if i:
            parts.append(gap)
        parts.append(_pad_height(panel, height))
    return np.concatenate(parts, axis=1)


def _stack(rows: list[np.ndarray]) -> np.ndarray:
    parts = []
    for i, row in enumerate(rows):
        if i:
            parts.append(np.full((GAP, row.shape[1], 3), GAP_COLOUR, np.uint8))
        parts.append(row)
    return np.concatenate(parts, axis=0)


def _resize(image: np.ndarray, height: int) -> np.ndarray:
    if image.shape[0] == height:
        return image
    width = max(1, round(image.shape[1] * height / image.shape[0]))
    return np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))


def _pad_width(image: np.ndarray, width: int) -> np.ndarray:
    pad = width - image.shape[1]
    return np.pad(image, ((0, 0), (0, pad), (0, 0)), constant_values=GAP_COLOUR) if pad > 0 else image


def _pad_height(image: np.ndarray, height: int) -> np.ndarray:
    pad = height - image.shape[0]
    return np.pad(image, ((0, pad), (0, 0), (0, 0)), constant_values=GAP_COLOUR) if pad > 0 else image
