"""Honest fits (lib/fitting/report.py, lib/facemodel/ranges.py, reconstruct): distance
from the prior with range warnings, the plausibility term, and refinement that
never ends worse than fitting from scratch."""
import dataclasses
import math

import numpy as np
import pytest
import torch
from scipy import stats

from lib.config.schema import Config
from lib.facemodel.builtin import build_builtin_face_model
from lib.facemodel.ranges import gaussian_limits
from lib.fitting.fit import fit_views
from lib.fitting.pipeline import PreparedSubject, reconstruct
from lib.fitting.report import coefficient_report, view_agreement
from lib.losses import terms
from lib.morphable import FaceCoefficients, MorphableModel
from lib.render import render_mesh
from tests.test_fitting import SIZE, synthetic_subject


@pytest.fixture(scope="module")
def morphable():
    return MorphableModel(build_builtin_face_model())


def test_gaussian_limits_match_a_monte_carlo_draw():
    max_norm, max_abs = gaussian_limits(100, 0.99)
    draws = np.random.default_rng(0).normal(size=(20000, 100))
    assert np.mean(np.linalg.norm(draws, axis=1) < max_norm) == pytest.approx(0.99, abs=0.003)
    assert np.mean(np.abs(draws[:, 0]) < max_abs) == pytest.approx(0.99, abs=0.003)
    assert max_abs == pytest.approx(2.5758, abs=1e-3)  # the two-sided 99 % normal quantile


def test_outside_losses_are_zero_inside_and_quadratic_outside():
    inside = torch.tensor([[1.0, -2.0, 0.5]])
    assert float(terms.outside_gaussian_loss(inside, 3.0, 2.5)) == 0.0
    # norm 5 > 4 by 1, one coefficient 4 > 3 by 1, the other 3 not above 3: 1 + 1.
    assert float(terms.outside_gaussian_loss(torch.tensor([[4.0, 3.0]]), 4.0, 3.0)) == pytest.approx(2.0)
    assert float(terms.outside_bounds_loss(torch.tensor([[-0.5, 0.5, 1.25]]), 0.0, 1.0)) == pytest.approx(0.3125)


def _coeffs(fm, identity=None, expression=None):
    c = FaceCoefficients.zeros(fm, 2)
    if identity is not None:
        c = dataclasses.replace(c, identity=identity.expand(2, -1))
    if expression is not None:
        c = dataclasses.replace(c, expression=expression)
    return c


def test_coefficient_report_names_what_left_the_range():
    fm = build_builtin_face_model()
    identity = torch.zeros(1, fm.num_id)
    identity[0, 3] = 5.0  # one mode at 5 SD: the norm is fine, the coefficient is not
    report = coefficient_report(_coeffs(fm, identity), fm, 0.999)
    assert report["prior_distance_sd"]["identity"] == pytest.approx(5.0)
    assert report["max_coefficient_sd"]["identity"] == pytest.approx(5.0)
    limit = math.sqrt(stats.chi2.ppf(0.999, fm.num_id))
    assert report["prior_limit_sd"]["identity"] == pytest.approx(limit)
    assert len(report["warnings"]) == 1 and report["warnings"][0].startswith("identity is 5.0 SD")
    quiet = coefficient_report(_coeffs(fm, torch.full((1, fm.num_id), 0.9)), fm, 0.999)
    assert quiet["warnings"] == []  # norm 0.9 * sqrt(K): a typical face
    edge = coefficient_report(_coeffs(fm, torch.full((1, fm.num_id), limit / math.sqrt(fm.num_id))), fm, 0.999)
    assert len(edge["warnings"]) == 1 and "held at the edge" in edge["warnings"][0]

    bounded = fm.replace(exp_range=np.array([0.0, 1.0]))
    expression = torch.zeros(2, fm.num_exp)
    expression[1, 0] = -0.4
    report = coefficient_report(_coeffs(bounded, expression=expression), bounded, 0.999)
    assert report["prior_distance_sd"]["expression"] is None and report["expression_range"] == [0.0, 1.0]
    assert any("expression weights leave the model's range [0, 1] by up to 0.40" in w for w in report["warnings"])


