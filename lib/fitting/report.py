"""What a fit's numbers say about it: how far its coefficients are from the model's
prior (in standard deviations, with a warning when they left the model's range), and
whether a subject's views agree on one face (doc/fitting.md).
"""
from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from lib.config.schema import FitConfig
from lib.facemodel.ranges import gaussian_limits
from lib.morphable import FaceCoefficients

RANGE_TOLERANCE = 0.02
"""Relative excess over a limit that still counts as inside: the plausibility term
is a soft wall, so a fit pressed against it ends a hair beyond."""

BOUNDS_TOLERANCE = 0.05
"""Absolute excess of a bounded expression weight that still counts as inside."""

AGREEMENT_TEXTURE = 256
"""Texture side (px) at which views are compared."""

DETAIL_SIGMA = 3.0
"""Blur (texels at AGREEMENT_TEXTURE) removed from the luminance: what remains is
facial detail, not lighting."""

MIN_SHARED = 0.02
"""Share of the texture two views must both see to be compared."""


def coefficient_report(coeffs: FaceCoefficients, face_model, quantile: float) -> dict:
    """Distances from the prior of a fit's coefficients (Vw rows; identity and albedo
    shared). Returns prior_distance_sd {identity, albedo, expression}: the norm in
    standard deviations (Mahalanobis distance from the mean; largest view for
    expression; None for bounded expressions); prior_limit_sd: the norm that
    `quantile` of the model's faces stay under; max_coefficient_sd: the largest
    |coefficient|; expression_range: the bounds of a bounded expression or None; and
    warnings: one sentence per limit the fit went beyond or is held at."""
    parts = {"identity": coeffs.identity[:1], "albedo": coeffs.albedo[:1], "expression": coeffs.expression}
    bounded = face_model.exp_range is not None
    report = {"prior_distance_sd": {}, "prior_limit_sd": {}, "max_coefficient_sd": {}, "warnings": []}
    for name, values in parts.items():
        values = values.detach().double()
        if name == "expression" and bounded:
            low, high = (float(v) for v in face_model.exp_range)
            report["expression_range"] = [low, high]
            outside = float(torch.clamp(low - values, min=0).max().clamp_min((values - high).max()))
            if outside > BOUNDS_TOLERANCE:
                report["warnings"].append(
                    f"expression weights leave the model's range [{low:g}, {high:g}] by up to {outside:.2f}")
            for key in ("prior_distance_sd", "prior_limit_sd", "max_coefficient_sd"):
                report[key][name] = None
            continue
        max_norm, max_abs = gaussian_limits(values.shape[-1], quantile)
        distance = float(values.norm(dim=-1).max())
        largest = float(values.abs().max())
        report["prior_distance_sd"][name] = distance
        report["prior_limit_sd"][name] = max_norm
        report["max_coefficient_sd"][name] = largest
        if distance > max_norm * (1 + RANGE_TOLERANCE) or largest > max_abs * (1 + RANGE_TOLERANCE):
            report["warnings"].append(
                f"{name} is {distance:.1f} SD from the mean (largest coefficient {largest:.1f} SD); "
                f"{quantile:.1%} of the model's faces are within {max_norm:.1f} (each within {max_abs:.1f})")
        elif distance > max_norm * (1 - RANGE_TOLERANCE):
            report["warnings"].append(
                f"{name} is held at the edge of the model's range ({distance:.1f} SD): the photos ask for more "
                "than the model holds, this is the nearest plausible face")
    if not bounded:
        report.setdefault("expression_range", None)
    return report


def view_agreement(images: torch.Tensor, vertices: torch.Tensor, normals: torch.Tensor, faces: torch.Tensor,
                   uv_coords: torch.Tensor, uv_faces: torch.Tensor, bakeable: torch.Tensor, fit_cfg: FitConfig,
                   frontal: int) -> dict:
    """Do a subject's views show one face? Each view is baked alone into the fitted
    mesh's UV layout (AGREEMENT_TEXTURE px); where two views both saw the surface,
    their fine detail (luminance minus its blur, so lighting and exposure drop out:
    brows, eyes, nostrils, lips, skin marks) should line up. Returns per view pair
    the normalised correlation of that detail over the shared texels, and
    `agreement`: the lowest of the pairs with the most frontal view (index
    `frontal`), which shares the most surface with every other view (two side views
    share only an obliquely seen strip, where lighting dominates); 1 = identical,
    about 0 = unrelated; None when no pair shares enough texels. images
    [Vw, H, W, 3] in [0, 1]; vertices, normals [Vw, V, 3] as posed per view;
    bakeable bool [Vw, H, W] (see bake_texture)."""
    from lib.fitting.texture import bake_texture

    num_views = images.shape[0]
    detail, seen = [], []
    fallback = torch.full((vertices.shape[1], 3), 0.5)
    for k in range(num_views):
        baked = bake_texture(images[k:k + 1], vertices[k:k + 1], normals[k:k + 1], faces, uv_coords, uv_faces,
                             fallback, AGREEMENT_TEXTURE, fit_cfg.texture_min_cosine, fit_cfg.texture_cosine_power,
                             bakeable=bakeable[k:k + 1])
        luminance = baked.image.astype(np.float64) @ np.array([0.299, 0.587, 0.114]) / 255.0
        detail.append(luminance - ndimage.gaussian_filter(luminance, DETAIL_SIGMA))
        seen.append(baked.baked > 0.99)
    pairs = {}
    for a in range(num_views):
        for b in range(a + 1, num_views):
            shared = seen[a] & seen[b]
            if shared.mean() < MIN_SHARED:
                continue
            x, y = detail[a][shared], detail[b][shared]
            x, y = x - x.mean(), y - y.mean()
            pairs[f"{a}-{b}"] = float((x * y).sum() / max(np.sqrt((x * x).sum() * (y * y).sum()), 1e-12))
    with_frontal = [value for key, value in pairs.items() if str(frontal) in key.split("-")]
    return {"pairs": pairs, "agreement": min(with_frontal) if with_frontal else None}
