"""Multi-view fitting, texture baking, input discovery (lib.fitting)."""
import dataclasses
import math

import numpy as np
import pytest
import torch

from lib.config.schema import FitConfig, LossConfig, RenderConfig
from lib.errors import UserError
from lib.facemodel.builtin import build_builtin_face_model
from lib.fitting.fit import FitTarget, fit_views, initial_pose, landmark_pose
from lib.fitting.inputs import discover_subjects
from lib.fitting.pipeline import assign_view_slots
from lib.fitting.texture import bake_texture
from lib.geometry import euler_to_matrix, vertex_normals
from lib.geometry import matrix_to_euler, similarity_transform
from lib.morphable import FaceCoefficients, MorphableModel
from lib.render import render_mesh

SIZE = 96


@pytest.fixture(scope="module")
def morphable():
    return MorphableModel(build_builtin_face_model())


def synthetic_subject(morphable, seed=0, yaws=(-30.0, 0.0, 30.0)):
    """Known coefficients rendered into 3 views of SIZE px: (target, truth coeffs)."""
    gen = torch.Generator().manual_seed(seed)
    fm = morphable.face_model
    n = len(yaws)
    shared = lambda k, std: (torch.randn(1, k, generator=gen) * std).expand(n, -1)  # noqa: E731
    truth = FaceCoefficients(
        identity=shared(fm.num_id, 1.0),
        expression=shared(fm.num_exp, 0.5),
        albedo=shared(fm.num_tex, 0.5),
        rotation=torch.tensor([[0.05, math.radians(y), 0.02] for y in yaws]),
        translation=torch.tensor([[3.0, -4.0, 20.0]]).expand(n, -1),
        lighting=torch.zeros(n, 27),
    )
    with torch.no_grad():
        instance = morphable(truth, (SIZE, SIZE))
        render = render_mesh(instance.vertices, morphable.faces, {"color": instance.colors}, (SIZE, SIZE),
                             cull_backfaces=True, backend="auto")
        rgb = render.images["color"] * render.mask + 0.3 * (1 - render.mask)
    target = FitTarget(rgb=rgb.permute(0, 3, 1, 2).clamp(0, 1), landmarks=instance.landmarks.clone())
    return target, truth, instance.shape[0]


def aligned_error(shape, truth_shape):
    """Mean vertex distance (mm) after the best similarity transform."""
    s, r, t = similarity_transform(shape[None].double(), truth_shape[None].double())
    aligned = s[:, None, None] * shape[None].double() @ r.transpose(1, 2) + t[:, None]
    return float((aligned[0] - truth_shape.double()).norm(dim=-1).mean())


def test_matrix_to_euler_inverts_euler_to_matrix():
    angles = torch.tensor([[0.3, -0.7, 0.2], [-1.0, 1.2, 2.5], [0.0, 0.0, 0.0]])
    back = matrix_to_euler(euler_to_matrix(angles))
    assert torch.allclose(euler_to_matrix(back), euler_to_matrix(angles), atol=1e-5)
    assert torch.allclose(back, angles, atol=1e-5)


def test_initial_pose_recovers_a_known_pose(morphable):
    target, truth, _ = synthetic_subject(morphable, seed=1)
    rotation, translation = landmark_pose(morphable, target.landmarks, target.image_size, 20.0)
    # Weak perspective and a non-mean identity leave a few degrees / mm of error.
    assert (rotation - truth.rotation).abs().max() < math.radians(8)
    assert (translation - truth.translation).abs().max() < 40.0


def test_initial_pose_exact_for_a_far_planar_free_case():
    # Points projected orthographically-ish from far away: the pose must come back.
    points = torch.randn(68, 3) * 30
    angles = torch.tensor([[0.2, -0.4, 0.1]])
    offset = torch.tensor([[5.0, -3.0, -3000.0]])
    from lib.geometry import project, rigid_transform

    screen = project(rigid_transform(points[None], euler_to_matrix(angles), offset), (224, 224))[..., :2]
    rotation, translation = initial_pose(points, screen, torch.ones(1, 68), (224, 224))
    assert torch.allclose(rotation, angles, atol=0.02)
    assert abs(float(translation[0, 2]) + 3000.0) < 100.0


