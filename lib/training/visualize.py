"""Image grids like the seed's vis_pred: the render over the input photo with the
predicted (red) and target (blue) landmarks, next to the input with its landmarks."""
from __future__ import annotations

import numpy as np
import torch

RED = (1.0, 0.0, 0.0)
BLUE = (0.0, 0.3, 1.0)
VIEW_SIZE = 192  # pixels per view in the grid, roughly


def draw_points(image: torch.Tensor, points: torch.Tensor, color: tuple, radius: int = 1) -> torch.Tensor:
    """A copy of image [H, W, 3] with squares of side 2 radius + 1 at points [L, 2] px."""
    out = image.clone()
    h, w = image.shape[:2]
    col = torch.tensor(color, dtype=image.dtype)
    # Pixel (i, j) covers [j, j + 1) x [i, i + 1) (DESIGN.md camera): floor, not round.
    for x, y in points.floor().long().tolist():
        out[max(y - radius, 0): min(y + radius + 1, h), max(x - radius, 0): min(x + radius + 1, w)] = col
    return out


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
        comp = up(renders[i].clamp(0, 1) * mask + inputs[i] * (1 - mask))
        comp = draw_points(draw_points(comp, target_lm[i] * k, BLUE), pred_lm[i] * k, RED)
        top.append(comp)
        bottom.append(draw_points(up(inputs[i]), target_lm[i] * k, BLUE))
    grid = torch.cat([torch.cat(top, 1), torch.cat(bottom, 1)], 0)
    return (grid.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
