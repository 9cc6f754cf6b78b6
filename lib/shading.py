"""Spherical-harmonics (9-band, per colour channel) Lambertian shading, as the seed
and Deep3DFaceRecon do it: colour = albedo * (Y(n) . gamma), with 0.8 added to the
DC coefficient of every channel so that zero lighting coefficients mean soft
ambient light."""
from __future__ import annotations

import math

import torch

NUM_SH_COEFFS = 27  # 9 bands x RGB
DC_OFFSET = 0.8

_A = (math.pi, 2 * math.pi / math.sqrt(3.0), 2 * math.pi / math.sqrt(8.0))
_C = (1 / math.sqrt(4 * math.pi), math.sqrt(3.0) / math.sqrt(4 * math.pi), 3 * math.sqrt(5.0) / math.sqrt(12 * math.pi))


def sh_basis(normals: torch.Tensor) -> torch.Tensor:
    """The 9 irradiance-weighted SH basis values [..., 9] of unit normals [..., 3]."""
    x, y, z = normals.unbind(-1)
    a0c0, a1c1, a2c2 = _A[0] * _C[0], _A[1] * _C[1], _A[2] * _C[2]
    return torch.stack(
        [
            torch.full_like(x, a0c0),
            -a1c1 * y,
            a1c1 * z,
            -a1c1 * x,
            a2c2 * x * y,
            -a2c2 * y * z,
            0.5 * a2c2 / math.sqrt(3.0) * (3 * z * z - 1),
            -a2c2 * x * z,
            0.5 * a2c2 * (x * x - y * y),
        ],
        dim=-1,
    )


def sh_shade(albedo: torch.Tensor, normals: torch.Tensor, lighting: torch.Tensor) -> torch.Tensor:
    """Shaded colour [B, V, 3] from albedo [B, V, 3], unit camera-space normals
    [B, V, 3] and lighting [B, 27] (channel-major: R's 9, G's 9, B's 9)."""
    gamma = lighting.reshape(-1, 3, 9)
    gamma = gamma + torch.tensor([DC_OFFSET] + [0.0] * 8, dtype=gamma.dtype, device=gamma.device)
    irradiance = torch.einsum("bvk,bck->bvc", sh_basis(normals), gamma)
    return albedo * irradiance
