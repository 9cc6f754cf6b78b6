"""BFM09 sources on small synthetic files of the real layouts (no BFM data needed).

The synthetic face is a height field over a grid, vertices ordered column by column
of increasing x like BFM's, in mm; the files store it the way the real ones do
(decimetres in BFM_model_front.mat, micrometres in 01_MorphableModel.mat).
"""
import numpy as np
import pytest
from scipy.io import savemat

from lib.errors import UserError
from lib.facemodel import load_face_model
from lib.facemodel.bfm import (
    BFM_FRONT_VERTICES,
    NOW7_BFM,
    PIXEL_FACE101_BFM,
    convert_bfm_official,
    load_bfm_front,
    main,
)
from lib.facemodel.schema import FaceModel

# 68 landmarks of a frontal face in mm (x to the subject's left = image right, y up):
# jaw 0-16 from the subject's right ear, brows, nose bridge to the tip (30), nostrils,
# eyes (outer corners 36 and 45 are 90 mm apart), outer and inner lips.
_JAW = [(70 * np.cos(t), 10 + 80 * np.sin(t)) for t in np.linspace(np.pi, 2 * np.pi, 17)]
_BROWS = [(-55 + 10 * i, 42 + 4 * np.sin(np.pi * i / 4)) for i in range(5)]
_BROWS += [(-x, y) for x, y in reversed(_BROWS)]
_NOSE = [(0, 30), (0, 20), (0, 10), (0, 0)] + [(-15 + 7.5 * i, -8) for i in range(5)]
_RIGHT_EYE = [(-45, 28), (-37, 32), (-27, 32), (-19, 28), (-27, 24), (-37, 24)]
_LEFT_EYE = [(19, 28), (27, 32), (37, 32), (45, 28), (37, 24), (27, 24)]
_OUTER_LIPS = [(-25, -30), (-15, -24), (-6, -21), (0, -22), (6, -21), (15, -24), (25, -30),
               (15, -37), (6, -40), (0, -40), (-6, -40), (-15, -37)]
_INNER_LIPS = [(-20, -30), (-8, -28), (0, -28), (8, -28), (20, -30), (8, -32), (0, -32), (-8, -32)]
LANDMARKS_2D = np.array(_JAW + _BROWS + _NOSE + _RIGHT_EYE + _LEFT_EYE + _OUTER_LIPS + _INNER_LIPS)


def synthetic_face(columns=41, rows=41, num_vertices=None):
    """(vertices mm [V, 3], outward triangles 0-based [F, 3], landmarks68 0-based [68]).

    Vertex index = column * rows + row (x-major, as BFM's front vertices); with
    num_vertices, the grid is cut to that many vertices (triangles using cut ones go).
    """
    x, y = np.meshgrid(np.linspace(-90, 90, columns), np.linspace(-100, 80, rows), indexing="ij")
    x, y = x.ravel(), y.ravel()
    head = 60 * np.sqrt(np.clip(1 - (x / 95) ** 2 - (y / 125) ** 2, 0, None))
    nose = 25 * np.exp(-(x / 12) ** 2 - (y / 22) ** 2)
    vertices = np.stack([x, y, head + nose], axis=1)
    c, r = np.meshgrid(np.arange(columns - 1), np.arange(rows - 1), indexing="ij")
    i = (c * rows + r).ravel()
    # Counter-clockwise seen from +z: (x, y) -> (x + 1, y) -> (x + 1, y + 1).
    faces = np.concatenate([np.stack([i, i + rows, i + rows + 1], 1), np.stack([i, i + rows + 1, i + 1], 1)])
    if num_vertices is not None:
        vertices = vertices[:num_vertices]
        faces = faces[(faces < num_vertices).all(axis=1)]
    d = ((vertices[None, :, :2] - LANDMARKS_2D[:, None]) ** 2).sum(-1)
    return vertices, faces, d.argmin(axis=1)


def front_arrays(vertices, faces, landmarks, k=(6, 5, 4), seed=0):
    """The keys of a BFM_model_front.mat for this geometry (dm, 1-based, 0..255)."""
    rng = np.random.default_rng(seed)
    v = len(vertices)
    return {
        "meanshape": (vertices / 100).reshape(1, -1),
        "meantex": rng.uniform(60, 200, (1, 3 * v)),
        "idBase": rng.normal(0, 0.02, (3 * v, k[0])),
        "exBase": rng.normal(0, 0.01, (3 * v, k[1])),
        "texBase": rng.normal(0, 5, (3 * v, k[2])),
        "tri": (faces + 1).astype(np.float64),
        "keypoints": (landmarks + 1).reshape(1, -1).astype(np.float64),
        "point_buf": np.ones((v, 8)),
        "skinmask": (rng.uniform(size=(1, v)) > 0.5).astype(np.float64),
        "frontmask2_idx": np.arange(1, v + 1, dtype=np.float64)[:, None],
        "tri_mask2": (faces + 1).astype(np.float64),
    }


