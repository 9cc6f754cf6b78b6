"""Loss terms: zero/minimal at the ground truth, positive away, hand-made cases for the
landmark weights and parsing classes, and gradient flow through the renderer."""
from __future__ import annotations

import math

import pytest
import torch

from lib.config.schema import LossConfig, RenderConfig
from lib.facemodel.schema import NOW7_FROM_68
from lib.geometry import apply_similarity, similarity_transform
from lib.losses import terms

torch.manual_seed(0)


def _rotation_z(angle: float) -> torch.Tensor:
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def test_photometric_zero_at_truth_and_hand_computed():
    target = torch.rand(2, 4, 5, 3)
    weight = torch.rand(2, 4, 5)
    assert terms.photometric_loss(target, target, weight).item() < 1e-3
    rendered = target.clone()
    rendered[0, 1, 2] += torch.tensor([3.0, 4.0, 0.0])  # distance 5 at one pixel
    w = torch.zeros(2, 4, 5)
    w[0, 1, 2] = 2.0
    w[1, 0, 0] = 2.0  # a matching pixel with the same weight
    assert terms.photometric_loss(rendered, target, w).item() == pytest.approx(2.5, abs=1e-3)


def test_photometric_masked_view_contributes_nothing():
    target = torch.rand(2, 3, 3, 3)
    rendered = target.clone()
    rendered[1] += 1.0  # only the masked view is wrong
    w = torch.ones(2, 3, 3)
    valid = torch.tensor([True, False])
    assert terms.photometric_loss(rendered, target, w, valid).item() < 1e-3
    assert terms.photometric_loss(rendered, target, w).item() > 0.5


def test_landmark_weights_indices():
    w = terms.landmark_weights(20.0)
    heavy = {28, 29, 30, *range(36, 48), *range(60, 68)}
    for i in range(68):
        assert w[i].item() == (20.0 if i in heavy else 1.0)


def test_landmark_loss_hand_made():
    target = torch.rand(1, 68, 2) * 224
    weights = terms.landmark_weights(20.0)
    assert terms.landmark_loss(target, target, weights, 224).item() == 0.0
    light, heavy = target.clone(), target.clone()
    light[0, 0, 0] += 1.0  # jaw point, weight 1
    heavy[0, 30, 1] += 1.0  # nose tip, weight 20
    assert terms.landmark_loss(light, target, weights, 224).item() == pytest.approx(1 / 68)
    assert terms.landmark_loss(heavy, target, weights, 224).item() == pytest.approx(20 / 68)
    # One pixel at 112 px is two pixels of the 224-px reference: 4x the squared error.
    assert terms.landmark_loss(light * 0.5, target * 0.5, weights, 112).item() == pytest.approx(1 / 68)
    assert terms.landmark_loss(light, target, weights, 112).item() == pytest.approx(4 / 68)


def test_similarity_transform_recovers_known_transform():
    src = torch.randn(2, 7, 3, dtype=torch.float64) * 30
    rot = _rotation_z(0.4).double()
    dst = 1.3 * src @ rot.T + torch.tensor([5.0, -2.0, 7.0], dtype=torch.float64)
    s, r, t = similarity_transform(src, dst)
    assert torch.allclose(s, torch.full((2,), 1.3, dtype=torch.float64))
    assert torch.allclose(r, rot.expand(2, 3, 3))
    assert torch.allclose(apply_similarity(src, s, r, t), dst)


def test_landmark3d_invariant_to_similarity_and_positive_away():
    target = torch.randn(1, 68, 3) * 40
    moved = 0.8 * target @ _rotation_z(1.0).T + torch.tensor([10.0, 0.0, -3.0])
    assert terms.landmark3d_loss(moved, target, NOW7_FROM_68).item() < 1e-3
    bent = moved.clone()
    bent[0, 8] += torch.tensor([0.0, 0.0, 8.0])  # chin point, not an alignment point
    # Distance of the one moved point, scaled back by 1/0.8, averaged over 68 points.
    assert terms.landmark3d_loss(bent, target, NOW7_FROM_68).item() == pytest.approx(10.0 / 68, rel=1e-3)


