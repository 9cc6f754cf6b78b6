"""Region labels from 68 landmarks on hand-made meshes, and the generic albedo."""
import numpy as np
import pytest

from lib.facemodel import PARSING_CLASSES
from lib.facemodel.albedo import SKIN_LINEAR_RGB, colour_directions, generic_albedo
from lib.facemodel.regions import (
    distance_to_polyline,
    point_in_polygon,
    regions_from_landmarks,
    skin_mask_from_regions,
)

CLASS = {name: i for i, name in enumerate(PARSING_CLASSES)}

# Hand-placed frontal landmark positions (mm, +x = subject's left) of an adult face.
JAW = [(-70, 20), (-69, 4), (-67, -12), (-64, -28), (-58, -44), (-48, -58), (-36, -69), (-20, -77), (0, -80)]
JAW = JAW + [(-x, y) for x, y in JAW[-2::-1]]
BROWS = [(-52, 43), (-44, 47), (-34, 49), (-24, 48), (-13, 45), (13, 45), (24, 48), (34, 49), (44, 47), (52, 43)]
NOSE = [(0, 33), (0, 20), (0, 8), (0, -4), (-12, -14), (-6, -16), (0, -17), (6, -16), (12, -14)]
EYES = [(-47, 29), (-38, 34), (-26, 34), (-17, 29), (-26, 24), (-38, 24)]
EYES = EYES + [(17, 29), (26, 34), (38, 34), (47, 29), (38, 24), (26, 24)]
OUTER_LIPS = [(-25, -36), (-16, -31), (-7, -28), (0, -29), (7, -28), (16, -31), (25, -36)]
OUTER_LIPS = OUTER_LIPS + [(16, -43), (7, -46), (0, -47), (-7, -46), (-16, -43)]
INNER_LIPS = [(-21, -36), (-9, -33), (0, -33), (9, -33), (21, -36), (9, -39), (0, -39), (-9, -39)]
LANDMARKS_XY = np.array(JAW + BROWS + NOSE + EYES + OUTER_LIPS + INNER_LIPS, dtype=float)

# Landmark i of a mirrored face is landmark IBUG_MIRROR[i] of the original.
IBUG_MIRROR = np.array(
    list(range(16, -1, -1))  # jaw
    + list(range(26, 16, -1))  # brows
    + [27, 28, 29, 30, 35, 34, 33, 32, 31]  # nose
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]  # eyes
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]  # outer lips
    + [64, 63, 62, 61, 60, 67, 66, 65]  # inner lips
)

# (point, expected class) on the frontal plane.
PROBES = [
    ((0, 75), "skin"),  # forehead
    ((40, -20), "skin"),  # cheek
    ((0, -62), "skin"),  # chin
    ((95, 0), "background"),  # beside the face
    ((0, -95), "background"),  # below the chin
    ((0, 115), "background"),  # above the hairline
    ((-32, 29), "right_eye"),  # subject's right eye is at -x
    ((32, 29), "left_eye"),
    ((-34, 48), "right_brow"),
    ((34, 48), "left_brow"),
    ((0, 10), "nose"),
    ((14, -11), "nose"),  # ala, beyond landmark 35
    ((0, -31), "upper_lip"),
    ((0, -36), "inner_mouth"),
    ((0, -43), "lower_lip"),
]


def grid_mesh(step_mm=2.0, z_mm=0.0, flip=False):
    """A flat grid in the z = z_mm plane, triangles facing +z (or -z when flipped)."""
    xs = np.arange(-100.0, 100.1, step_mm)
    ys = np.arange(-100.0, 120.1, step_mm)
    xx, yy = np.meshgrid(xs, ys)
    verts = np.stack([xx.ravel(), yy.ravel(), np.full(xx.size, z_mm)], 1)
    rows, cols = xx.shape
    r, c = np.meshgrid(np.arange(rows - 1), np.arange(cols - 1), indexing="ij")
    v00 = (r * cols + c).ravel()
    faces = np.concatenate(
        [np.stack([v00, v00 + 1, v00 + cols], 1), np.stack([v00 + 1, v00 + cols + 1, v00 + cols], 1)]
    )
    return verts, (faces[:, ::-1] if flip else faces)


