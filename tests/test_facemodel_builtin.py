"""The built-in synthetic face model: schema, determinism, landmark order, geometry
facts, smooth bases, regions and a jaw that opens the mouth."""
import dataclasses

import numpy as np
import pytest
import torch

from lib.facemodel import PARSING_CLASSES, FaceModel, load_face_model
from lib.facemodel.builtin import EXPRESSION_NAMES, build_builtin_face_model
from lib.facemodel.schema import NOW7_FROM_68
from lib.geometry import vertex_normals
from lib.meshio import read_obj, write_obj
from lib.morphable import FaceCoefficients, MorphableModel

CLASS = {name: i for i, name in enumerate(PARSING_CLASSES)}


@pytest.fixture(scope="module")
def model() -> FaceModel:
    return build_builtin_face_model()


def _normals(model, shape):
    verts = torch.tensor(shape, dtype=torch.float64)[None]
    return vertex_normals(verts, torch.tensor(model.faces))[0].numpy()


def _edges(faces):
    return np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])


def test_schema_shapes_and_dtypes(model):
    v = model.num_vertices
    assert 3000 <= v <= 8000
    assert model.mean_shape.shape == (v, 3) and model.mean_shape.dtype == np.float32
    assert model.id_basis.shape == (v, 3, 60) and model.id_basis.dtype == np.float32
    assert model.exp_basis.shape == (v, 3, len(EXPRESSION_NAMES)) and model.exp_basis.dtype == np.float32
    assert model.albedo_mean.shape == (v, 3) and model.albedo_basis.shape[:2] == (v, 3)
    assert model.faces.dtype == np.int64 and model.faces.shape[1] == 3
    assert model.landmarks68.shape == (68,) and len(set(model.landmarks68.tolist())) == 68
    assert model.region_labels.dtype == np.uint8 and model.skin_mask.dtype == np.bool_
    assert model.uv_coords.shape == (v, 2) and model.uv_faces.shape == model.faces.shape
    assert model.uv_coords.min() >= 0.0 and model.uv_coords.max() <= 1.0
    assert "SYNTHETIC" in model.description
    for array in (model.mean_shape, model.id_basis, model.exp_basis, model.albedo_basis):
        assert np.isfinite(array).all()


def test_cached_deterministic_and_npz_round_trip(model, tmp_path):
    assert build_builtin_face_model() is model
    assert load_face_model("builtin") is model
    fresh = build_builtin_face_model.__wrapped__()  # bypasses the cache: a second real build
    path = str(tmp_path / "builtin.npz")
    model.save(path)
    loaded = FaceModel.load(path)
    for other in (fresh, loaded):
        for f in dataclasses.fields(FaceModel):
            a, b = getattr(model, f.name), getattr(other, f.name)
            if f.name == "extra_landmarks":
                assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
            elif isinstance(a, np.ndarray):
                assert a.dtype == b.dtype and np.array_equal(a, b), f.name
            else:
                assert a == b, f.name


def test_centred_near_origin(model):
    assert np.abs(model.mean_shape.astype(np.float64).mean(0)).max() < 1e-3
    assert np.abs(model.mean_shape[model.landmarks68].mean(0)[:2]).max() < 25.0


def test_landmark_order_and_proportions(model):
    lm = model.mean_shape[model.landmarks68]
    assert lm[:, 2].argmax() == 30  # nose tip is the frontmost landmark
    assert lm[:, 1].argmin() == 8  # chin is the lowest
    assert lm[36:42, 0].max() < 0 < lm[42:48, 0].min()  # subject's right eye at -x
    assert lm[17:22, 0].max() < 0 < lm[22:27, 0].min()
    assert lm[0, 0] < 0 < lm[16, 0] and np.all(np.diff(lm[0:9, 1]) < 0) and np.all(np.diff(lm[8:17, 1]) > 0)
    assert lm[48, 0] < lm[54, 0] and lm[36, 0] < lm[39, 0] < lm[42, 0] < lm[45, 0]
    assert lm[51, 1] > lm[62, 1] > lm[66, 1] > lm[57, 1]  # lip contours top to bottom
    assert 80.0 < np.linalg.norm(lm[36] - lm[45]) < 110.0
    assert 120.0 < lm[17:27, 1].mean() - lm[8, 1] < 140.0  # brows to chin
    assert 20.0 < lm[30, 2] - lm[33, 2] < 30.0  # nose tip ahead of the subnasale


def test_now7_points(model):
    now7 = model.extra_landmarks["now7"]
    assert NOW7_FROM_68 == (36, 39, 42, 45, 30, 48, 54)
    assert np.array_equal(now7, model.landmarks68[list(NOW7_FROM_68)])
    p = model.mean_shape[now7]
    assert p[0, 0] < p[1, 0] < 0 < p[2, 0] < p[3, 0]  # eye corners, subject's right first
    assert p[5, 0] < 0 < p[6, 0] and p[4, 2] == p[:, 2].max()


def test_all_parsing_classes_present_and_skin_mask(model):
    counts = np.bincount(model.region_labels, minlength=len(PARSING_CLASSES))
    assert np.all(counts > 0), dict(zip(PARSING_CLASSES, counts))
    assert model.skin_mask.sum() > 0.3 * model.num_vertices
    assert not np.any(model.skin_mask & np.isin(model.region_labels, [CLASS["background"], CLASS["upper_lip"]]))
    lm = model.landmarks68
    assert model.region_labels[lm[30]] == CLASS["nose"]
    assert model.region_labels[lm[19]] == CLASS["right_brow"] and model.region_labels[lm[24]] == CLASS["left_brow"]
    # The eye centres (between the lid landmarks) are eye vertices.
    p = model.mean_shape
    for eye, idx in (("right_eye", lm[36:42]), ("left_eye", lm[42:48])):
        centre = p[idx, :2].mean(0)
        assert model.region_labels[np.linalg.norm(p[:, :2] - centre, axis=1).argmin()] == CLASS[eye]


