"""Multi-view analysis-by-synthesis: fit one face to 1-3 views of the same person.

One identity and one albedo are shared by all views; rotation, translation, lighting
and (by default) expression belong to each view. The objective is the training
objective, `lib.losses.multiview_losses` on a batch of one (weighted by `LossConfig`,
rendered with `render.*`), the landmark and prior weights scaled by
`fit.landmark_scale` and `fit.prior_scale`. Fitting runs coarse to fine:

1. pose: closed-form weak-perspective pose from the landmarks, then L-BFGS on
   rotation and translation against the landmark term;
2. shape: L-BFGS on identity, expression and pose against landmarks + coefficient
   prior + plausibility (zero inside the model's range, steep outside it);
3. appearance: everything (albedo and lighting too) against the full objective:
   photometric with skin attention, landmarks, parsing and the regularisers, rendered
   at `fit.render_size` pixels for speed.

Stages 1-2 only need the 68 landmark vertices, so they cost almost nothing; stage 3
renders. With `fit.contour_marching` the model's jaw landmarks follow the silhouette
per pose in every stage (lib/fitting/contour.py), as detected ones do. Refining a network prediction skips 1-2 and runs `fit.steps_refine` steps of
stage 3. Units: px in the input images, mm, radians.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm import tqdm

from lib.config.schema import FitConfig, LossConfig, RenderConfig
from lib.fitting.contour import ContourLines, contour_lines, march, march_vertices, marching_vertices
from lib.facemodel.ranges import gaussian_limits
from lib.geometry import euler_to_matrix, focal_length, matrix_to_euler, project, rigid_transform
from lib.geometry.camera import CAMERA_DISTANCE_MM
from lib.losses import landmark_weights, multiview_losses, terms, weighted_sum
from lib.morphable import FaceCoefficients, MorphableModel

_ALL = ("identity", "expression", "albedo", "rotation", "translation", "lighting")

JAW = tuple(range(17))
"""The 68-point jaw contour: on side views its far half lies on the silhouette in
the photo but on fixed (hidden) vertices in the model, so those points disagree."""


@dataclass
class FitTarget:
    """One subject's Vw views, all H x W pixels.

    rgb [Vw, 3, H, W] in [0, 1]; landmarks [Vw, 68, 2] px (x, y) in the image;
    parsing long [Vw, H, W] (10 classes) or None (then no parsing term and the
    photometric weight is uniform); skin_weight [Vw, H, W] or None (uniform).
    landmarks_on_silhouette: True for detected landmarks, whose jaw follows the
    silhouette (fitted with `fit.contour_marching`); False for the model's fixed
    landmark vertices projected (synthetic subjects), fitted as they are.
    """

    rgb: torch.Tensor
    landmarks: torch.Tensor
    parsing: torch.Tensor | None = None
    skin_weight: torch.Tensor | None = None
    landmarks_on_silhouette: bool = True

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.rgb.shape[-2]), int(self.rgb.shape[-1])

    @property
    def num_views(self) -> int:
        return int(self.rgb.shape[0])


@dataclass
class FitResult:
    """coeffs: Vw rows (shared identity/albedo repeated); landmarks [Vw, 68, 2] px
    projected model landmarks at the input size; landmark_error [Vw, 68] px distance
    to the target landmarks; terms: the full objective's unweighted terms at the
    result (floats) and 'total', the weighted objective that fits are compared by;
    seconds; start: 'mean face' or 'prediction' (what the fit started from)."""

    coeffs: FaceCoefficients
    landmarks: torch.Tensor
    landmark_error: torch.Tensor
    terms: dict
    seconds: float
    start: str = "mean face"


class LandmarkProjector:
    """The 68 landmark vertices of a MorphableModel alone: shape, pose, projection
    for the landmark-only stages without forming the whole mesh. With contour `lines`
    the jaw landmarks march to the silhouette (lib/fitting/contour.py): the candidate
    vertices are carried along and `shape` returns [N, 68 + J*K, 3]."""

    def __init__(self, morphable: MorphableModel, lines: ContourLines | None = None):
        self.lines = lines
        idx = morphable.landmarks68 if lines is None else marching_vertices(lines, morphable.landmarks68)
        num_id, num_exp = morphable.id_basis.shape[1], morphable.exp_basis.shape[1]
        self.mean = morphable.mean_shape.reshape(-1, 3)[idx]  # [68, 3]
        self.id_basis = morphable.id_basis.reshape(-1, 3, num_id)[idx]  # [68, 3, Kid]
        self.exp_basis = morphable.exp_basis.reshape(-1, 3, num_exp)[idx]  # [68, 3, Kexp]

    def shape(self, identity: torch.Tensor, expression: torch.Tensor) -> torch.Tensor:
        """identity [N, Kid], expression [N, Kexp] -> landmark points [N, 68, 3] mm."""
        return (
            self.mean
            + torch.einsum("lck,nk->nlc", self.id_basis, identity)
            + torch.einsum("lck,nk->nlc", self.exp_basis, expression)
        )

    def __call__(self, coeffs: FaceCoefficients, image_size: tuple[int, int]) -> torch.Tensor:
        """Projected landmarks [N, 68, 2] px."""
        points = rigid_transform(
            self.shape(coeffs.identity, coeffs.expression), euler_to_matrix(coeffs.rotation), coeffs.translation
        )
        projected = project(points, image_size)[..., :2]
        return projected if self.lines is None else march(self.lines, projected)


def initial_pose(
    points: torch.Tensor, landmarks: torch.Tensor, weights: torch.Tensor, image_size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed-form pose of a rigid landmark set seen in Vw images (weak perspective).

    points [68, 3] mm model-space landmarks; landmarks [Vw, 68, 2] px; weights
    [Vw, 68] (0 drops a point); returns rotation [Vw, 3] Euler radians and
    translation [Vw, 3] mm. Fits an affine camera by weighted least squares, takes
    the nearest scaled rotation (SVD), and turns the scale into a distance through
    the focal length; accurate to a few degrees, which the landmark stage refines.
    """
    height, width = image_size
    f = focal_length(image_size)
    p = points.double()
    rotations, translations = [], []
    for view in range(landmarks.shape[0]):
        w = weights[view].double().sqrt()[:, None]
        # Image coordinates with y up and the origin at the principal point.
        xy = torch.stack([landmarks[view, :, 0] - width / 2, height / 2 - landmarks[view, :, 1]], -1).double()
        design = torch.cat([p, torch.ones_like(p[:, :1])], 1)
        affine = torch.linalg.lstsq(design * w, xy * w).solution  # [4, 2]
        u, sig, vh = torch.linalg.svd(affine[:3].T, full_matrices=False)  # [2, 3]
        scale = sig.mean()
        r12 = u @ vh
        rotation = torch.cat([r12, torch.linalg.cross(r12[0], r12[1])[None]], 0)
        rotations.append(matrix_to_euler(rotation))
        tz = CAMERA_DISTANCE_MM - f / scale
        translations.append(torch.stack([affine[3, 0] / scale, affine[3, 1] / scale, tz]))
    return torch.stack(rotations).float(), torch.stack(translations).float()