def test_fitting_lowers_landmark_and_shape_error(morphable):
    target, truth, truth_shape = synthetic_subject(morphable, seed=4)
    cfg = dataclasses.replace(FitConfig(), steps_pose=20, steps_shape=100, steps_appearance=5, render_size=48)
    result = fit_views(morphable, target, cfg, LossConfig(), RenderConfig(), expression_per_view=True)
    mean_fit = fit_views(morphable, target, dataclasses.replace(cfg, steps_shape=0, steps_appearance=0), LossConfig(),
                         RenderConfig(), expression_per_view=True)
    fit_px = float(result.landmark_error.median())
    mean_px = float(mean_fit.landmark_error.median())
    assert fit_px < 0.5 * mean_px and fit_px < 1.0, (fit_px, mean_px)

    front = int(result.coeffs.rotation[:, 1].abs().argmin())
    with torch.no_grad():
        shape = morphable.shape(result.coeffs.identity[front : front + 1], result.coeffs.expression[front : front + 1])[0]
    mean_shape = morphable.mean_shape.reshape(-1, 3)
    fit_mm, mean_mm = aligned_error(shape, truth_shape), aligned_error(mean_shape, truth_shape)
    assert fit_mm < 0.6 * mean_mm, (fit_mm, mean_mm)
    # Shared coefficients stay shared; the result has one row per view.
    assert result.coeffs.identity.shape[0] == 3 and torch.equal(result.coeffs.identity[0], result.coeffs.identity[2])


def test_refinement_starts_from_the_given_prediction(morphable):
    target, truth, _ = synthetic_subject(morphable, seed=3)
    # The targets are the fixed landmark vertices (no silhouette), so no contour marching.
    cfg = dataclasses.replace(FitConfig(), steps_refine=0, render_size=48, contour_marching=False)
    result = fit_views(morphable, target, cfg, LossConfig(), RenderConfig(), init=truth,
                       expression_per_view=True)
    # Zero refinement steps: the prediction comes back untouched and fits exactly.
    assert torch.allclose(result.coeffs.rotation, truth.rotation)
    assert float(result.landmark_error.max()) < 1e-3


@pytest.mark.parametrize("on_silhouette", [False, True])
def test_fixed_vertex_landmarks_are_fitted_without_marching(morphable, on_silhouette):
    """With fit.contour_marching on, a target whose landmarks are the model's fixed
    vertices (landmarks_on_silhouette=False, synthetic subjects) is measured against
    those vertices: the true coefficients fit it exactly. Marked as detected, the
    model's jaw points march to the silhouette of the turned views and move off them."""
    target, truth, _ = synthetic_subject(morphable, seed=3)
    target.landmarks_on_silhouette = on_silhouette
    cfg = dataclasses.replace(FitConfig(), steps_refine=0, render_size=48, contour_marching=True)
    result = fit_views(morphable, target, cfg, LossConfig(), RenderConfig(), init=truth, expression_per_view=True)
    jaw_error = float(result.landmark_error[:, :17].max())
    assert (jaw_error > 0.5) if on_silhouette else (float(result.landmark_error.max()) < 1e-3)


def test_contour_marching_fits_silhouette_landmarks_better(morphable):
    """Targets as a detector gives them on turned faces (jaw on the silhouette,
    `select_contour` on the true pose): the fit with marching ends nearer them on the
    jaw than the fit with fixed jaw vertices, and the shape is no worse."""
    from lib.fitting.contour import contour_lines, select_contour

    target, truth, truth_shape = synthetic_subject(morphable, seed=5, yaws=(-40.0, 0.0, 40.0))
    fm = morphable.face_model
    lines = contour_lines(fm.mean_shape, fm.landmarks68, FitConfig.contour_band_mm, FitConfig.contour_inner_fraction)
    with torch.no_grad():
        screen = morphable(truth, (SIZE, SIZE)).screen
    chosen = select_contour(lines, morphable.landmarks68, screen[..., 0])
    target.landmarks = torch.gather(screen[..., :2], 1, chosen[..., None].expand(-1, -1, 2))
    errors = {}
    for marching in (False, True):
        cfg = dataclasses.replace(FitConfig(), steps_pose=20, steps_shape=100, steps_appearance=0,
                                  contour_marching=marching)
        result = fit_views(morphable, target, cfg, LossConfig(), RenderConfig(), expression_per_view=True)
        with torch.no_grad():
            fitted = morphable(result.coeffs, (SIZE, SIZE)).screen
        # Both judged with the silhouette definition the targets use.
        picked = select_contour(lines, morphable.landmarks68, fitted[..., 0])
        points = torch.gather(fitted[..., :2], 1, picked[..., None].expand(-1, -1, 2))
        jaw = (points - target.landmarks).norm(dim=-1)[[0, 2], :17].mean()
        shape = morphable.shape(result.coeffs.identity[1:2], result.coeffs.expression[1:2])[0].detach()
        errors[marching] = (float(jaw), aligned_error(shape, truth_shape))
    assert errors[True][0] < 0.7 * errors[False][0], errors
    assert errors[True][1] < 1.05 * errors[False][1], errors


