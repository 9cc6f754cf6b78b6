"""1x1-convolution heads: pooled RedNet features -> face-model coefficients.

Shared by the views (one prediction per sample): identity, albedo, SH lighting (27).
Per view: rotation (3 Euler angles), translation (3), and expression (per view by
default; one shared head with `expression_per_view: false`, as the seed's code does).

Output parametrisation (raw head outputs start near 0, see HEAD_INIT_GAIN):
    identity, expression, albedo  raw (unit-variance face-model coefficients)
    lighting                      raw (the shader adds 0.8 to the DC terms)
    rotation                      rotation_limit * tanh(raw), radians; the limit
                                  (model.rotation_limit_deg, 90 deg) makes profile views
                                  reachable and poses bounded
    translation                   limit * tanh(raw * scale / limit), mm offset from the
                                  canonical placement; slope `translation_scale_mm` near 0
                                  and bounded by `translation_limit_mm` so the face can
                                  never reach the camera

With `pose_output="seed"` (ported seed checkpoints) rotation and translation mean what
the seed's heads mean (network/Rednet.py:501-553, face_generate.py:142-184): rotation =
raw radians; translation = raw decimetres, the face's position in the seed's camera
frame (a pytorch3d camera 1 dm from the origin, tools/render.py:48-49, with our focal
length). In our frame (camera 1000 mm from the origin): 100 * raw + (0, 0, 900) mm.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from lib.geometry.camera import CAMERA_DISTANCE_MM
from lib.shading import NUM_SH_COEFFS

HEAD_INIT_GAIN = 1e-3  # raw outputs start at ~1e-3 x the feature RMS: the mean face, frontal
POSE_OUTPUTS = ("bounded", "seed")
SEED_MM_PER_UNIT = 100.0  # the seed's lengths are BFM decimetres
SEED_CAMERA_DISTANCE_MM = 100.0  # pytorch3d's look_at_view_transform() default, 1 dm
SEED_TRANSLATION_SHIFT_MM = (0.0, 0.0, CAMERA_DISTANCE_MM - SEED_CAMERA_DISTANCE_MM)


def _head(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1)


class CoefficientHeads(nn.Module):
    """features [B, C, 1, 1] -> dict of shared [B, K] and per-view [B, V, K] tensors."""

    def __init__(self, in_channels: int, num_id: int, num_exp: int, num_tex: int, num_views: int,
                 expression_per_view: bool, rotation_limit_deg: float, translation_limit_mm: float,
                 translation_scale_mm: float, pose_output: str):
        super().__init__()
        if pose_output not in POSE_OUTPUTS:
            raise ValueError(f"pose_output must be one of {POSE_OUTPUTS}, got {pose_output!r}")
        self.pose_output = pose_output
        self.num_views = num_views
        self.identity = _head(in_channels, num_id)
        self.albedo = _head(in_channels, num_tex)
        self.lighting = _head(in_channels, NUM_SH_COEFFS)
        self.expression = nn.ModuleList(
            _head(in_channels, num_exp) for _ in range(num_views if expression_per_view else 1)
        )
        self.rotation = nn.ModuleList(_head(in_channels, 3) for _ in range(num_views))
        self.translation = nn.ModuleList(_head(in_channels, 3) for _ in range(num_views))
        self.rotation_limit = math.radians(rotation_limit_deg)
        self.translation_limit = translation_limit_mm
        self.translation_scale = translation_scale_mm
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=HEAD_INIT_GAIN / math.sqrt(in_channels))
                nn.init.zeros_(m.bias)

    def raw(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """features [B, C, 1, 1] -> the heads' outputs as they are: identity / albedo /
        lighting [B, K]; expression [B, 1 or V, K]; rotation, translation [B, V, 3]."""
        return {
            "identity": self._flat(self.identity, features),
            "albedo": self._flat(self.albedo, features),
            "lighting": self._flat(self.lighting, features),
            "expression": self._per_view(self.expression, features),
            "rotation": self._per_view(self.rotation, features),
            "translation": self._per_view(self.translation, features),
        }

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """features [B, C, 1, 1] -> identity/albedo/lighting [B, K]; expression,
        rotation (rad), translation (mm) [B, V, K] (expression repeated when shared)."""
        out = self.raw(features)
        if out["expression"].shape[1] != self.num_views:
            out["expression"] = out["expression"].expand(-1, self.num_views, -1)
        if self.pose_output == "seed":
            shift = out["translation"].new_tensor(SEED_TRANSLATION_SHIFT_MM)
            out["translation"] = SEED_MM_PER_UNIT * out["translation"] + shift
            return out
        t = self.translation_limit
        out["rotation"] = self.rotation_limit * torch.tanh(out["rotation"])
        out["translation"] = t * torch.tanh(out["translation"] * (self.translation_scale / t))
        return out

    @staticmethod
    def _flat(head: nn.Conv2d, features: torch.Tensor) -> torch.Tensor:
        """[B, C, 1, 1] -> [B, K] in float32 (coefficients feed geometry, also under AMP)."""
        return head(features).flatten(1).float()

    def _per_view(self, heads: nn.ModuleList, features: torch.Tensor) -> torch.Tensor:
        """One output per head, stacked: [B, len(heads), K]."""
        return torch.stack([self._flat(h, features) for h in heads], dim=1)
