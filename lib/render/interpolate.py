"""Per-pixel interpolation of per-vertex attributes with the rasterizer's barycentrics."""
from __future__ import annotations

import torch

from lib.render.rasterize import resolve_backend


def interpolate(
    attributes: torch.Tensor,
    faces: torch.Tensor,
    face_index: torch.Tensor,
    barycentrics: torch.Tensor,
    backend: str = "auto",
) -> torch.Tensor:
    """attributes [B, V, C] (any per-vertex quantity: colour, normals, labels, depth),
    faces long [F, 3], face_index long [B, H, W] (-1 background), barycentrics
    [B, H, W, 3] -> [B, H, W, C], 0 on background.

    Differentiable w.r.t. attributes and barycentrics (once: the numba backend has
    no double backward). backend as in `lib.render.rasterize`.
    """
    faces = faces.to(device=attributes.device, dtype=torch.long)
    if resolve_backend(backend, attributes) == "numba":
        from lib.render.numba_backend import interpolate_numba

        return interpolate_numba(attributes, faces, face_index, barycentrics)
    batch, height, width = face_index.shape
    num_vertices, channels = attributes.shape[1], attributes.shape[2]
    covered = face_index >= 0
    # Background pixels point at face 0 and are zeroed below, which keeps every
    # tensor dense (cheaper than compacting when most pixels are covered).
    corner_ids = faces[face_index.clamp(min=0)]  # [B, H, W, 3]
    offset = (torch.arange(batch, device=attributes.device) * num_vertices).view(batch, 1, 1, 1)
    values = attributes.reshape(-1, channels)[(corner_ids + offset).reshape(-1)]
    values = values.reshape(batch, height, width, 3, channels)
    weights = torch.where(covered[..., None], barycentrics, 0.0)
    return (weights.to(values.dtype)[..., None] * values).sum(-2)