def test_albedo_in_range_with_orthogonal_modes(model):
    assert model.albedo_mean.min() >= 0.0 and model.albedo_mean.max() <= 1.0
    b = model.albedo_basis.reshape(-1, model.num_tex).astype(np.float64)
    gram = b.T @ b
    assert np.allclose(gram - np.diag(np.diag(gram)), 0.0, atol=1e-4 * gram.max())
    lips = np.isin(model.region_labels, [CLASS["upper_lip"], CLASS["lower_lip"]])
    red_over_green = lambda rgb: rgb[:, 0].mean() / rgb[:, 1].mean()  # noqa: E731
    assert red_over_green(model.albedo_mean[lips]) > red_over_green(model.albedo_mean[model.skin_mask])


def test_normals_point_outward(model):
    n = _normals(model, model.mean_shape)
    p = model.mean_shape.astype(np.float64)
    tip = np.linalg.norm(p - p[model.landmarks68[30]], axis=1) < 6.0
    assert n[tip].mean(0)[2] > 0.7
    assert np.mean((n * (p - p.mean(0))).sum(1) > 0) > 0.95
    sides = np.abs(p[:, 0]) > 60.0
    assert np.mean(np.sign(n[sides, 0]) == np.sign(p[sides, 0])) > 0.95


@pytest.mark.parametrize("basis", ["id_basis", "exp_basis"])
def test_modes_are_smooth(model, basis):
    edges = _edges(model.faces)
    modes = getattr(model, basis)
    for k in range(modes.shape[2]):
        d = modes[:, :, k]
        step = np.linalg.norm(d[edges[:, 0]] - d[edges[:, 1]], axis=1)
        assert np.percentile(step, 99) < 0.4 * np.linalg.norm(d, axis=1).max(), (basis, k)


def test_identity_basis_orthogonal_with_mm_scale_peaks(model):
    b = model.id_basis.reshape(-1, model.num_id).astype(np.float64)
    gram = b.T @ b
    assert np.allclose(gram - np.diag(np.diag(gram)), 0.0, atol=1e-3 * gram.max())
    peaks = np.linalg.norm(model.id_basis, axis=1).max(0)
    assert 3.5 < peaks.max() < 5.0 and peaks.min() > 0.2
    # The first mode widens the face: the jaw ends move apart.
    lm = model.landmarks68
    widened = model.mean_shape + model.id_basis[:, :, 0]
    assert widened[lm[16], 0] - widened[lm[0], 0] > model.mean_shape[lm[16], 0] - model.mean_shape[lm[0], 0] + 4.0
    # Random identities (coefficients ~ N(0, 1)) keep the landmark order facts.
    rng = np.random.default_rng(0)
    for _ in range(5):
        face = (model.mean_shape + model.id_basis @ rng.normal(size=model.num_id))[lm]
        assert face[:, 2].argmax() == 30 and face[:, 1].argmin() == 8
        assert 80.0 < np.linalg.norm(face[36] - face[45]) < 110.0


def test_expressions_move_the_right_parts(model):
    lm = model.landmarks68
    p = model.mean_shape.astype(np.float64)

    def landmarks_with(name, coefficient=1.0):
        return (p + coefficient * model.exp_basis[:, :, EXPRESSION_NAMES.index(name)])[lm]

    opened = landmarks_with("jaw_open")
    gap = lambda q: np.linalg.norm(q[62] - q[66])  # noqa: E731
    assert gap(opened) > gap(p[lm]) + 10.0
    assert np.abs(opened[27:31] - p[lm[27:31]]).max() < 0.5  # the nose stays put
    assert opened[8, 1] < p[lm[8], 1] - 10.0  # the chin drops
    blink = landmarks_with("eye_blink_L")
    assert abs(blink[44, 1] - blink[46, 1]) < 1.5 < abs(p[lm[44], 1] - p[lm[46], 1])
    assert np.allclose(blink[36:42], p[lm[36:42]], atol=0.05)  # the other eye stays open
    smile = landmarks_with("smile_L")
    assert smile[54, 1] > p[lm[54], 1] + 2.0 and abs(smile[48, 1] - p[lm[48], 1]) < 0.5


def test_morphable_projection_puts_subjects_left_eye_on_image_right(model):
    morph = MorphableModel(model)
    out = morph(FaceCoefficients.zeros(model, 1), (224, 224))
    lm = out.landmarks[0].numpy()
    assert lm[36, 0] < lm[45, 0] and lm[19, 1] < lm[8, 1]  # rows run downward
    assert np.all((lm > 0) & (lm < 224))


def test_textured_obj_export_round_trip(model, tmp_path):
    texture = np.zeros((8, 8, 3), dtype=np.uint8)
    path = str(tmp_path / "builtin.obj")
    write_obj(path, model.mean_shape, model.faces, uv_coords=model.uv_coords, uv_faces=model.uv_faces, texture=texture)
    mesh = read_obj(path)
    assert np.allclose(mesh.vertices, model.mean_shape, atol=1e-4) and np.array_equal(mesh.faces, model.faces)
    assert np.allclose(mesh.uv_coords, model.uv_coords, atol=1e-5) and np.array_equal(mesh.uv_faces, model.uv_faces)