@pytest.fixture(scope="module")
def face():
    return synthetic_face()


def save_front(path, arrays):
    savemat(str(path), arrays)
    return str(path)


def test_load_front_schema_units_indices(tmp_path, face):
    vertices, faces, landmarks = face
    arrays = front_arrays(*face)
    model = load_bfm_front(save_front(tmp_path / "BFM_model_front.mat", arrays))
    v = len(vertices)
    assert model.num_vertices == v and (model.num_id, model.num_exp, model.num_tex) == (6, 5, 4)
    # dm -> mm (x100), recentred on the mean vertex.
    np.testing.assert_allclose(model.mean_shape, vertices - vertices.mean(0), atol=1e-3)
    np.testing.assert_allclose(model.id_basis, arrays["idBase"].reshape(v, 3, 6) * 100, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.exp_basis, arrays["exBase"].reshape(v, 3, 5) * 100, rtol=1e-5, atol=1e-6)
    # Texture 0..255 -> [0, 1].
    np.testing.assert_allclose(model.albedo_mean, arrays["meantex"].reshape(v, 3) / 255, rtol=1e-6)
    np.testing.assert_allclose(model.albedo_basis, arrays["texBase"].reshape(v, 3, 4) / 255, rtol=1e-5, atol=1e-7)
    # 1-based -> 0-based.
    np.testing.assert_array_equal(model.landmarks68, landmarks)
    np.testing.assert_array_equal(model.faces, faces)
    assert model.faces.min() == 0
    np.testing.assert_array_equal(model.skin_mask, arrays["skinmask"].ravel() > 0.5)
    assert model.region_labels.shape == (v,) and model.region_labels.max() > 1
    # Units of a face: outer eye corners 90 mm apart; landmark 30 is the frontmost.
    lm = model.mean_shape[model.landmarks68]
    assert 80 < np.linalg.norm(lm[36] - lm[45]) < 110
    assert np.argmax(lm[:, 2]) == 30


def vertex_normals(vertices, faces):
    v0, v1, v2 = (vertices[faces[:, k]] for k in range(3))
    n = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(n, faces[:, k], np.cross(v1 - v0, v2 - v0))
    return n / np.linalg.norm(n, axis=1, keepdims=True)


@pytest.mark.parametrize("flip", [False, True])
def test_triangles_face_outward(tmp_path, face, flip):
    vertices, faces, landmarks = face
    written = faces[:, [0, 2, 1]] if flip else faces
    model = load_bfm_front(save_front(tmp_path / "f.mat", front_arrays(vertices, written, landmarks)))
    normals = vertex_normals(model.mean_shape, model.faces)
    assert normals[model.landmarks68[30], 2] > 0.9  # nose tip looks at the camera
    assert (normals[:, 2] > 0).mean() > 0.95
    # Same triangles (as sets of corners), only the winding may change.
    np.testing.assert_array_equal(np.sort(model.faces, 1), np.sort(faces, 1))


def test_now7_from_landmarks_and_geometry(tmp_path, face):
    vertices, faces, landmarks = face
    model = load_bfm_front(save_front(tmp_path / "f.mat", front_arrays(*face)))
    assert "pixel_face101" not in model.extra_landmarks
    now7 = model.extra_landmarks["now7"]
    np.testing.assert_array_equal(now7, landmarks[[36, 39, 42, 45, 30, 48, 54]])
    # The order of the seed's BFM indices: eye corners from the subject's right (-x)
    # to the left, then the nose tip (frontmost), then the mouth corners right, left.
    p = model.mean_shape[now7]
    assert p[0, 0] < p[1, 0] < p[4, 0] < p[2, 0] < p[3, 0]
    assert p[5, 0] < p[4, 0] < p[6, 0]
    assert np.argmax(p[:, 2]) == 4
    # On the real BFM the vertex index grows with x, so the seed's indices are
    # ordered the same way.
    assert NOW7_BFM[0] < NOW7_BFM[1] < NOW7_BFM[4] < NOW7_BFM[2] < NOW7_BFM[3]
    assert NOW7_BFM[5] < NOW7_BFM[4] < NOW7_BFM[6]


