"""Evaluation core: exact distance against a slow reference, the NoW procedure on
known transforms and offsets, the crop, surface sampling."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lib.config.schema import EvalConfig
from lib.errors import UserError
from lib.evaluation import (
    MeshDistance,
    Similarity,
    crop_mask,
    crop_sphere,
    error_statistics,
    now_scan_to_mesh,
    sample_surface,
    scan_to_mesh_distance,
    similarity_procrustes,
    vertex_errors,
)
from lib.evaluation.distance import brute_force_distance, closest_point_on_triangles
from lib.evaluation.now import refine_similarity


# --------------------------------------------------------------------------- reference
def _segment_distance(p, s, e):
    d = e - s
    length_sq = float(d @ d)
    t = 0.0 if length_sq == 0.0 else min(max(float((p - s) @ d) / length_sq, 0.0), 1.0)
    return float(np.linalg.norm(p - (s + t * d)))


def reference_distance(points, verts, faces):
    """Point by point, triangle by triangle, in plain float64 Python.

    A different construction from the library's region cases: if the projection onto
    the triangle's plane lies inside (all barycentrics >= 0) the distance is the plane
    distance, otherwise the nearest of the three edge segments. Degenerate triangles
    (zero normal) are their segments.
    """
    out = []
    for p in np.asarray(points, np.float64):
        best = np.inf
        for tri in faces:
            a, b, c = (np.asarray(verts[i], np.float64) for i in tri)
            best = min(best, _segment_distance(p, a, b), _segment_distance(p, b, c), _segment_distance(p, c, a))
            n = np.cross(b - a, c - a)
            nn = float(n @ n)
            if nn > 1e-20 * max(float((b - a) @ (b - a)), float((c - a) @ (c - a))) ** 2:
                q = p - (float((p - a) @ n) / nn) * n
                l0 = float(np.cross(b - q, c - q) @ n)
                l1 = float(np.cross(c - q, a - q) @ n)
                l2 = float(np.cross(a - q, b - q) @ n)
                if l0 >= 0 and l1 >= 0 and l2 >= 0:
                    best = min(best, abs(float((p - a) @ n)) / np.sqrt(nn))
        out.append(best)
    return np.array(out)


def random_mesh_with_degenerates(rng):
    """Random triangles plus every kind of degenerate one, and query points that sit
    exactly on vertices, on edges and inside faces, as well as off the surface."""
    verts = rng.normal(0.0, 10.0, size=(40, 3))
    faces = rng.integers(0, 40, size=(70, 3))
    faces[:3] = [[0, 0, 1], [2, 2, 2], [3, 4, 3]]  # repeated indices: segments, a point
    verts[5] = verts[6]  # coincident corners with distinct indices
    faces[3] = [5, 6, 7]
    verts[8] = 0.3 * verts[9] + 0.7 * verts[10]  # collinear corners
    faces[4] = [8, 9, 10]
    points = [rng.normal(0.0, 12.0, size=(60, 3))]
    points.append(verts[faces[5:25, 0]])  # on vertices
    t = rng.random((20, 1))
    points.append(t * verts[faces[25:45, 0]] + (1 - t) * verts[faces[25:45, 1]])  # on edges
    w = rng.dirichlet([1, 1, 1], size=20)
    points.append(np.einsum("nk,nkd->nd", w, verts[faces[45:65]]))  # inside faces
    points.append(verts[[2, 5, 8, 9]] + 1e-3)  # just off degenerate pieces
    return verts, faces, np.concatenate(points)


# --------------------------------------------------------------------------- distance
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_distance_matches_reference(seed):
    rng = np.random.default_rng(seed)
    verts, faces, points = random_mesh_with_degenerates(rng)
    expect = reference_distance(points, verts, faces)
    scale = np.abs(verts).max()
    for got in (
        scan_to_mesh_distance(points, verts, faces),
        brute_force_distance(points, verts, faces),
    ):
        np.testing.assert_allclose(got, expect, rtol=1e-6, atol=1e-9 * scale)
    # on-surface points really are at zero distance
    assert scan_to_mesh_distance(points[60:120], verts, faces).max() < 1e-9 * scale


def test_query_returns_consistent_closest_points_and_faces():
    rng = np.random.default_rng(3)
    verts, faces, points = random_mesh_with_degenerates(rng)
    dist, face, closest = MeshDistance(verts, faces).query(points)
    np.testing.assert_allclose(np.linalg.norm(points - closest, axis=1), dist, rtol=1e-9, atol=1e-9)
    a, b, c = (verts[faces[face, k]] for k in range(3))
    on_face = closest_point_on_triangles(points, a, b, c)
    np.testing.assert_allclose(np.linalg.norm(points - on_face, axis=1), dist, rtol=1e-6, atol=1e-8)


def test_distance_accepts_torch_and_float32_and_checks_shapes():
    verts = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    faces = torch.tensor([[0, 1, 2]])
    pts = torch.tensor([[0.25, 0.25, 2.0], [2.0, 0.0, 0.0], [-1.0, -1.0, 0.0]])
    got = scan_to_mesh_distance(pts, verts, faces)
    assert isinstance(got, np.ndarray)
    np.testing.assert_allclose(got, [2.0, 1.0, np.sqrt(2.0)], rtol=1e-12)
    assert scan_to_mesh_distance(np.zeros((0, 3)), verts, faces).shape == (0,)
    with pytest.raises(UserError, match="points"):
        scan_to_mesh_distance(np.zeros((4, 2)), verts, faces)
    with pytest.raises(UserError, match="faces index"):
        scan_to_mesh_distance(pts, verts, torch.tensor([[0, 1, 3]]))


# --------------------------------------------------------------------------- meshes
def ellipsoid_cap(n=60):
    """Front of an ellipsoid (a face-sized smooth open surface, mm) + 7 NoW-like landmarks."""
    th = np.linspace(-1.2, 1.2, n)
    grid_t, grid_p = np.meshgrid(th, th, indexing="ij")
    verts = np.stack(
        [70 * np.sin(grid_t) * np.cos(grid_p), 90 * np.sin(grid_p), 60 * np.cos(grid_t) * np.cos(grid_p)], -1
    ).reshape(-1, 3)
    idx = np.arange(n * n).reshape(n, n)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel(), idx[:-1, 1:].ravel()
    faces = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])
    k = n / 120
    spots = [(40, 70), (52, 70), (68, 70), (80, 70), (60, 50), (48, 35), (72, 35)]
    landmarks = np.array([idx[int(i * k), int(j * k)] for i, j in spots])
    return verts, faces, landmarks


def icosphere(radius, subdivisions):
    """Closed sphere mesh (outward counter-clockwise faces), vertices exactly on it."""
    t = (1 + 5**0.5) / 2
    verts = [[-1, t, 0], [1, t, 0], [-1, -t, 0], [1, -t, 0], [0, -1, t], [0, 1, t], [0, -1, -t], [0, 1, -t],
             [t, 0, -1], [t, 0, 1], [-t, 0, -1], [-t, 0, 1]]
    faces = [[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9], [5, 11, 4], [11, 10, 2],
             [10, 7, 6], [7, 1, 8], [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8], [3, 8, 9], [4, 9, 5],
             [2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1]]
    verts = [np.array(v, float) / np.linalg.norm(v) for v in verts]
    for _ in range(subdivisions):
        cache, new_faces = {}, []

        def mid(i, j):
            key = (min(i, j), max(i, j))
            if key not in cache:
                m = verts[i] + verts[j]
                verts.append(m / np.linalg.norm(m))
                cache[key] = len(verts) - 1
            return cache[key]

        for a, b, c in faces:
            ab, bc, ca = mid(a, b), mid(b, c), mid(c, a)
            new_faces += [[a, ab, ca], [b, bc, ab], [c, ca, bc], [ab, bc, ca]]
        faces = new_faces
    return radius * np.array(verts), np.array(faces)


def random_rotation(rng):
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


# --------------------------------------------------------------------------- procedure
def test_procrustes_recovers_similarity():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(7, 3)) * 30
    truth = Similarity(1.7, random_rotation(rng), rng.normal(size=3) * 50)
    got = similarity_procrustes(src, truth.apply(src))
    assert got.scale == pytest.approx(1.7, rel=1e-12)
    np.testing.assert_allclose(got.rotation, truth.rotation, atol=1e-12)
    np.testing.assert_allclose(got.translation, truth.translation, atol=1e-9)
    np.testing.assert_allclose(got.inverse().apply(got.apply(src)), src, atol=1e-9)


def test_procedure_recovers_known_similarity_with_noisy_landmarks():
    rng = np.random.default_rng(1)
    verts, faces, lm = ellipsoid_cap()
    scan = sample_surface(verts, faces, 20000, seed=0)
    truth = Similarity(1.3, random_rotation(rng), np.array([5.0, -3.0, 100.0]))
    pred = truth.inverse().apply(verts)  # the same surface, scaled, rotated and shifted
    noisy_lm = pred[lm] + rng.normal(0.0, 1.5, size=(7, 3)) / truth.scale
    opts = EvalConfig(refine_points=5000)
    landmarks_only = now_scan_to_mesh(scan, verts[lm], pred, faces, noisy_lm, EvalConfig(refine_rigid=False))
    assert landmarks_only.distances.mean() > 0.2  # the landmark noise alone misaligns
    res = now_scan_to_mesh(scan, verts[lm], pred, faces, noisy_lm, opts)
    assert res.distances.max() < 1e-4
    assert res.transform.scale == pytest.approx(truth.scale, rel=1e-5)
    np.testing.assert_allclose(res.aligned_verts, verts, atol=1e-3)
    assert res.crop_mask.sum() == len(res.distances)


def test_offset_surface_gives_offset():
    # Sphere vertices pushed out by d: the nearest mesh point of each is its own
    # vertex (the polyhedron lies inside the sphere), so every error is exactly d.
    verts, faces = icosphere(60.0, 3)
    d = 1.5
    scan = verts * (60.0 + d) / 60.0
    lm_idx = np.argsort(verts[:, 2])[-7:]  # any 7 distinct points pin the alignment
    res = now_scan_to_mesh(scan, verts[lm_idx], verts, faces, verts[lm_idx], EvalConfig(refine_rigid=False))
    np.testing.assert_allclose(res.distances, d, rtol=1e-9)
    stats = error_statistics(res.distances)
    assert stats["mean"] == pytest.approx(d) and stats["rms"] == pytest.approx(d) and stats["std"] < 1e-9
    # A uniform offset of a sphere is a scaling: the scale refinement absorbs it.
    refined = now_scan_to_mesh(scan, verts[lm_idx], verts, faces, verts[lm_idx], EvalConfig())
    assert refined.transform.scale == pytest.approx((60 + d) / 60, rel=1e-2)
    assert refined.distances.mean() < 0.1 * d


def test_refinement_never_increases_the_error():
    rng = np.random.default_rng(4)
    verts, faces, lm = ellipsoid_cap()
    bumpy = verts + rng.normal(0.0, 0.8, size=verts.shape)  # not a similarity of the scan
    scan = sample_surface(verts, faces, 5000, seed=1)
    before = now_scan_to_mesh(scan, verts[lm], bumpy, faces, bumpy[lm], EvalConfig(refine_rigid=False))
    after = now_scan_to_mesh(scan, verts[lm], bumpy, faces, bumpy[lm], EvalConfig(refine_points=0))
    assert (after.distances**2).sum() <= (before.distances**2).sum()


def test_crop_sphere_by_hand():
    # outer eyes at x = +-40, inner eyes at +-15 (bridge at the origin), nose 50 below.
    lm = np.array([[-40, 0, 0], [-15, 0, 0], [15, 0, 0], [40, 0, 0], [0, -50, 0], [-20, -70, 0], [20, -70, 0.0]])
    centre, radius = crop_sphere(lm, 1.4)
    np.testing.assert_allclose(centre, [0, -35, 0])
    assert radius == pytest.approx(1.4 * (80 + 50) / 2)
    assert crop_sphere(lm, 1.2)[1] == pytest.approx(78.0)
    direction = np.array([0.6, 0.0, 0.8])
    pts = centre + np.outer([0.0, 90.0, 90.99, 91.0, 91.01, 200.0], direction)
    np.testing.assert_array_equal(crop_mask(pts, centre, radius), [True, True, True, True, False, False])
    with pytest.raises(UserError, match="7 landmarks"):
        crop_sphere(lm[:5], 1.4)


def test_crop_is_applied_to_the_scan():
    verts, faces, lm = ellipsoid_cap()
    scan = sample_surface(verts, faces, 4000, seed=2)
    res = now_scan_to_mesh(scan, verts[lm], verts, faces, verts[lm], EvalConfig(refine_rigid=False))
    centre, radius = crop_sphere(verts[lm], EvalConfig().crop_radius_factor)
    expect = np.linalg.norm(scan - centre, axis=1) <= radius
    np.testing.assert_array_equal(res.crop_mask, expect)
    assert 0 < expect.sum() < len(scan)
    tighter = EvalConfig(refine_rigid=False, crop_radius_factor=1.2)
    small = now_scan_to_mesh(scan, verts[lm], verts, faces, verts[lm], tighter)
    assert small.crop_mask.sum() < expect.sum()


def test_vertex_errors_nan_outside_and_exact_inside():
    verts, faces, lm = ellipsoid_cap()
    centre, radius = crop_sphere(verts[lm], 1.4)
    shifted = verts + np.array([0.0, 0.0, 2.0])
    errors = vertex_errors(shifted, verts, faces, centre, radius)
    inside = np.linalg.norm(shifted - centre, axis=1) <= radius
    assert np.isnan(errors[~inside]).all() and np.isfinite(errors[inside]).all()
    np.testing.assert_allclose(errors[inside], scan_to_mesh_distance(shifted[inside], verts, faces), rtol=1e-9)
    assert errors[inside].min() > 0.5 and errors[inside].max() <= 2.0 + 1e-9
    cloud = vertex_errors(verts, verts, None, centre, radius)  # point cloud: nearest point
    np.testing.assert_allclose(cloud[np.isfinite(cloud)], 0.0, atol=1e-12)


def test_sample_surface_on_mesh_and_area_uniform():
    verts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [3, 0, 0], [0, 3, 0.0]])
    faces = np.array([[0, 1, 2], [0, 3, 4]])  # areas 0.5 and 4.5 (the first inside the second)
    pts = sample_surface(verts, faces, 20000, seed=0)
    np.testing.assert_array_equal(pts, sample_surface(verts, faces, 20000, seed=0))
    assert np.abs(pts[:, 2]).max() == 0 and (pts[:, :2] >= -1e-12).all() and (pts[:, :2].sum(1) <= 3 + 1e-12).all()
    # density: points in the small triangle = its share of the total area (0.5 + 0.5 * 0.5/4.5... )
    in_small = (pts[:, :2].sum(1) <= 1).mean()
    expected = 0.5 / 5.0 + (4.5 / 5.0) * (1.0 / 9.0)
    assert in_small == pytest.approx(expected, abs=0.01)


def test_statistics_by_hand():
    stats = error_statistics([1.0, 2.0, 2.0, 3.0])
    assert stats["mean"] == 2.0 and stats["RMSE"] == 2.0 and stats["median"] == 2.0
    assert stats["rms"] == pytest.approx(np.sqrt(18 / 4)) and stats["std"] == pytest.approx(np.sqrt(0.5))
    with pytest.raises(UserError):
        error_statistics([])


def test_refinement_reaches_the_least_squares_optimum():
    # Reference: scipy's trust-region least squares (the role chumpy's dogleg plays in
    # NoW) over (rotation vector, log scale, translation) of the same objective.
    from scipy.optimize import least_squares
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(5)
    verts, faces, lm = ellipsoid_cap(40)
    bumpy = verts + rng.normal(0.0, 0.6, size=verts.shape)
    scan = sample_surface(verts, faces, 800, seed=3)
    start = similarity_procrustes(bumpy[lm] + rng.normal(0.0, 2.0, size=(7, 3)), verts[lm])
    mesh = MeshDistance(bumpy, faces)

    def residuals(x):
        t = Similarity(start.scale * np.exp(x[3]), Rotation.from_rotvec(x[:3]).as_matrix() @ start.rotation,
                       start.translation + x[4:])
        return t.scale * mesh.distance(t.inverse().apply(scan))

    reference = least_squares(residuals, np.zeros(7), method="trf", x_scale=[0.01] * 4 + [1.0] * 3)
    ours = refine_similarity(scan, mesh, start, iterations=30)
    ours_energy = float(((ours.scale * mesh.distance(ours.inverse().apply(scan))) ** 2).sum())
    start_energy = float((residuals(np.zeros(7)) ** 2).sum())
    assert ours_energy < 0.5 * start_energy
    assert ours_energy <= (reference.fun**2).sum() * (1 + 1e-3), (ours_energy, (reference.fun**2).sum())
    assert ours_energy >= (reference.fun**2).sum() * (1 - 1e-2)  # the same minimum, not just lower
