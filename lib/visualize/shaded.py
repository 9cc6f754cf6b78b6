"""Shaded renders of a mesh from a chosen angle, for sheets and previews."""
from __future__ import annotations

import math

import numpy as np
import torch

from lib.config.schema import RenderConfig
from lib.geometry import euler_to_matrix, rigid_transform, vertex_normals
from lib.render import render_mesh
from lib.shading import sh_shade

BACKGROUND = (0.16, 0.16, 0.16)
CLAY_ALBEDO = 0.72  # light grey: shows the shape's relief best

# A key light from the upper front and the viewer's left, on top of the shader's
# ambient DC term (the same for R, G and B): 9 SH coefficients per channel.
_KEY_LIGHT = (0.0, -0.12, 0.25, 0.10, 0.0, 0.0, 0.0, 0.0, 0.0)


def shaded_render(
    shape: torch.Tensor,
    faces: torch.Tensor,
    image_size: tuple[int, int],
    render: RenderConfig,
    yaw_deg: float = 0.0,
    pitch_deg: float = 0.0,
    colors: torch.Tensor | None = None,
) -> np.ndarray:
    """Render a model-space mesh turned by yaw/pitch (degrees) at the canonical placement.

    shape [V, 3] mm (model space, e.g. `FaceInstance.shape[i]`); faces long [F, 3];
    colors [V, 3] albedo in [0, 1] or None for grey clay; render: `render.*`. The mesh is centred on its
    bounding box first, so any fit lands in the middle of the frame. Returns uint8
    [H, W, 3] on a dark background.
    """
    with torch.no_grad():
        points = shape.float()
        centre = (points.amin(0) + points.amax(0)) / 2
        angles = torch.tensor([[math.radians(pitch_deg), math.radians(yaw_deg), 0.0]])
        verts = rigid_transform((points - centre)[None], euler_to_matrix(angles), torch.zeros(1, 3))
        normals = vertex_normals(verts, faces)
        albedo = colors.float()[None] if colors is not None else torch.full_like(verts, CLAY_ALBEDO)
        lighting = torch.tensor(_KEY_LIGHT * 3)[None]  # [1, 27], R G B alike
        shaded = sh_shade(albedo, normals, lighting)
        result = render_mesh(verts, faces, {"color": shaded}, image_size, cull_backfaces=render.cull_backfaces,
                             backend=render.backend)
        mask = result.mask[0]
        image = result.images["color"][0] * mask + torch.tensor(BACKGROUND) * (1 - mask)
    return np.round(image.clamp(0, 1).numpy() * 255).astype(np.uint8)
