"""Euler-angle rotations (the seed's convention) and rigid transforms."""
from __future__ import annotations

import torch


def euler_to_matrix(angles: torch.Tensor) -> torch.Tensor:
    """Rotation matrices R = Rz @ Ry @ Rx from Euler angles.

    angles: [..., 3] radians (x, y, z). Returns [..., 3, 3]; a column vector p is
    rotated as R @ p, so Rx by +90 deg takes +y to +z.
    """
    cos, sin = torch.cos(angles), torch.sin(angles)
    one, zero = torch.ones_like(cos[..., 0]), torch.zeros_like(cos[..., 0])
    cx, cy, cz = cos.unbind(-1)
    sx, sy, sz = sin.unbind(-1)
    rx = torch.stack([one, zero, zero, zero, cx, -sx, zero, sx, cx], -1)
    ry = torch.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1)
    rz = torch.stack([cz, -sz, zero, sz, cz, zero, zero, zero, one], -1)
    shape = angles.shape[:-1] + (3, 3)
    return rz.reshape(shape) @ ry.reshape(shape) @ rx.reshape(shape)


def rigid_transform(points: torch.Tensor, rotation: torch.Tensor, translation: torch.Tensor) -> torch.Tensor:
    """points [B, N, 3] -> R p + t, with rotation [B, 3, 3] and translation [B, 3]."""
    return points @ rotation.transpose(-1, -2) + translation[:, None, :]


def matrix_to_euler(rotation: torch.Tensor) -> torch.Tensor:
    """Inverse of `euler_to_matrix` (R = Rz Ry Rx): [..., 3, 3] -> [..., 3] radians,
    with the y angle in [-pi/2, pi/2]."""
    ry = torch.asin((-rotation[..., 2, 0]).clamp(-1.0, 1.0))
    rx = torch.atan2(rotation[..., 2, 1], rotation[..., 2, 2])
    rz = torch.atan2(rotation[..., 1, 0], rotation[..., 0, 0])
    return torch.stack([rx, ry, rz], -1)