def test_full_size_front_gets_fixed_index_sets(tmp_path):
    vertices, faces, landmarks = synthetic_face(189, 189, num_vertices=BFM_FRONT_VERTICES)
    arrays = front_arrays(vertices, faces, landmarks, k=(1, 1, 1))
    del arrays["skinmask"]
    model = load_bfm_front(save_front(tmp_path / "big.mat", arrays))
    assert model.num_vertices == BFM_FRONT_VERTICES
    np.testing.assert_array_equal(model.extra_landmarks["now7"], NOW7_BFM)
    assert model.extra_landmarks["pixel_face101"].shape == (101,)
    np.testing.assert_array_equal(model.extra_landmarks["pixel_face101"], PIXEL_FACE101_BFM)
    # The seed's 7 alignment positions in the 101 list are the NoW points.
    np.testing.assert_array_equal(PIXEL_FACE101_BFM[[47, 50, 53, 56, 41, 79, 85]], NOW7_BFM)
    # Without a skinmask key the skin comes from the region labels.
    assert model.skin_mask.any() and not model.skin_mask.all()


def test_missing_file_says_what_to_download(tmp_path):
    with pytest.raises(UserError) as err:
        load_bfm_front(str(tmp_path / "pretrain" / "BFM" / "BFM_model_front.mat"))
    message = str(err.value)
    assert "University of Basel" in message and "pretrain/BFM/BFM_model_front.mat" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "change, key",
    [
        (lambda a: a.pop("exBase"), "exBase"),
        (lambda a: a.update(idBase=a["idBase"][:-3]), "idBase"),
        (lambda a: a.update(meantex=a["meantex"][:, :-1]), "meantex"),
        (lambda a: a.update(tri=a["tri"] + 10 ** 6), "tri"),
        (lambda a: a.update(keypoints=a["keypoints"][:, :60]), "keypoints"),
    ],
)
def test_wrong_keys_and_shapes_name_file_and_key(tmp_path, face, change, key):
    arrays = front_arrays(*face)
    change(arrays)
    path = save_front(tmp_path / "bad.mat", arrays)
    with pytest.raises(UserError, match=f"'{key}'") as err:
        load_bfm_front(path)
    assert str(err.value).startswith(path)


def test_not_a_mat_file(tmp_path):
    path = tmp_path / "BFM_model_front.mat"
    path.write_bytes(b"not a matlab file at all")
    with pytest.raises(UserError, match="BFM_model_front.mat"):
        load_bfm_front(str(path))