def test_landmark3d_gradient_matches_finite_differences_and_ignores_similarity():
    gen = torch.Generator().manual_seed(3)
    target = torch.randn(1, 12, 3, generator=gen, dtype=torch.float64) * 30
    pred = (target + torch.randn(1, 12, 3, generator=gen, dtype=torch.float64) * 3).requires_grad_(True)
    align = (0, 2, 4, 6, 8, 10, 11)
    assert torch.autograd.gradcheck(lambda p: terms.landmark3d_loss(p, target, align), (pred,))
    # The loss is invariant to a similarity of the prediction, so its gradient has no
    # component along scaling: no drift of the shape's size under gradient descent.
    (grad,) = torch.autograd.grad(terms.landmark3d_loss(pred, target, align), pred)
    assert abs((grad * pred).sum().item()) < 1e-6 * grad.norm().item() * pred.norm().item()


def test_coefficient_loss_hand_computed():
    ident, exp, alb = torch.zeros(2, 4), torch.zeros(2, 3), torch.zeros(2, 5)
    assert terms.coefficient_loss(ident, exp, alb, 1.0, 0.8, 0.017).item() == 0.0
    ident[:, 0], exp[:, 1], alb[:, 2] = 1.0, 2.0, 3.0
    expected = 1.0 + 0.8 * 4 + 0.017 * 9
    assert terms.coefficient_loss(ident, exp, alb, 1.0, 0.8, 0.017).item() == pytest.approx(expected)


def test_lighting_loss_zero_for_monochrome():
    mono = torch.randn(3, 1, 9).expand(3, 3, 9).reshape(3, 27)
    assert terms.lighting_loss(mono).item() < 1e-12
    coloured = mono.clone()
    coloured[:, 0] += 0.3  # red DC only
    # Deviations 0.2, -0.1, -0.1 in one of 27 entries: (0.04 + 0.01 + 0.01) / 27.
    assert terms.lighting_loss(coloured).item() == pytest.approx(0.06 / 27, rel=1e-4)


def test_reflectance_loss_only_skin_counts():
    albedo = torch.full((1, 6, 3), 0.5)
    skin = torch.tensor([True, True, True, True, False, False])
    albedo[0, 5] = 0.0  # not skin: ignored
    assert terms.reflectance_loss(albedo, skin).item() == 0.0
    albedo[0, 0, 0] = 0.9
    assert terms.reflectance_loss(albedo, skin).item() > 0.0


def test_parsing_loss_class_handling():
    probs = torch.zeros(1, 1, 3, 10)
    probs[0, 0, 0, 1] = 1.0  # skin
    probs[0, 0, 1, 6] = 1.0  # nose
    probs[0, 0, 2, 4] = 0.5  # half left eye, half skin
    probs[0, 0, 2, 1] = 0.5
    target = torch.tensor([[[1, 6, 4]]])
    coverage = torch.ones(1, 1, 3)
    assert terms.parsing_loss(probs, target, coverage).item() == pytest.approx(math.log(2) / 3, rel=1e-5)
    wrong = torch.tensor([[[6, 6, 4]]])
    assert terms.parsing_loss(probs, wrong, coverage, smoothing=0.01).item() > 1.0
    # Uncovered pixels do not count, whatever their label.
    coverage[0, 0, 0] = 0.0
    assert terms.parsing_loss(probs, wrong, coverage).item() == pytest.approx(math.log(2) / 2, rel=1e-5)


def test_weighted_sum_uses_config_weights():
    from lib.losses import weighted_sum

    cfg = LossConfig()
    values = {"photometric": torch.tensor(1.0), "landmark": torch.tensor(2.0), "parsing": torch.tensor(3.0)}
    expected = cfg.photometric + 2 * cfg.landmark + 3 * cfg.parsing
    assert weighted_sum(values, cfg).item() == pytest.approx(expected)
    with pytest.raises(KeyError):
        weighted_sum({"nonsense": torch.tensor(1.0)}, cfg)


# ---------------------------------------------------------------- through the renderer
SIZE = 48