def snap_landmarks(verts):
    return np.linalg.norm(verts[:, None, :2] - LANDMARKS_XY[None], axis=-1).argmin(0)


def nearest(verts, point):
    return np.linalg.norm(verts[:, :2] - np.asarray(point, float), axis=1).argmin()


def test_point_in_polygon_concave_and_either_winding():
    # An L shape: the notch at (1.5, 1.5) is outside.
    poly = np.array([[0, 0], [3, 0], [3, 1], [1, 1], [1, 3], [0, 3]], float)
    pts = np.array([[0.5, 0.5], [2.5, 0.5], [0.5, 2.5], [1.5, 1.5], [2.5, 2.5], [-1, 0.5], [4, 0.5]])
    expected = [True, True, True, False, False, False, False]
    assert point_in_polygon(pts, poly).tolist() == expected
    assert point_in_polygon(pts, poly[::-1]).tolist() == expected


def test_distance_to_polyline_hand_values():
    line = np.array([[0.0, 0.0], [10.0, 0.0], [10.0, 10.0]])
    pts = np.array([[5.0, 3.0], [-4.0, 3.0], [13.0, 5.0], [12.0, 12.0]])
    assert np.allclose(distance_to_polyline(pts, line), [3.0, 5.0, 3.0, np.hypot(2, 2)])


def test_regions_on_flat_grid_with_hand_placed_landmarks():
    verts, faces = grid_mesh()
    labels = regions_from_landmarks(verts, snap_landmarks(verts), faces)
    assert labels.dtype == np.uint8 and labels.shape == (len(verts),)
    for point, name in PROBES:
        assert PARSING_CLASSES[labels[nearest(verts, point)]] == name, point
    assert np.all(np.bincount(labels, minlength=len(PARSING_CLASSES)) > 0)


def test_regions_do_not_depend_on_units_or_mirror_wrongly():
    verts, faces = grid_mesh()
    landmarks = snap_landmarks(verts)
    in_mm = regions_from_landmarks(verts, landmarks, faces)
    # Scaling by a power of two is exact in floating point: identical labels.
    assert np.array_equal(in_mm, regions_from_landmarks(verts / 128.0, landmarks, faces))
    # Decimetres (BFM front): only vertices exactly on a polygon edge may flip.
    assert np.mean(in_mm == regions_from_landmarks(verts / 100.0, landmarks, faces)) > 0.99
    # The labels of the mirrored mesh are the mirrored labels with left and right swapped.
    mirrored = verts * [-1.0, 1.0, 1.0]
    swap = {"left_brow": "right_brow", "right_brow": "left_brow", "left_eye": "right_eye", "right_eye": "left_eye"}
    flipped = regions_from_landmarks(mirrored, landmarks[IBUG_MIRROR], faces[:, ::-1])
    names = np.array(PARSING_CLASSES)
    expected = np.array([CLASS[swap.get(n, n)] for n in names[in_mm]])
    # Points exactly on the midline's polygon edges may fall either way; allow a few.
    assert np.mean(flipped == expected) > 0.99


def test_regions_accept_either_triangle_winding():
    verts, faces = grid_mesh()
    verts[:, 2] = 80.0 - 0.004 * (verts[:, 0] ** 2 + verts[:, 1] ** 2)
    landmarks = snap_landmarks(verts)
    assert np.array_equal(
        regions_from_landmarks(verts, landmarks, faces), regions_from_landmarks(verts, landmarks, faces[:, ::-1])
    )


def test_back_facing_and_far_behind_vertices_are_background():
    front, faces = grid_mesh()
    back, back_faces = grid_mesh(z_mm=0.0, flip=True)  # same place, facing away
    behind, behind_faces = grid_mesh(z_mm=-150.0)  # facing the camera, behind the ears
    verts = np.concatenate([front, back, behind])
    all_faces = np.concatenate([faces, back_faces + len(front), behind_faces + 2 * len(front)])
    labels = regions_from_landmarks(verts, snap_landmarks(front), all_faces)
    n = len(front)
    assert np.all(labels[n:] == CLASS["background"])
    assert np.array_equal(labels[:n], regions_from_landmarks(front, snap_landmarks(front), faces))


