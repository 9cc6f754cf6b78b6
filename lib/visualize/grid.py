"""Image grids like the seed's vis_pred (training validation): the render over the
input photo with the predicted and target landmarks, next to the input with its
landmarks; colours and dots of `lib.visualize.draw`."""
from __future__ import annotations

import numpy as np
import torch

from lib.visualize.draw import DETECTED_COLOUR, PREDICTED_COLOUR, draw_landmarks

VIEW_SIZE = 192  # pixels per view in the grid, roughly


def _uint8(image: torch.Tensor) -> np.ndarray:
    return (image.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def overlay_grid(
    inputs: torch.Tensor, renders: torch.Tensor, coverage: torch.Tensor, pred_lm: torch.Tensor, target_lm: torch.Tensor
) -> np.ndarray:
    """uint8 [2 k H, N k W, 3] grid; row 0: render over input with both landmark sets,
    row 1: input with target landmarks. inputs, renders [N, H, W, 3]; coverage
    [N, H, W]; landmarks [N, 68, 2] px. Small images are enlarged k times (nearest)
    so that the landmark marks stay smaller than the features they mark."""
    k = max(1, round(VIEW_SIZE / inputs.shape[1]))
    up = lambda x: x.repeat_interleave(k, 0).repeat_interleave(k, 1)  # noqa: E731
    top, bottom = [], []
    for i in range(inputs.shape[0]):
        mask = coverage[i][..., None]
        comp = _uint8(up(renders[i].clamp(0, 1) * mask + inputs[i] * (1 - mask)))
        comp = draw_landmarks(comp, target_lm[i].numpy() * k, DETECTED_COLOUR)
        top.append(draw_landmarks(comp, pred_lm[i].numpy() * k, PREDICTED_COLOUR))
        bottom.append(draw_landmarks(_uint8(up(inputs[i])), target_lm[i].numpy() * k, DETECTED_COLOUR))
    return np.concatenate([np.concatenate(top, 1), np.concatenate(bottom, 1)], 0)