def write_official(folder, vertices, faces, landmarks, seed=1):
    """Synthetic official files, and the BFM_model_front.mat arrays that Deep3DFaceRecon's
    recipe gives from them (computed here element by element, the slow obvious way).

    The full BFM has more vertices than the expression model, which has more than the
    front; the index files map between them in shuffled order.
    """
    rng = np.random.default_rng(seed)
    v = len(vertices)
    n_exp, n_bfm = v + 37, v + 91
    k_id, k_exp, k_tex = 83, 66, 82  # more than kept (80 / 64 / 80), to check truncation
    trim = rng.permutation(n_bfm)[:n_exp]  # BFM vertex of each expression-model vertex
    front = rng.permutation(n_exp)[:v]  # expression-model vertex of each front vertex
    shape_mu = rng.normal(0, 1e4, (n_bfm, 3))
    shape_mu[trim[front]] = vertices * 1000  # mm -> micrometres
    official = {
        "shapeMU": shape_mu.reshape(-1, 1),
        "shapePC": rng.normal(0, 1, (3 * n_bfm, k_id)).astype(np.float32),
        "shapeEV": rng.uniform(1e3, 5e3, (k_id, 1)),
        "texMU": rng.uniform(0, 255, (3 * n_bfm, 1)),
        "texPC": rng.normal(0, 1, (3 * n_bfm, k_tex)).astype(np.float32),
        "texEV": rng.uniform(1, 20, (k_tex, 1)),
        "tl": rng.integers(1, n_bfm, (50, 3)).astype(np.float64),
    }
    savemat(str(folder / "01_MorphableModel.mat"), official)
    exp_mu = rng.normal(0, 1, 3 * n_exp).astype(np.float32)
    exp_pc = rng.normal(0, 1, (k_exp, 3 * n_exp)).astype(np.float32)
    with open(folder / "Exp_Pca.bin", "wb") as f:
        np.array([k_exp], dtype="<i4").tofile(f)
        exp_mu.astype("<f4").tofile(f)
        exp_pc.astype("<f4").tofile(f)
    exp_std = rng.uniform(1e3, 1e4, k_exp)
    np.savetxt(folder / "std_exp.txt", exp_std)
    savemat(str(folder / "BFM_exp_idx.mat"), {"trimIndex": (trim + 1).reshape(-1, 1).astype(np.float64)})
    savemat(str(folder / "BFM_front_idx.mat"), {"idx": (front + 1).reshape(-1, 1).astype(np.float64)})
    skin = (rng.uniform(size=(1, v)) > 0.3).astype(np.float64)
    savemat(str(folder / "facemodel_info.mat"), {
        "tri": (faces + 1).astype(np.float64), "keypoints": (landmarks + 1).reshape(1, -1).astype(np.float64),
        "skinmask": skin, "point_buf": np.ones((v, 8)), "frontmask2_idx": np.ones((10, 1)),
        "tri_mask2": (faces[:10] + 1).astype(np.float64),
    })

    expected = {key: np.zeros(shape) for key, shape in [
        ("meanshape", (1, 3 * v)), ("meantex", (1, 3 * v)), ("idBase", (3 * v, 80)),
        ("exBase", (3 * v, 64)), ("texBase", (3 * v, 80))]}
    for j in range(v):
        e, b = front[j], trim[front[j]]
        for c in range(3):
            expected["meanshape"][0, 3 * j + c] = official["shapeMU"][3 * b + c, 0] / 1e5
            expected["meantex"][0, 3 * j + c] = official["texMU"][3 * b + c, 0]
            expected["idBase"][3 * j + c] = official["shapePC"][3 * b + c, :80] * official["shapeEV"][:80, 0] / 1e5
            expected["texBase"][3 * j + c] = official["texPC"][3 * b + c, :80] * official["texEV"][:80, 0]
            expected["exBase"][3 * j + c] = exp_pc[:64, 3 * e + c] * exp_std[:64] / 1e5
    expected.update(tri=(faces + 1).astype(np.float64), keypoints=(landmarks + 1).reshape(1, -1), skinmask=skin)
    return expected


def assert_same_model(a: FaceModel, b: FaceModel):
    for key in ("mean_shape", "id_basis", "exp_basis", "albedo_mean", "albedo_basis"):
        np.testing.assert_allclose(getattr(a, key), getattr(b, key), rtol=1e-5, atol=1e-5, err_msg=key)
    for key in ("faces", "landmarks68", "region_labels", "skin_mask"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key), err_msg=key)
    assert a.extra_landmarks.keys() == b.extra_landmarks.keys()
    for key in a.extra_landmarks:
        np.testing.assert_array_equal(a.extra_landmarks[key], b.extra_landmarks[key])


def test_official_conversion_equals_front_file(tmp_path, face):
    official = tmp_path / "official"
    official.mkdir()
    expected = write_official(official, *face)
    converted = convert_bfm_official(str(official))
    reference = load_bfm_front(save_front(tmp_path / "BFM_model_front.mat", expected))
    assert (converted.num_id, converted.num_exp, converted.num_tex) == (80, 64, 80)
    assert_same_model(converted, reference)
    vertices = face[0]
    np.testing.assert_allclose(converted.mean_shape, vertices - vertices.mean(0), atol=1e-3)
    # The same through the configured loader and through the command line.
    assert_same_model(load_face_model("bfm_official", str(official)), reference)
    out = tmp_path / "bfm.npz"
    assert main(["--official", str(official), "--out", str(out)]) == 0
    assert_same_model(FaceModel.load(str(out)), reference)


def test_official_missing_files_listed(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    with pytest.raises(UserError, match="01_MorphableModel.mat from the BFM09 release") as err:
        convert_bfm_official(str(folder))
    assert "Exp_Pca.bin" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(UserError, match="not a folder"):
        convert_bfm_official(str(tmp_path / "nowhere"))


def test_official_bad_exp_pca(tmp_path, face):
    official = tmp_path / "official"
    official.mkdir()
    write_official(official, *face)
    with open(official / "Exp_Pca.bin", "ab") as f:
        f.write(b"\0\0\0\0")  # one word too many for the declared layout
    with pytest.raises(UserError, match="Exp_Pca.bin"):
        convert_bfm_official(str(official))
