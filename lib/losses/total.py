"""The one place where loss terms are computed for a multi-view batch, weighted from
`LossConfig` and summed.

`multiview_losses` forms each view's face instance, renders colours (and, when the
parsing term is on, soft one-hot region labels), and evaluates every term against the
batch; `weighted_sum` applies the config's weights. Training and fitting both call
these, so the objective cannot drift between them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from lib.config.schema import LossConfig, RenderConfig
from lib.losses import terms
from lib.morphable import FaceCoefficients, FaceInstance, MorphableModel
from lib.render import render_mesh

# Loss term name -> LossConfig field holding its weight.
TERM_WEIGHTS = {
    "photometric": "photometric",
    "landmark": "landmark",
    "landmark3d": "landmark3d",
    "coefficient": "coefficient",
    "lighting": "lighting",
    "reflectance": "reflectance",
    "parsing": "parsing",
}


@dataclass
class LossResult:
    """total: weighted sum (scalar); terms: every unweighted term plus 'total' (scalars);
    instance: the N = B*Vw face instances; images [N, H, W, 3] rendered colours;
    coverage [N, H, W] render coverage; valid [N] bool rows that counted."""

    total: torch.Tensor
    terms: dict
    instance: FaceInstance
    images: torch.Tensor
    coverage: torch.Tensor
    valid: torch.Tensor


def weighted_sum(values: dict, cfg: LossConfig) -> torch.Tensor:
    """sum_k weight_k * values[k] over the terms present, weights from `cfg`."""
    unknown = set(values) - set(TERM_WEIGHTS)
    if unknown:
        raise KeyError(f"no weight for loss terms {sorted(unknown)}")
    return sum(getattr(cfg, TERM_WEIGHTS[k]) * v for k, v in values.items())


def _flatten_views(x: torch.Tensor) -> torch.Tensor:
    """[B, Vw, ...] -> [B*Vw, ...] (view-major inside each sample, like the network)."""
    return x.reshape(x.shape[0] * x.shape[1], *x.shape[2:])


def multiview_losses(
    morphable: MorphableModel,
    coeffs: FaceCoefficients,
    batch: dict,
    cfg: LossConfig,
    render_cfg: RenderConfig,
    use_parsing: bool,
) -> LossResult:
    """Every loss term of DF-MVR for N = B*Vw predicted views.

    coeffs: N rows, row b*Vw + v is view v of sample b. batch (tensors on the model's
    device): rgb [B, Vw, 3, H, W] in [0, 1], parsing long [B, Vw, H, W], skin_weight
    [B, Vw, H, W], landmarks [B, Vw, 68, 2] px, view_mask bool [B, Vw], optional
    landmarks3d [B, P, 3] mm (model space; P matches
    `lib.facemodel.derived.landmark3d_vertices`; the term is skipped when
    loss.landmark3d is 0), optional landmark_weights [B, Vw, 68] (per-view landmark
    weights, fitting; default: `terms.landmark_weights(loss.landmark_heavy_weight)`).
    use_parsing switches the parsing term on (the seed does so from mask_epoch);
    render_cfg: the renderer's settings. Training calls this with the network's batch,
    fitting (`lib.fitting.fit`) with B = 1, so the objective cannot drift.
    Views with view_mask false contribute nothing to any term.
    """
    rgb = batch["rgb"]
    height, width = rgb.shape[-2:]
    target = _flatten_views(rgb).permute(0, 2, 3, 1).float()
    valid = _flatten_views(batch["view_mask"]).bool()
    coeffs = coeffs.map(lambda t: t.float())
    instance = morphable(coeffs, (height, width))

    attributes = {"color": instance.colors}
    if use_parsing:
        onehot = morphable.region_onehot.to(instance.colors)
        attributes["parsing"] = onehot[None].expand(instance.colors.shape[0], -1, -1)
    render = render_mesh(
        instance.vertices, morphable.faces, attributes, (height, width),
        cull_backfaces=render_cfg.cull_backfaces, backend=render_cfg.backend,
    )
    coverage = render.mask[..., 0]
    images = render.images["color"]

    weight = _flatten_views(batch["skin_weight"]).float() * coverage
    values = {
        "photometric": terms.photometric_loss(images, target, weight, valid),
        "landmark": terms.landmark_loss(
            instance.landmarks,
            _flatten_views(batch["landmarks"]).float(),
            _flatten_views(batch["landmark_weights"]) if "landmark_weights" in batch
            else terms.landmark_weights(cfg.landmark_heavy_weight, device=rgb.device),
            width,
            valid,
        ),
        "coefficient": terms.coefficient_loss(
            coeffs.identity, coeffs.expression, coeffs.albedo, cfg.id_weight, cfg.exp_weight, cfg.tex_weight, valid
        ),
        "lighting": terms.lighting_loss(coeffs.lighting, valid),
        "reflectance": terms.reflectance_loss(instance.albedo, morphable.skin_mask, valid),
    }
    if batch.get("landmarks3d") is not None and cfg.landmark3d > 0:
        views = rgb.shape[1]
        target3d = batch["landmarks3d"].float().repeat_interleave(views, dim=0)
        values["landmark3d"] = terms.landmark3d_loss(
            instance.shape[:, morphable.landmark3d_index], target3d, morphable.landmark3d_align, valid
        )
    if use_parsing:
        values["parsing"] = terms.parsing_loss(
            render.images["parsing"], _flatten_views(batch["parsing"]), coverage, cfg.parsing_smoothing, valid
        )
    total = weighted_sum(values, cfg)
    logged = {k: v.detach() for k, v in values.items()}
    logged["total"] = total.detach()
    return LossResult(total=total, terms=logged, instance=instance, images=images, coverage=coverage, valid=valid)