def flat_quad_scene(size=64):
    """A 40 mm square at z=0 facing the camera, UVs on its corners, and a photo with
    four coloured quadrants (projected square: px 26.2 .. 37.8 at 64 px)."""
    verts = torch.tensor([[-20.0, -20, 0], [20, -20, 0], [20, 20, 0], [-20, 20, 0]])
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    uv = torch.tensor([[0.0, 0], [1, 0], [1, 1], [0, 1]])
    image = torch.zeros(size, size, 3)
    image[: size // 2, : size // 2] = torch.tensor([1.0, 0, 0])
    image[: size // 2, size // 2 :] = torch.tensor([0.0, 1, 0])
    image[size // 2 :, : size // 2] = torch.tensor([0.0, 0, 1])
    image[size // 2 :, size // 2 :] = torch.tensor([1.0, 1, 0])
    return verts, faces, uv, image


def test_bake_texture_flat_quad_holds_the_photo_colours():
    verts, faces, uv, image = flat_quad_scene()
    normals = vertex_normals(verts[None], faces)
    baked = bake_texture(image[None], verts[None], normals, faces, uv, faces, torch.full((4, 3), 0.5), 16, 0.2, 2.0)
    tex = baked.image.astype(int)
    # Texture row 0 is v = 1, the top of the quad (+y), which is the top of the photo.
    # The outer texels (within a photo pixel of the quad's outline, where the photo
    # also shows what lies around it) are not baked.
    assert (tex[2:6, 2:6] == [255, 0, 0]).all()  # top-left red
    assert (tex[2:6, -6:-2] == [0, 255, 0]).all()  # top-right green
    assert (tex[-6:-2, 2:6] == [0, 0, 255]).all()  # bottom-left blue
    assert (tex[-6:-2, -6:-2] == [255, 255, 0]).all()  # bottom-right yellow
    assert (baked.baked[2:-2, 2:-2] == 1.0).all() and (baked.baked[0] < 1).all()


def test_bake_texture_uses_the_fallback_where_no_view_sees():
    verts, faces, uv, image = flat_quad_scene()
    away = verts * torch.tensor([-1.0, 1.0, 1.0])  # mirrored: faces away from the camera
    normals = vertex_normals(away[None], faces)
    baked = bake_texture(image[None], away[None], normals, faces, uv, faces, torch.full((4, 3), 0.5), 16, 0.2, 2.0)
    assert (baked.image == 128).all() and baked.baked_fraction == 0.0


def test_bake_texture_depth_test_hides_an_occluded_surface():
    verts, faces, uv, image = flat_quad_scene()
    # Two copies of the quad: the second 50 mm behind the first, in its own UV half.
    behind = verts + torch.tensor([0.0, 0.0, -50.0])
    scene = torch.cat([verts, behind])
    both = torch.cat([faces, faces + 4])
    uv2 = torch.cat([uv * torch.tensor([0.5, 1.0]), uv * torch.tensor([0.5, 1.0]) + torch.tensor([0.5, 0.0])])
    normals = vertex_normals(scene[None], both)
    fallback = torch.full((8, 3), 0.5)
    baked = bake_texture(image[None], scene[None], normals, both, uv2, both, fallback, 32, 0.2, 2.0)
    front, hidden = baked.baked[3:29, 3:13], baked.baked[:, 18:30]
    assert (front > 0.99).all() and (hidden == 0).all()


def test_discover_seed_layout_and_subject_folders(tmp_path):
    samples = tmp_path / "samples"
    for view in range(3):
        (samples / str(view)).mkdir(parents=True)
        for name in ("abc", "xyz"):
            (samples / str(view) / f"{name}{view}.png").write_bytes(b"")
    (samples / "1" / "lonely1.png").write_bytes(b"")
    subjects = {s.name: s.views for s in discover_subjects(str(samples))}
    assert set(subjects) == {"abc", "xyz", "lonely"}
    assert [p.split("/")[-2:] for p in subjects["abc"]] == [["0", "abc0.png"], ["1", "abc1.png"], ["2", "abc2.png"]]
    assert len(subjects["lonely"]) == 1

    folders = tmp_path / "people"
    (folders / "ann").mkdir(parents=True)
    (folders / "empty").mkdir()
    for f in ("b.jpg", "a.png", "notes.txt"):
        (folders / "ann" / f).write_bytes(b"")
    subjects = {s.name: s.views for s in discover_subjects(str(folders))}
    assert [p.split("/")[-1] for p in subjects["ann"]] == ["a.png", "b.jpg"]
    assert subjects["empty"] == ()
    # Loose photos are one subject each.
    assert [(s.name, len(s.views)) for s in discover_subjects(str(folders / "ann"))] == [("a", 1), ("b", 1)]


def test_discover_rejects_missing_and_empty_input(tmp_path):
    with pytest.raises(UserError, match="not a folder"):
        discover_subjects(str(tmp_path / "nope"))
    with pytest.raises(UserError, match="no images"):
        discover_subjects(str(tmp_path))


def test_assign_view_slots_by_yaw():
    yaw = torch.tensor([math.radians(-30), 0.0, math.radians(30)])
    assert assign_view_slots(yaw, 3, 15.0) == [0, 1, 2]
    assert assign_view_slots(yaw[[1]], 3, 15.0) == [1]
    assert assign_view_slots(yaw[[2, 0]], 3, 15.0) == [2, 0]
    with pytest.raises(UserError, match="at most 3"):
        assign_view_slots(torch.zeros(4), 3, 15.0)
    assert np.array_equal(assign_view_slots(torch.zeros(2), 3, 15.0), [0, 1])


def _coloured_background_scene(morphable, grow=1.0):
    """The mean face seen head-on at SIZE px in skin colour (0.8, 0.55, 0.45), in front
    of a saturated green background object; the parsing mask is where the face is.
    The baked mesh is the face scaled by `grow` about its centre (a fit a little too
    big reaches over the background). Returns bake_texture's arguments."""
    fm = morphable.face_model
    coeffs = FaceCoefficients.zeros(fm, 1)
    with torch.no_grad():
        instance = morphable(coeffs, (SIZE, SIZE))
        skin = torch.tensor([0.8, 0.55, 0.45]).expand_as(instance.vertices)
        render = render_mesh(instance.vertices, morphable.faces, {"color": skin}, (SIZE, SIZE), cull_backfaces=True,
                             backend="auto")
        face = render.mask[..., 0] > 0.5
        image = torch.where(face[..., None], render.images["color"], torch.tensor([0.0, 1.0, 0.0]))
        centre = instance.vertices.mean(dim=1, keepdim=True)
        grown = centre + (instance.vertices - centre) * grow
        normals = vertex_normals(grown, morphable.faces)
    uv, uv_faces = torch.from_numpy(fm.uv_coords), torch.from_numpy(fm.uv_faces)
    grey = torch.full((fm.num_vertices, 3), 0.5)
    return image, grown, normals, morphable.faces, uv, uv_faces, grey, face


def test_bake_texture_keeps_a_coloured_background_object_out(morphable):
    image, verts, normals, faces, uv, uv_faces, grey, face = _coloured_background_scene(morphable, grow=1.06)
    baked = bake_texture(image, verts, normals, faces, uv, uv_faces, grey, 128, 0.2, 2.0, bakeable=face)
    tex = baked.image.astype(int)
    greenish = (tex[..., 1] - np.maximum(tex[..., 0], tex[..., 2])) > 20
    assert not greenish.any(), f"{int(greenish.sum())} texels hold the background's green"
    assert baked.baked_fraction > 0.3  # the face itself was baked


def test_bake_texture_fills_unseen_texels_in_the_photo_skin_tone(morphable):
    image, verts, normals, faces, uv, uv_faces, grey, face = _coloured_background_scene(morphable)
    baked = bake_texture(image, verts, normals, faces, uv, uv_faces, grey, 128, 0.2, 2.0, bakeable=face)
    unseen = baked.covered & (baked.baked == 0)
    assert unseen.sum() > 100
    # The grey fallback is scaled to the photographed skin (0.8, 0.55, 0.45), lit.
    lit = np.median(baked.image[baked.baked > 0.99].astype(float), axis=0)
    filled = np.median(baked.image[unseen].astype(float), axis=0)
    assert np.abs(filled - lit).max() < 10, (filled, lit)


def test_fitting_and_training_compute_the_same_objective(morphable):
    """Fitting's full objective is training's `multiview_losses` on a batch of one:
    the same value on the same input, and render.* reaches both (the old fitting
    objective rebuilt the terms itself and always culled back faces)."""
    from lib.fitting.fit import _Objective
    from lib.losses import multiview_losses

    target, truth, _ = synthetic_subject(morphable, seed=3)
    views = target.num_views
    gen = torch.Generator().manual_seed(1)
    target.parsing = torch.randint(0, 10, (views, SIZE, SIZE), generator=gen)
    target.skin_weight = torch.rand(views, SIZE, SIZE, generator=gen)
    coeffs = truth.map(lambda t: t + 0.05 * torch.randn(t.shape, generator=gen))
    loss_cfg = LossConfig()
    batch = {
        "rgb": target.rgb[None], "parsing": target.parsing[None], "skin_weight": target.skin_weight[None],
        "landmarks": target.landmarks[None], "view_mask": torch.ones(1, views, dtype=torch.bool),
    }
    # No resampling: the same pixels. Without contour marching, which is fitting's one
    # deliberate difference (detected jaw points follow the silhouette; tested apart).
    fit_cfg = dataclasses.replace(FitConfig(), render_size=SIZE, contour_marching=False)
    for render_cfg in (RenderConfig(), RenderConfig(cull_backfaces=False, backend="torch")):
        training = multiview_losses(morphable, coeffs, batch, loss_cfg, render_cfg, use_parsing=True)
        fitting, terms = _Objective(morphable, target, loss_cfg, fit_cfg, render_cfg).full_terms(coeffs)
        # Fitting adds its plausibility term, zero for coefficients inside the model's range.
        assert set(terms) == (set(training.terms) - {"total"}) | {"plausibility"} and terms["plausibility"] == 0
        assert fitting.item() == pytest.approx(training.total.item(), rel=1e-6)
    culled = _Objective(morphable, target, loss_cfg, fit_cfg, RenderConfig()).full_terms(coeffs)[0]
    unculled = _Objective(morphable, target, loss_cfg, fit_cfg, RenderConfig(cull_backfaces=False)).full_terms(coeffs)[0]
    assert culled.item() != unculled.item()


def test_landmark_vertices_reach_the_full_objective(morphable):
    """multiview_losses gathers the landmark term at batch['landmark_vertices'] when
    given: the fixed vertices give the default value, the marched ones of a turned
    face (fitting's stage 3) a different one."""
    from lib.fitting.fit import _Objective
    from lib.losses import multiview_losses

    target, truth, _ = synthetic_subject(morphable, seed=2, yaws=(-40.0, 0.0, 40.0))
    views = target.num_views
    batch = {
        "rgb": target.rgb[None], "skin_weight": torch.ones(1, views, SIZE, SIZE),
        "landmarks": target.landmarks[None], "view_mask": torch.ones(1, views, dtype=torch.bool),
    }
    coeffs = truth.map(lambda t: t + 0.02)
    plain = multiview_losses(morphable, coeffs, batch, LossConfig(), RenderConfig(), use_parsing=False)
    fixed = {**batch, "landmark_vertices": morphable.landmarks68[None, None].expand(1, views, -1)}
    same = multiview_losses(morphable, coeffs, fixed, LossConfig(), RenderConfig(), use_parsing=False)
    assert same.terms["landmark"].item() == pytest.approx(plain.terms["landmark"].item(), rel=1e-6)
    fit_cfg = dataclasses.replace(FitConfig(), render_size=SIZE)
    marched = _Objective(morphable, target, LossConfig(), fit_cfg, RenderConfig()).full_terms(coeffs)[1]["landmark"]
    assert abs(marched.item() - plain.terms["landmark"].item()) > 1e-3 * plain.terms["landmark"].item()
