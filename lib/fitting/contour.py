"""Jaw-contour landmarks that follow the silhouette of a turned face.

2D annotations (300-W, and detectors trained on it) put the 17 jaw points (iBUG 0-16)
on the visible outline of the face. A face model's fixed jaw vertices lie on that
outline only in a frontal view: when the face turns, the far side's fixed vertices
slide inside the face while the annotated points stay on the outline. As in 3DDFA
and Deep3DFaceRecon ("landmark marching"), each jaw landmark therefore gets a line of
candidate vertices at its height, and per pose the candidate furthest out in the
image on that landmark's side is used.

The candidates of jaw landmark j (model space of the mean shape, mm; +x is the
subject's left, image right in a frontal view, DESIGN.md):
- on j's side of the face (sign of x), within `band_mm` of its height (y);
- between `inner_fraction` of its |x| and its |x| (so the line runs from the cheek
  to the landmark vertex and never reaches the nose, the ear or the neck);
- not behind it (z >= its z - `band_mm`), so on the near side the back of the jaw
  cannot win.
In a frontal view the landmark vertex itself is (about) the outermost candidate, so
frontal faces keep their fixed landmarks. The chin (8) sits on the midline and stays
fixed.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

JAW_POINTS = [j for j in range(17) if j != 8]
"""iBUG jaw landmarks that march (the chin, 8, stays at its vertex)."""


@dataclass(frozen=True)
class ContourLines:
    """Candidate vertices of the marching jaw landmarks.

    points:  long [J] iBUG indices (JAW_POINTS).
    index:   long [J, K] vertex indices, each row padded with its landmark vertex.
    outward: float [J] +1 where outward is image right (+u), -1 image left.
    """

    points: torch.Tensor
    index: torch.Tensor
    outward: torch.Tensor


def contour_lines(mean_shape: np.ndarray, landmarks68: np.ndarray, band_mm: float, inner_fraction: float) -> ContourLines:
    """The candidate lines of a face model (see the module docstring).

    mean_shape float [V, 3] mm model space; landmarks68 int [68] vertex indices;
    band_mm half-height of a line (mm); inner_fraction in [0, 1).
    """
    shape = np.asarray(mean_shape, dtype=np.float64)
    rows, outward = [], []
    for j in JAW_POINTS:
        vertex = int(landmarks68[j])
        x, y, z = shape[vertex]
        side = np.sign(x)
        ax = np.abs(shape[:, 0])
        keep = (
            (np.sign(shape[:, 0]) == side)
            & (np.abs(shape[:, 1] - y) <= band_mm)
            & (ax <= abs(x)) & (ax >= inner_fraction * abs(x))
            & (shape[:, 2] >= z - band_mm)
        )
        candidates = np.flatnonzero(keep)
        rows.append(np.concatenate([[vertex], candidates[candidates != vertex]]))
        outward.append(side)
    width = max(len(r) for r in rows)
    index = np.stack([np.pad(r, (0, width - len(r)), constant_values=r[0]) for r in rows])
    return ContourLines(
        points=torch.tensor(JAW_POINTS, dtype=torch.long),
        index=torch.as_tensor(index, dtype=torch.long),
        outward=torch.as_tensor(outward, dtype=torch.float32),
    )


def select_contour(lines: ContourLines, landmarks68: torch.Tensor, screen_u: torch.Tensor) -> torch.Tensor:
    """Per-pose landmark vertices: the fixed 68 with each marching jaw landmark replaced
    by its candidate furthest out in the image.

    landmarks68 long [68]; screen_u [N, V] image x (px) of the posed, projected vertices
    (only compared, so any horizontal image coordinate works). Returns long [N, 68].
    No gradient flows through the choice (it is a discrete re-selection per pose; the
    chosen vertices' positions stay differentiable where they are gathered).
    """
    index = lines.index.to(screen_u.device)
    u = screen_u.detach()[:, index]  # [N, J, K]
    best = (u * lines.outward.to(u)[None, :, None]).argmax(dim=-1)  # [N, J]
    chosen = index[None].expand(u.shape[0], -1, -1).gather(-1, best[..., None])[..., 0]
    selected = landmarks68.to(screen_u.device)[None].repeat(u.shape[0], 1)
    selected[:, lines.points.to(screen_u.device)] = chosen
    return selected


def marching_vertices(lines: ContourLines, landmarks68: torch.Tensor) -> torch.Tensor:
    """long [68 + J*K]: the 68 landmark vertices, then every candidate (lines.index
    flattened): the vertices whose projections `march` needs."""
    return torch.cat([landmarks68.to(lines.index), lines.index.reshape(-1)])


def _outermost(lines: ContourLines, points: torch.Tensor) -> torch.Tensor:
    """long [N, J]: per marching landmark, the position in its line of the candidate
    furthest out; points as in `march`."""
    jaw_count, width = lines.index.shape
    u = points[:, 68:, 0].detach().reshape(points.shape[0], jaw_count, width)
    return (u * lines.outward.to(u)[None, :, None]).argmax(dim=-1)


def march(lines: ContourLines, points: torch.Tensor) -> torch.Tensor:
    """points [N, 68 + J*K, 2] px, the projections of `marching_vertices` -> [N, 68, 2]:
    the 68 landmarks with each marching jaw landmark replaced by its candidate furthest
    out in the image (the choice has no gradient, the chosen point's position has)."""
    jaw_count, width = lines.index.shape
    candidates = points[:, 68:].reshape(points.shape[0], jaw_count, width, 2)
    best = _outermost(lines, points)
    chosen = candidates.gather(2, best[..., None, None].expand(-1, -1, 1, 2))[:, :, 0]  # [N, J, 2]
    result = points[:, :68].clone()
    result[:, lines.points.to(points.device)] = chosen
    return result


def march_vertices(lines: ContourLines, landmarks68: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """long [N, 68]: the vertex behind each point `march` returns (for losses that
    gather landmarks from a full mesh); points as in `march`."""
    best = _outermost(lines, points)
    index = lines.index.to(best.device)
    chosen = index[None].expand(best.shape[0], -1, -1).gather(-1, best[..., None])[..., 0]
    result = landmarks68.to(best.device)[None].repeat(best.shape[0], 1)
    result[:, lines.points.to(best.device)] = chosen
    return result