def test_plausibility_keeps_a_noisy_fit_inside_the_range(morphable):
    target, _, _ = synthetic_subject(morphable, seed=5)
    gen = torch.Generator().manual_seed(0)
    noisy = dataclasses.replace(target, landmarks=target.landmarks + 4.0 * torch.randn(target.landmarks.shape, generator=gen))
    cfg = Config()
    fit_cfg = dataclasses.replace(cfg.fit, steps_appearance=0, prior_scale=0.0)
    fm = morphable.face_model
    free = fit_views(morphable, noisy, fit_cfg, dataclasses.replace(cfg.loss, plausibility=0.0), cfg.render,
                     expression_per_view=True)
    held = fit_views(morphable, noisy, fit_cfg, cfg.loss, cfg.render, expression_per_view=True)
    max_norm, max_abs = gaussian_limits(fm.num_id, cfg.loss.plausible_quantile)
    # Without prior and plausibility, noisy landmarks push the identity out of range.
    assert float(free.coeffs.identity[0].norm()) > max_norm or float(free.coeffs.identity.abs().max()) > max_abs
    assert float(held.coeffs.identity[0].norm()) < max_norm * 1.02
    assert float(held.coeffs.identity.abs().max()) < max_abs * 1.02


def test_refinement_keeps_the_better_of_refined_and_scratch(morphable):
    target, truth, _ = synthetic_subject(morphable, seed=2)
    prepared = PreparedSubject(
        name="s", view_names=["a", "b", "c"],
        images=(target.rgb.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8),
        landmarks=target.landmarks.numpy(), parsing=np.zeros((3, SIZE, SIZE), np.uint8),
        skin_weight=np.ones((3, SIZE, SIZE), np.float32),
    )
    cfg = Config()
    cfg = dataclasses.replace(cfg, fit=dataclasses.replace(cfg.fit, steps_refine=2, steps_shape=30, steps_appearance=5,
                                                           render_size=48),
                              loss=dataclasses.replace(cfg.loss, parsing=0.0))  # no parsing maps here
    wrong = dataclasses.replace(truth, identity=truth.identity + 3.0, rotation=truth.rotation + 0.4)
    kept = reconstruct(prepared, morphable, cfg, predictor=lambda p: wrong, fit=True)
    refined = reconstruct(prepared, morphable, cfg, predictor=lambda p: wrong, fit=False)  # the prediction alone
    assert kept.start == "mean face" and kept.terms["total"] < refined.terms["total"]
    # A right prediction against a scratch fit given no shape steps: the prediction stays.
    short = dataclasses.replace(cfg, fit=dataclasses.replace(cfg.fit, steps_shape=0, steps_appearance=1))
    assert reconstruct(prepared, morphable, short, predictor=lambda p: truth, fit=True).start == "prediction"


def _speckled_views(morphable, seed, yaws=(0.0, 30.0)):
    """A face with per-vertex speckles (its 'skin marks', fixed by `seed`) rendered
    head-on and turned: images [2, S, S, 3], vertices, normals [2, V, 3], mask."""
    fm = morphable.face_model
    gen = torch.Generator().manual_seed(seed)
    colours = (0.6 + 0.3 * torch.rand(fm.num_vertices, 3, generator=gen)).expand(len(yaws), -1, -1)
    coeffs = dataclasses.replace(FaceCoefficients.zeros(fm, len(yaws)),
                                 rotation=torch.tensor([[0.0, math.radians(y), 0.0] for y in yaws]))
    with torch.no_grad():
        instance = morphable(coeffs, (SIZE, SIZE))
        render = render_mesh(instance.vertices, morphable.faces, {"color": colours}, (SIZE, SIZE), cull_backfaces=True,
                             backend="auto")
    return render.images["color"], instance.vertices, instance.normals, render.mask[..., 0] > 0.5


def test_view_agreement_tells_one_face_from_two(morphable):
    fm = morphable.face_model
    uv, uv_faces = torch.from_numpy(fm.uv_coords), torch.from_numpy(fm.uv_faces)
    images, verts, normals, mask = _speckled_views(morphable, seed=1)
    other, _, _, _ = _speckled_views(morphable, seed=2)
    cfg = Config().fit
    same = view_agreement(images, verts, normals, morphable.faces, uv, uv_faces, mask, cfg, frontal=0)
    mixed_images = torch.stack([images[0], other[1]])
    mixed = view_agreement(mixed_images, verts, normals, morphable.faces, uv, uv_faces, mask, cfg, frontal=0)
    assert same["agreement"] > 0.5 and mixed["agreement"] < 0.2, (same, mixed)
    assert set(same["pairs"]) == {"0-1"}