def landmark_pose(
    morphable: MorphableModel, landmarks: torch.Tensor, image_size: tuple[int, int], heavy: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """`initial_pose` of the mean face's landmarks [Vw, 68, 2] px, weighted like the
    landmark loss (`heavy` on nose bridge, eyes, inner mouth) without the jaw contour,
    the least rigid and least reliable part. Returns rotation, translation [Vw, 3]."""
    weights = landmark_weights(heavy)[None].repeat(landmarks.shape[0], 1)
    weights[:, list(JAW)] = 0.0
    return initial_pose(LandmarkProjector(morphable).mean, landmarks, weights, image_size)


def view_landmark_weights(rotation: torch.Tensor, heavy: float, fit_cfg: FitConfig) -> torch.Tensor:
    """[Vw, 68] landmark weights: the training weights (`heavy` on nose bridge, eyes,
    inner mouth), with the jaw contour scaled by `fit.side_jaw_weight` on views whose
    yaw exceeds `fit.side_view_deg` (see JAW)."""
    base = landmark_weights(heavy, device=rotation.device)
    weights = base[None].repeat(rotation.shape[0], 1)
    side = rotation[:, 1].abs() > math.radians(fit_cfg.side_view_deg)
    jaw = torch.zeros(68, dtype=torch.bool, device=rotation.device)
    jaw[list(JAW)] = True
    return torch.where(side[:, None] & jaw[None], weights * fit_cfg.side_jaw_weight, weights)


class _Parameters(torch.nn.Module):
    """Free variables: shared identity/albedo [1, K]; per-view pose, lighting and
    expression ([Vw, K], or [1, K] when the expression is shared)."""

    def __init__(self, init: FaceCoefficients, expression_per_view: bool):
        super().__init__()
        self.identity = torch.nn.Parameter(init.identity.mean(0, keepdim=True).clone())
        self.albedo = torch.nn.Parameter(init.albedo.mean(0, keepdim=True).clone())
        exp = init.expression if expression_per_view else init.expression.mean(0, keepdim=True)
        self.expression = torch.nn.Parameter(exp.clone())
        self.rotation = torch.nn.Parameter(init.rotation.clone())
        self.translation = torch.nn.Parameter(init.translation.clone())
        self.lighting = torch.nn.Parameter(init.lighting.clone())

    def coeffs(self) -> FaceCoefficients:
        n = self.rotation.shape[0]
        return FaceCoefficients(
            identity=self.identity.expand(n, -1),
            expression=self.expression.expand(n, -1),
            albedo=self.albedo.expand(n, -1),
            rotation=self.rotation,
            translation=self.translation,
            lighting=self.lighting,
        )


def _fit_batch(target: FitTarget, size: int) -> dict:
    """The subject as a batch of one for `lib.losses.multiview_losses` (B = 1, Vw
    views), at render size `size` (the longer side), landmarks scaled alike."""
    height, width = target.image_size
    scale = size / max(height, width)
    shape = (max(1, round(height * scale)), max(1, round(width * scale)))
    scale = shape[1] / width
    weight = target.skin_weight if target.skin_weight is not None else torch.ones(target.rgb[:, 0].shape)
    batch = {
        "rgb": F.interpolate(target.rgb.float(), size=shape, mode="area")[None],
        "skin_weight": F.interpolate(weight[:, None].float(), size=shape, mode="area")[:, 0][None],
        # landmark_loss rescales to 224 px, so the term's value matches the full-size one.
        "landmarks": (target.landmarks * scale)[None],
        "view_mask": torch.ones(1, target.num_views, dtype=torch.bool),
    }
    if target.parsing is not None:
        batch["parsing"] = F.interpolate(target.parsing[:, None].float(), size=shape, mode="nearest")[:, 0].long()[None]
    return batch


class _Objective:
    """Loss terms of the current stage for a FitTarget; see the module docstring. The
    full objective is training's (`multiview_losses`) on a batch of one, plus the
    plausibility term (fitting only: a network is kept in range by its training set)."""

    def __init__(self, morphable: MorphableModel, target: FitTarget, loss_cfg: LossConfig, fit_cfg: FitConfig,
                 render_cfg: RenderConfig):
        self.morphable = morphable
        self.target = target
        self.loss_cfg, self.render_cfg = loss_cfg, render_cfg
        lines = None
        if fit_cfg.contour_marching and target.landmarks_on_silhouette:
            face_model = morphable.face_model
            lines = contour_lines(face_model.mean_shape, face_model.landmarks68, fit_cfg.contour_band_mm,
                                  fit_cfg.contour_inner_fraction)
        self.projector = LandmarkProjector(morphable, lines)
        self.batch = _fit_batch(target, fit_cfg.render_size)
        self.weights = landmark_weights(loss_cfg.landmark_heavy_weight)[None].repeat(target.num_views, 1)
        fm, quantile = morphable.face_model, loss_cfg.plausible_quantile
        self.limits = {name: gaussian_limits(k, quantile)
                       for name, k in (("identity", fm.num_id), ("expression", fm.num_exp), ("albedo", fm.num_tex))}
        self.exp_range = None if fm.exp_range is None else tuple(float(v) for v in fm.exp_range)

    def landmark_terms(self, coeffs: FaceCoefficients, with_prior: bool) -> tuple[torch.Tensor, dict]:
        """(weighted total, unweighted terms) of the landmark-only stages."""
        pred = self.projector(coeffs, self.target.image_size)
        values = {
            "landmark": terms.landmark_loss(pred, self.target.landmarks, self.weights, self.target.image_size[1],
                                            distance=self.loss_cfg.landmark_distance)
        }
        if with_prior:
            cfg = self.loss_cfg
            values["coefficient"] = terms.coefficient_loss(
                coeffs.identity, coeffs.expression, coeffs.albedo, cfg.id_weight, cfg.exp_weight, cfg.tex_weight
            )
            values["plausibility"] = self.plausibility(coeffs)
        return weighted_sum(values, self.loss_cfg), values

    def full_terms(self, coeffs: FaceCoefficients) -> tuple[torch.Tensor, dict]:
        """(weighted total, unweighted terms) of the full objective."""
        batch = {**self.batch, "landmark_weights": self.weights[None]}
        lines = self.projector.lines
        if lines is not None:
            with torch.no_grad():
                points = project(rigid_transform(self.projector.shape(coeffs.identity, coeffs.expression),
                                                 euler_to_matrix(coeffs.rotation), coeffs.translation),
                                 self.target.image_size)[..., :2]
            batch["landmark_vertices"] = march_vertices(lines, self.morphable.landmarks68, points)[None]
        use_parsing = "parsing" in batch and self.loss_cfg.parsing > 0
        result = multiview_losses(self.morphable, coeffs, batch, self.loss_cfg, self.render_cfg, use_parsing)
        values = {k: v for k, v in result.terms.items() if k != "total"}
        values["plausibility"] = self.plausibility(coeffs)
        return result.total + weighted_sum({"plausibility": values["plausibility"]}, self.loss_cfg), values

    def plausibility(self, coeffs: FaceCoefficients) -> torch.Tensor:
        """How far identity, albedo and expression left the model's range (0 inside)."""
        value = terms.outside_gaussian_loss(coeffs.identity, *self.limits["identity"])
        value = value + terms.outside_gaussian_loss(coeffs.albedo, *self.limits["albedo"])
        if self.exp_range is None:
            return value + terms.outside_gaussian_loss(coeffs.expression, *self.limits["expression"])
        return value + terms.outside_bounds_loss(coeffs.expression, *self.exp_range)


def _run_adam_stage(
    params: _Parameters,
    names: tuple[str, ...],
    steps: int,
    loss_fn,
    fit_cfg: FitConfig,
    bar: tqdm | None,
) -> dict:
    """Adam over the named parameters with a cosine-decayed learning rate; returns the
    last step's unweighted terms (floats)."""
    lrs = {
        "identity": fit_cfg.lr,
        "expression": fit_cfg.lr,
        "albedo": fit_cfg.lr,
        "rotation": fit_cfg.lr_rotation,
        "translation": fit_cfg.lr_translation,
        "lighting": fit_cfg.lr_lighting,
    }
    groups = [{"params": [getattr(params, n)], "lr": lrs[n]} for n in names]
    optimizer = torch.optim.Adam(groups)
    base = [g["lr"] for g in optimizer.param_groups]
    last: dict = {}
    for step in range(steps):
        # Cosine decay to 10 % lets Adam settle instead of jittering at the end.
        factor = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / max(steps, 1)))
        for group, lr in zip(optimizer.param_groups, base):
            group["lr"] = lr * factor
        optimizer.zero_grad(set_to_none=True)
        total, values = loss_fn(params.coeffs())
        total.backward()
        optimizer.step()
        last = {k: float(v.detach()) for k, v in values.items()}
        last["total"] = float(total.detach())
        if bar is not None:
            bar.update(1)
    return last


