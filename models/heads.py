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
"""
from __future__ import annotations

import math

import torch
from torch import nn

from lib.shading import NUM_SH_COEFFS

HEAD_INIT_GAIN = 1e-3  # raw outputs start at ~1e-3 x the feature RMS: the mean face, frontal


def _head(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1)


class CoefficientHeads(nn.Module):
    """features [B, C, 1, 1] -> dict of shared [B, K] and per-view [B, V, K] tensors."""

    def __init__(self, in_channels: int, num_id: int, num_exp: int, num_tex: int, num_views: int,
                 expression_per_view: bool, rotation_limit_deg: float, translation_limit_mm: float,
                 translation_scale_mm: float):
        super().__init__()
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

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """features [B, C, 1, 1] -> identity/albedo/lighting [B, K]; expression,
        rotation (rad), translation (mm) [B, V, K] (expression repeated when shared)."""
        expression = self._per_view(self.expression, features)
        if expression.shape[1] != self.num_views:
            expression = expression.expand(-1, self.num_views, -1)
        t = self.translation_limit
        return {
            "identity": self._flat(self.identity, features),
            "albedo": self._flat(self.albedo, features),
            "lighting": self._flat(self.lighting, features),
            "expression": expression,
            "rotation": self.rotation_limit * torch.tanh(self._per_view(self.rotation, features)),
            "translation": t * torch.tanh(self._per_view(self.translation, features) * (self.translation_scale / t)),
        }

    @staticmethod
    def _flat(head: nn.Conv2d, features: torch.Tensor) -> torch.Tensor:
        """[B, C, 1, 1] -> [B, K] in float32 (coefficients feed geometry, also under AMP)."""
        return head(features).flatten(1).float()

    def _per_view(self, heads: nn.ModuleList, features: torch.Tensor) -> torch.Tensor:
        """One output per head, stacked: [B, len(heads), K]."""
        return torch.stack([self._flat(h, features) for h in heads], dim=1)