def test_skin_mask_from_regions():
    labels = np.arange(len(PARSING_CLASSES), dtype=np.uint8)
    mask = skin_mask_from_regions(labels)
    assert mask.dtype == np.bool_
    assert [PARSING_CLASSES[i] for i in np.flatnonzero(mask)] == ["skin", "nose"]


def _roughness(values, edges):
    """RMS change along edges over RMS value: ~0.15 for the smooth functions on these
    grids, ~1.4 for per-vertex noise."""
    jump = values[edges[:, 0]] - values[edges[:, 1]]
    return np.sqrt((jump**2).sum(1).mean() / (values**2).sum(1).mean())


@pytest.fixture(scope="module")
def labelled_grid():
    verts, faces = grid_mesh(step_mm=3.0)
    # A gentle dome, so that the polynomial modes see three independent coordinates.
    verts[:, 2] = 80.0 - 0.004 * (verts[:, 0] ** 2 + verts[:, 1] ** 2)
    return verts, faces, regions_from_landmarks(verts, snap_landmarks(verts), faces)


def test_generic_albedo_mean_and_region_tints(labelled_grid):
    verts, faces, labels = labelled_grid
    mean, basis = generic_albedo(verts, faces, labels, 40)
    assert mean.shape == (len(verts), 3) and mean.dtype == np.float32
    assert basis.shape == (len(verts), 3, 40) and basis.dtype == np.float32
    assert mean.min() >= 0.0 and mean.max() <= 1.0

    def average(name):
        return mean[labels == CLASS[name]].mean(0)

    skin, lips, brow = average("skin"), average("upper_lip"), average("right_brow")
    assert lips[0] / lips[1] > skin[0] / skin[1]  # lips redder than skin
    assert brow.sum() < 0.5 * skin.sum()  # brows darker
    assert average("inner_mouth").sum() < lips.sum()
    eye = mean[labels == CLASS["left_eye"]].sum(1)
    assert eye.max() > skin.sum() and eye.min() < 0.5 * skin.sum()  # white sclera, dark iris


def test_generic_albedo_modes_orthogonal_smooth_and_deterministic(labelled_grid):
    verts, faces, labels = labelled_grid
    mean, basis = generic_albedo(verts, faces, labels, 40)
    again = generic_albedo(verts, faces, labels, 40)
    assert np.array_equal(mean, again[0]) and np.array_equal(basis, again[1])
    flat = basis.reshape(-1, 40).astype(np.float64)
    gram = flat.T @ flat
    assert np.allclose(gram - np.diag(np.diag(gram)), 0.0, atol=1e-4 * gram.max())
    # Mode 0 is a global lightness change: the same colour step, along the skin tone,
    # at every plain skin vertex, of a plausible size; proportionally less on brows.
    step = basis[:, :, 0]
    plain_skin = np.all(np.isclose(mean, SKIN_LINEAR_RGB), axis=1)
    assert plain_skin.sum() > 100
    assert np.allclose(step[plain_skin], step[plain_skin][0], atol=1e-5)
    assert np.allclose(step[plain_skin][0] / np.linalg.norm(step[plain_skin][0]), colour_directions()[0], atol=1e-5)
    assert 0.03 < np.linalg.norm(step[plain_skin][0]) < 0.2
    brow = labels == CLASS["left_brow"]
    assert np.linalg.norm(step[brow], axis=1).min() < 0.5 * np.linalg.norm(step[plain_skin][0])
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]]])
    for k in range(40):
        d = basis[:, :, k]
        assert _roughness(d, edges) < 0.4, k


def test_generic_albedo_on_a_flat_mesh_has_no_noise_modes():
    verts, faces = grid_mesh(step_mm=4.0)
    labels = np.full(len(verts), CLASS["skin"], dtype=np.uint8)
    _, basis = generic_albedo(verts, faces, labels, 30)
    edges = faces[:, [0, 1]]
    for k in range(30):
        d = basis[:, :, k]
        assert _roughness(d, edges) < 0.4, k