def _run_lbfgs_stage(
    params: _Parameters,
    names: tuple[str, ...],
    steps: int,
    loss_fn,
    bar: tqdm | None,
) -> dict:
    """L-BFGS over the named parameters for the landmark-only stages: a smooth, small
    least-squares problem that quasi-Newton steps solve in far fewer iterations than
    Adam. `steps` counts objective evaluations."""
    optimizer = torch.optim.LBFGS(
        [getattr(params, n) for n in names], lr=1.0, max_iter=max(steps, 1), max_eval=max(steps, 1), history_size=20,
        line_search_fn="strong_wolfe", tolerance_grad=1e-9, tolerance_change=1e-12,
    )
    last: dict = {}

    def closure():
        optimizer.zero_grad(set_to_none=True)
        total, values = loss_fn(params.coeffs())
        total.backward()
        last.update({k: float(v.detach()) for k, v in values.items()}, total=float(total.detach()))
        if bar is not None:
            bar.update(1)
        return total

    if steps > 0:
        optimizer.step(closure)
    return last


def fit_views(
    morphable: MorphableModel,
    target: FitTarget,
    fit_cfg: FitConfig,
    loss_cfg: LossConfig,
    render_cfg: RenderConfig,
    init: FaceCoefficients | None = None,
    *,
    expression_per_view: bool,
    progress: bool = False,
) -> FitResult:
    """Fit the face model to the views of one subject.

    morphable: the face model (CPU); target: the views; render_cfg: the renderer's
    settings (`render.*`, as in training); init: a network prediction
    with Vw rows to refine for `fit.steps_refine` steps, or None to fit from the mean
    face (pose, shape, appearance stages). expression_per_view False shares one
    expression (views taken at the same moment). progress shows a tqdm bar.
    """
    start = time.perf_counter()
    num_views = target.num_views
    loss_cfg = dataclasses.replace(
        loss_cfg, landmark=loss_cfg.landmark * fit_cfg.landmark_scale, coefficient=loss_cfg.coefficient * fit_cfg.prior_scale
    )
    objective = _Objective(morphable, target, loss_cfg, fit_cfg, render_cfg)
    face_model = morphable.face_model
    if init is None:
        rotation, translation = landmark_pose(morphable, target.landmarks, target.image_size, loss_cfg.landmark_heavy_weight)
        init = dataclasses.replace(FaceCoefficients.zeros(face_model, num_views), rotation=rotation, translation=translation)
        stages = [
            (("rotation", "translation"), fit_cfg.steps_pose, "pose"),
            (("identity", "expression", "rotation", "translation"), fit_cfg.steps_shape, "shape"),
            (tuple(_ALL), fit_cfg.steps_appearance, "appearance"),
        ]
    else:
        init = init.map(lambda t: t.detach().float().cpu())
        stages = [(tuple(_ALL), fit_cfg.steps_refine, "appearance")]

    params = _Parameters(init, expression_per_view)
    objective.weights = view_landmark_weights(init.rotation, loss_cfg.landmark_heavy_weight, fit_cfg)
    total_steps = sum(s[1] for s in stages)
    bar = tqdm(total=total_steps, desc="fit", leave=False, unit="step") if progress else None
    start_kind = "mean face" if stages[0][2] == "pose" else "prediction"
    for names, steps, kind in stages:
        if kind == "appearance":
            _run_adam_stage(params, names, steps, objective.full_terms, fit_cfg, bar)
        else:
            loss_fn = lambda c, p=(kind == "shape"): objective.landmark_terms(c, p)  # noqa: E731
            _run_lbfgs_stage(params, names, steps, loss_fn, bar)
        if kind == "pose":
            # The pose is now reliable enough to tell side views from frontal ones.
            objective.weights = view_landmark_weights(params.rotation.detach(), loss_cfg.landmark_heavy_weight, fit_cfg)
    if bar is not None:
        bar.close()

    with torch.no_grad():
        coeffs = params.coeffs().map(lambda t: t.detach().clone())
        landmarks = objective.projector(coeffs, target.image_size)
        error = (landmarks - target.landmarks).norm(dim=-1)
        total, values = objective.full_terms(coeffs)
        final = {k: float(v) for k, v in values.items()}
        final["total"] = float(total)
    return FitResult(coeffs=coeffs, landmarks=landmarks, landmark_error=error, terms=final,
                     seconds=time.perf_counter() - start, start=start_kind)
