"""ICT-FaceKit conversion on the real shared archive (unpacked and converted once per run)."""
import json
import os

import numpy as np
import pytest

from lib.errors import UserError
from lib.facemodel.ict import FACE_VERTICES, LANDMARKS68, convert_ict
from lib.facemodel.schema import NUM_PARSING_CLASSES, PARSING_CLASSES, FaceModel
from lib.meshio import read_obj, read_obj_vertices, write_obj


def test_schema_sizes(ict_model):
    m = ict_model
    assert m.num_vertices == FACE_VERTICES == 9409
    # 9,230 polygons, mostly quads: each quad gives 2 triangles, each triangle 1.
    assert 9230 < len(m.faces) <= 2 * 9230
    assert (m.num_id, m.num_exp) == (100, 53)
    assert m.albedo_basis.shape[:2] == (9409, 3) and m.num_tex >= 1
    assert m.albedo_mean.min() >= 0 and m.albedo_mean.max() <= 1
    assert m.has_uv and m.uv_faces.shape == m.faces.shape
    assert m.uv_coords.min() >= 0 and m.uv_coords.max() <= 1
    np.testing.assert_array_equal(m.landmarks68, LANDMARKS68)
    np.testing.assert_array_equal(m.extra_landmarks["now7"], LANDMARKS68[[36, 39, 42, 45, 30, 48, 54]])


def test_landmarks_match_vertex_indices_json(ict_folder):
    with open(os.path.join(ict_folder, "vertex_indices.json")) as f:
        np.testing.assert_array_equal(json.load(f)["idx_to_landmark_verts"], LANDMARKS68)


def test_units_centre_and_landmark_order(ict_model):
    m = ict_model
    np.testing.assert_allclose(m.mean_shape.mean(0), 0, atol=1e-3)
    lm = m.mean_shape[m.landmarks68]
    assert 80 < np.linalg.norm(lm[36] - lm[45]) < 110  # mm, so cm -> mm happened
    assert np.argmax(lm[:, 2]) == 30  # the nose tip is the frontmost landmark
    assert lm[45, 0] > lm[36, 0]  # subject's left eye (42-47) is at +x
    assert lm[8, 1] < lm[30, 1] < lm[27, 1]  # chin below the nose tip below the bridge


def test_faces_point_outward(ict_model):
    m = ict_model
    v = m.mean_shape.astype(np.float64)
    v0, v1, v2 = (v[m.faces[:, k]] for k in range(3))
    normals = np.cross(v1 - v0, v2 - v0)
    centre = v[m.landmarks68[30]]
    near_tip = np.linalg.norm((v0 + v1 + v2) / 3 - centre, axis=1) < 10
    assert near_tip.sum() > 10
    assert (normals[near_tip, 2] > 0).mean() > 0.95


def test_modes_are_mesh_minus_neutral(ict_model, ict_folder):
    neutral = read_obj_vertices(os.path.join(ict_folder, "generic_neutral_mesh.obj"))[:FACE_VERTICES]
    identity = read_obj_vertices(os.path.join(ict_folder, "identity007.obj"))[:FACE_VERTICES]
    np.testing.assert_allclose(ict_model.id_basis[:, :, 7], (identity - neutral) * 10, atol=1e-4)
    with open(os.path.join(ict_folder, "vertex_indices.json")) as f:
        names = json.load(f)["expressions"]
    jaw = names.index("jawOpen")
    opened = read_obj_vertices(os.path.join(ict_folder, "jawOpen.obj"))[:FACE_VERTICES]
    np.testing.assert_allclose(ict_model.exp_basis[:, :, jaw], (opened - neutral) * 10, atol=1e-4)
    # jawOpen moves the chin down by centimetres.
    assert ict_model.exp_basis[ict_model.landmarks68[8], 1, jaw] < -10


def test_region_labels(ict_model):
    counts = np.bincount(ict_model.region_labels, minlength=NUM_PARSING_CLASSES)
    assert (counts > 0).all(), dict(zip(PARSING_CLASSES, counts))
    assert ict_model.region_labels[ict_model.landmarks68[30]] == PARSING_CLASSES.index("nose")
    assert ict_model.skin_mask.sum() > 1000


def test_cache_and_mesh_round_trip(ict_model, tmp_path):
    cache = tmp_path / "ict.npz"
    ict_model.save(str(cache))
    m = FaceModel.load(str(cache))
    np.testing.assert_array_equal(m.faces, ict_model.faces)
    path = str(tmp_path / "ict_mean.obj")
    texture = np.full((8, 8, 3), 200, np.uint8)
    write_obj(path, m.mean_shape, m.faces, uv_coords=m.uv_coords, uv_faces=m.uv_faces, texture=texture)
    back = read_obj(path)
    np.testing.assert_allclose(back.vertices, m.mean_shape, atol=1e-5)
    np.testing.assert_array_equal(back.faces, m.faces)
    np.testing.assert_array_equal(back.uv_faces, m.uv_faces)
    assert os.path.isfile(back.texture_path)


def test_fresh_cache_is_loaded_stale_one_rebuilt(ict_model, tmp_path):
    source = tmp_path / "FaceXModel"
    source.mkdir()
    cache = tmp_path / "cached.npz"
    ict_model.save(str(cache))
    os.utime(source, (1e9, 1e9))  # source older than the cache: the (empty) source is not read
    np.testing.assert_array_equal(convert_ict(str(source), cache=str(cache)).faces, ict_model.faces)
    os.utime(source, None)
    os.utime(cache, (1e9, 1e9))  # stale cache: converts again, which fails on the empty folder
    with pytest.raises(UserError, match="generic_neutral_mesh.obj"):
        convert_ict(str(source), cache=str(cache))


def test_bad_sources(tmp_path):
    with pytest.raises(UserError, match="ICT-FaceKit"):
        convert_ict(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="generic_neutral_mesh.obj"):
        convert_ict(str(tmp_path / "empty"))
    (tmp_path / "junk.tar.xz").write_bytes(b"junk")
    with pytest.raises(UserError, match="junk.tar.xz"):
        convert_ict(str(tmp_path / "junk.tar.xz"))
