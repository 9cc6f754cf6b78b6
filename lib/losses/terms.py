"""The loss terms of DF-MVR as plain functions (Deep3DFaceRecon style).

Every function returns a scalar tensor and takes an optional per-row `valid` mask
[N] (bool or float) so that views missing from a sample (view_mask false) contribute
nothing. Rows are views flattened as N = B * Vw. Images are channels-last.
Weights are applied elsewhere (`lib.losses.total.weighted_sum`), never here.
"""
from __future__ import annotations

import torch

from lib.geometry.camera import REFERENCE_SIZE
from lib.geometry.similarity import apply_similarity, similarity_transform

# Landmarks weighted heavily by Deep3DFaceRecon and the seed: nose bridge (28-30),
# eyes (36-47) and inner mouth (60-67) of the 68-point iBUG order.
HEAVY_LANDMARKS = tuple(range(28, 31)) + tuple(range(36, 48)) + tuple(range(60, 68))



def _row_weights(valid: torch.Tensor | None, n: int, like: torch.Tensor) -> torch.Tensor:
    """[N] float weights: 1 for rows that count, 0 for masked views."""
    if valid is None:
        return torch.ones(n, dtype=like.dtype, device=like.device)
    return valid.to(dtype=like.dtype, device=like.device).reshape(n)


def photometric_loss(
    rendered: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """Weighted mean over pixels of the L2 norm of the RGB difference.

    rendered, target [N, H, W, 3] linear RGB in [0, 1]; weight [N, H, W] (skin
    attention x render coverage, >= 0); valid [N]. Returns sum(w ||r - t||) / sum(w),
    0 when no pixel has weight.
    """
    w = weight * _row_weights(valid, rendered.shape[0], rendered)[:, None, None]
    # The epsilon keeps the norm's gradient finite where the difference is exactly 0.
    dist = torch.sqrt(((rendered - target) ** 2).sum(-1) + 1e-8)
    return (w * dist).sum() / w.sum().clamp_min(1e-8)


def landmark_weights(heavy: float, num: int = 68, device=None) -> torch.Tensor:
    """[num] float: `heavy` on HEAVY_LANDMARKS, 1 elsewhere (68-point order)."""
    w = torch.ones(num, device=device)
    w[list(i for i in HEAVY_LANDMARKS if i < num)] = heavy
    return w


def landmark_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    weights: torch.Tensor,
    image_width: int,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Weighted mean squared 2D landmark distance in pixels of a 224-px image.

    pred, target [N, L, 2] px at `image_width`; weights [L]. Coordinates are rescaled
    to the 224-px reference so that the seed's loss weight means the same at any
    resolution. Returns sum_{n,l} v_n w_l |p - t|^2 / (L * sum_n v_n).
    """
    scale = REFERENCE_SIZE / image_width
    rows = _row_weights(valid, pred.shape[0], pred)
    sq = (((pred - target) * scale) ** 2).sum(-1) * weights.to(pred)
    return (sq * rows[:, None]).sum() / (pred.shape[1] * rows.sum().clamp_min(1.0))


def landmark3d_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    align_index: tuple[int, ...] | torch.Tensor,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean 3D point distance (mm) after similarity alignment on a few points.

    pred, target [N, P, 3] mm; align_index: positions (in 0..P-1) of the alignment
    points (the 7 NoW points). The prediction is aligned to the target by the
    least-squares similarity fitted on those points, as the seed does. The gradient
    flows through the fitted transform (in float64): treating it as a constant gives
    a gradient with a component along scale that the next fit undoes, and the shape
    then drifts without bound.
    """
    idx = torch.as_tensor(align_index, dtype=torch.long, device=pred.device)
    p64, t64 = pred.double(), target.double()
    s, r, t = similarity_transform(p64[:, idx], t64[:, idx])
    aligned = apply_similarity(p64, s, r, t)
    dist = torch.sqrt(((aligned - t64) ** 2).sum(-1) + 1e-8).to(pred.dtype)
    rows = _row_weights(valid, pred.shape[0], pred)
    return (dist.mean(1) * rows).sum() / rows.sum().clamp_min(1.0)


def coefficient_loss(
    identity: torch.Tensor,
    expression: torch.Tensor,
    albedo: torch.Tensor,
    id_weight: float,
    exp_weight: float,
    tex_weight: float,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Tikhonov regulariser: per row id_w |a|^2 + exp_w |d|^2 + tex_w |b|^2, averaged.

    identity [N, Kid], expression [N, Kexp], albedo [N, Ktex] unit-variance coefficients.
    """
    per_row = (
        id_weight * (identity**2).sum(-1) + exp_weight * (expression**2).sum(-1) + tex_weight * (albedo**2).sum(-1)
    )
    rows = _row_weights(valid, identity.shape[0], identity)
    return (per_row * rows).sum() / rows.sum().clamp_min(1.0)


def lighting_loss(lighting: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Monochrome SH regulariser: mean squared deviation of each channel's 9
    coefficients from their mean over R, G, B. lighting [N, 27] channel-major."""
    gamma = lighting.reshape(-1, 3, 9)
    dev = ((gamma - gamma.mean(1, keepdim=True)) ** 2).mean((1, 2))
    rows = _row_weights(valid, gamma.shape[0], gamma)
    return (dev * rows).sum() / rows.sum().clamp_min(1.0)


def reflectance_loss(albedo: torch.Tensor, skin_mask: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Skin-uniformity regulariser: mean squared deviation of the skin vertices'
    albedo from their mean colour. albedo [N, V, 3]; skin_mask [V] bool."""
    skin = albedo[:, skin_mask.to(albedo.device)]
    dev = ((skin - skin.mean(1, keepdim=True)) ** 2).sum(-1).mean(1)
    rows = _row_weights(valid, albedo.shape[0], albedo)
    return (dev * rows).sum() / rows.sum().clamp_min(1.0)


def parsing_loss(
    probabilities: torch.Tensor,
    target: torch.Tensor,
    coverage: torch.Tensor,
    smoothing: float = 0.0,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Negative log-likelihood of the target parsing class under the rendered soft labels.

    probabilities [N, H, W, C]: per-pixel class distribution interpolated from the
    vertices' one-hot region labels (sums to 1 on covered pixels); target long
    [N, H, W] class ids; coverage [N, H, W] render coverage in [0, 1]. `smoothing`
    mixes in a uniform distribution so the log stays finite when the render's class
    has zero probability. Averaged over covered pixels (0 when none).
    """
    c = probabilities.shape[-1]
    p = (1.0 - smoothing) * probabilities + smoothing / c
    picked = p.gather(-1, target.long().clamp(0, c - 1)[..., None])[..., 0]
    nll = -torch.log(picked.clamp_min(1e-12))
    w = coverage * _row_weights(valid, probabilities.shape[0], probabilities)[:, None, None]
    return (w * nll).sum() / w.sum().clamp_min(1e-8)
