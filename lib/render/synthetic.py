"""A deterministic face-sized test mesh for renderer tests and benchmarks."""
from __future__ import annotations

import torch

BFM_FRONT_GRID = 189
"""189 x 189 grid: 35,721 vertices / 70,688 triangles, the size of BFM-front (35,709 / 70,789)."""


def face_like_mesh(grid: int = BFM_FRONT_GRID, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """A smooth face-shaped cap: vertices [grid^2, 3] mm in model space (DESIGN.md:
    +y up, +z toward the camera, centred at the origin), faces long [2 (grid-1)^2, 3]
    counter-clockwise seen from +z.

    An ellipse of 168 x 228 mm (about 60% of a 224 px image at the canonical camera
    placement) bulging 90 mm toward the camera, with a nose-like bump.
    """
    t = torch.linspace(-1.0, 1.0, grid, dtype=torch.float64)
    v, u = torch.meshgrid(t, t, indexing="ij")  # rows: y grows, cols: x grows
    # Square -> disk, so the outline is an ellipse with evenly sized triangles.
    dx = u * torch.sqrt(1 - v**2 / 2)
    dy = v * torch.sqrt(1 - u**2 / 2)
    radius2 = (dx**2 + dy**2).clamp(max=1.0)
    nose = 25.0 * torch.exp(-(dx**2 / 0.02 + (dy + 0.05) ** 2 / 0.08))
    z = 90.0 * torch.sqrt(1 - 0.9 * radius2) - 60.0 + nose
    vertices = torch.stack([84.0 * dx, 114.0 * dy, z], -1).reshape(-1, 3).to(dtype)
    idx = torch.arange(grid * grid).reshape(grid, grid)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
    faces = torch.cat([torch.stack([a, b, c], -1).reshape(-1, 3), torch.stack([b, d, c], -1).reshape(-1, 3)])
    return vertices, faces
