"""The fixed pinhole camera of DESIGN.md.

The camera sits at (0, 0, CAMERA_DISTANCE_MM) looking down -z; focal length is
FOCAL_AT_224 pixels at 224 px and scales with the image size; the principal point is
the image centre. Image rows run downward, so v grows as y falls.
"""
from __future__ import annotations

import torch

CAMERA_DISTANCE_MM = 1000.0
FOCAL_AT_224 = 1015.0
REFERENCE_SIZE = 224


def focal_length(image_size: tuple[int, int]) -> float:
    """Focal length in pixels for an image of (H, W) pixels (scaled with the width)."""
    return FOCAL_AT_224 * image_size[1] / REFERENCE_SIZE


def project(points: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """Camera-space points [B, N, 3] (mm) -> screen [B, N, 3] = (u px, v px, depth mm).

    u = W/2 + f x / (D - z), v = H/2 - f y / (D - z), depth = D - z (smaller is
    nearer). Points at or behind the camera get depth <= 0; the renderer discards them.
    """
    height, width = image_size
    f = focal_length(image_size)
    depth = CAMERA_DISTANCE_MM - points[..., 2]
    # Clamped only for the division, so points behind the camera give finite u, v.
    safe = torch.where(depth.abs() < 1e-6, torch.full_like(depth, 1e-6), depth)
    u = width / 2 + f * points[..., 0] / safe
    v = height / 2 - f * points[..., 1] / safe
    return torch.stack([u, v, depth], dim=-1)