@pytest.fixture(scope="module")
def scene():
    """A synthetic subject (ground-truth coefficients and its rendered views)."""
    from data.synthetic import generate_split
    from lib.config.schema import Config
    from lib.facemodel.builtin import build_builtin_face_model
    from lib.morphable import FaceCoefficients, MorphableModel

    face_model = build_builtin_face_model()
    cfg = Config()
    cfg.data.image_size = SIZE
    arrays = generate_split(face_model, cfg.data, cfg.loss, "train", 1,
                          progress=False, feature_dilation_px=cfg.preprocess.feature_dilation_px, render=cfg.render)
    views = arrays["rgb"].shape[1]
    t = lambda k: torch.from_numpy(arrays[k])  # noqa: E731
    batch = {
        "rgb": t("rgb").permute(0, 1, 4, 2, 3).float() / 255,
        "parsing": t("parsing").long(),
        "skin_weight": t("skin_weight"),
        "landmarks": t("landmarks"),
        "view_mask": torch.ones(1, views, dtype=torch.bool),
        "landmarks3d": t("landmarks3d"),
    }
    per_view = {
        k: (t(f"gt_{k}")[0] if k in ("rotation", "translation") else t(f"gt_{k}").expand(views, -1)).clone()
        for k in ("identity", "expression", "albedo", "rotation", "translation", "lighting")
    }
    return MorphableModel(face_model), FaceCoefficients(**per_view), batch, cfg.loss


def _perturbed(coeffs, name, delta):
    values = coeffs.as_dict()
    values[name] = values[name] + delta
    return type(coeffs)(**values)


def test_every_term_minimal_at_ground_truth(scene):
    from lib.losses import multiview_losses

    morph, gt, batch, cfg = scene
    truth = multiview_losses(morph, gt, batch, cfg, RenderConfig(), use_parsing=True).terms
    assert truth["landmark"].item() < 1e-6
    assert truth["landmark3d"].item() < 1e-2
    # Photometric: only 8-bit quantisation and antialiasing-free edges remain.
    assert truth["photometric"].item() < 0.03
    assert truth["parsing"].item() < 0.35
    for name, delta in [("translation", torch.tensor([4.0, -3.0, 0.0])), ("identity", 1.0), ("rotation", 0.1)]:
        away = multiview_losses(morph, _perturbed(gt, name, delta), batch, cfg, RenderConfig(), use_parsing=True).terms
        for term in ("photometric", "landmark", "parsing"):
            assert away[term].item() > truth[term].item(), (name, term)
    away = multiview_losses(morph, _perturbed(gt, "albedo", 1.0), batch, cfg, RenderConfig(), use_parsing=True).terms
    assert away["photometric"].item() > truth["photometric"].item()
    assert away["coefficient"].item() > truth["coefficient"].item()


def test_masked_view_contributes_nothing(scene):
    from lib.losses import multiview_losses

    morph, gt, batch, cfg = scene
    masked = dict(batch, view_mask=torch.tensor([[True, False, True]]))
    wrong = gt.map(lambda t: t.clone())
    wrong.translation[1] += 20.0  # only the masked view is wrong
    a = multiview_losses(morph, wrong, masked, cfg, RenderConfig(), use_parsing=True).terms
    b = multiview_losses(morph, gt, masked, cfg, RenderConfig(), use_parsing=True).terms
    for term in ("photometric", "landmark", "parsing"):
        assert a[term].item() == pytest.approx(b[term].item(), rel=1e-5, abs=1e-7)


@pytest.mark.parametrize("term", ["photometric", "parsing"])
def test_gradients_reach_shape_pose_and_albedo(scene, term):
    morph, gt, batch, cfg = scene
    start = _perturbed(_perturbed(gt, "translation", torch.tensor([3.0, 2.0, 0.0])), "identity", 0.5)
    start = _perturbed(start, "albedo", 0.5).map(lambda t: t.detach().requires_grad_(True))
    names = ["identity", "rotation", "translation", "albedo"]
    value = _term_tensor(morph, start, batch, cfg, term)
    grads = torch.autograd.grad(value, [getattr(start, n) for n in names], allow_unused=True)
    for name, g in zip(names, grads):
        if term == "parsing" and name == "albedo":
            assert g is None or g.abs().sum() == 0  # region labels do not depend on albedo
            continue
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0, (term, name)


def _term_tensor(morph, coeffs, batch, cfg, term):
    """One unweighted term with its graph: the weighted total with only that term on."""
    import dataclasses

    from lib.losses import multiview_losses

    only = dataclasses.replace(
        cfg, **{name: (1.0 if name == term else 0.0) for name in
                ("photometric", "landmark", "landmark3d", "coefficient", "lighting", "reflectance", "parsing")}
    )
    return multiview_losses(morph, coeffs, batch, only, RenderConfig(), use_parsing=True).total
