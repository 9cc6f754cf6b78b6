"""Jaw contour that follows the silhouette: model-side marching (lib/fitting/contour.py)
and the detector-side slide onto the mesh outline (lib/preprocess/mediapipe_68.py)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lib.fitting.contour import JAW_POINTS, contour_lines, select_contour
from lib.geometry import euler_to_matrix, project, rigid_transform
from lib.preprocess.mediapipe_68 import (JAW_CHAINS, LEFT_BROW_UPPER, MESH_TO_68, RIGHT_BROW_UPPER, jaw_on_outline,
                                          mesh_to_68)

RADIUS = 80.0
STEP_DEG = 2.0


def cylinder_face():
    """Vertices on the front half of a vertical cylinder (radius 80 mm, every 2 degrees
    of azimuth phi from the +z axis, 17 rings 10 mm apart) and 68 landmark vertices whose
    jaw points sit at phi = -80 (subject's right, x < 0) or +80 degrees, the chin at 0.

    Returns vertices [V, 3], landmarks68 [68], phi_deg [V]."""
    phis = np.arange(-90.0, 90.0 + 1e-9, STEP_DEG)
    heights = np.arange(17) * -10.0
    phi, y = np.meshgrid(phis, heights)
    phi, y = phi.ravel(), y.ravel()
    vertices = np.stack([RADIUS * np.sin(np.radians(phi)), y, RADIUS * np.cos(np.radians(phi))], axis=1)
    ring = lambda j: np.flatnonzero(y == heights[j])  # noqa: E731
    landmarks = np.zeros(68, dtype=np.int64)
    for j in range(17):
        target = 0.0 if j == 8 else (-80.0 if j < 8 else 80.0)
        landmarks[j] = ring(j)[np.argmin(np.abs(phi[ring(j)] - target))]
    landmarks[17:] = landmarks[8]  # not used by the contour code
    return vertices, landmarks, phi


def yawed_u(vertices: np.ndarray, yaw_deg: float) -> torch.Tensor:
    rotation = euler_to_matrix(torch.tensor([[0.0, math.radians(yaw_deg), 0.0]], dtype=torch.float64))
    posed = torch.from_numpy(vertices)[None] @ rotation.transpose(1, 2)
    return project(posed, (224, 224))[..., 0]


def test_frontal_pose_keeps_the_fixed_landmarks():
    vertices, landmarks, _ = cylinder_face()
    lines = contour_lines(vertices, landmarks, band_mm=3.0, inner_fraction=0.3)
    chosen = select_contour(lines, torch.from_numpy(landmarks), yawed_u(vertices, 0.0))
    assert torch.equal(chosen[0], torch.from_numpy(landmarks))


@pytest.mark.parametrize("yaw", [30.0, -30.0])
def test_far_side_marches_to_the_silhouette_near_side_stays(yaw):
    """Turned by `yaw` about y, a cylinder's silhouette lies at azimuth phi = +-90 - yaw
    seen from infinitely far; from the camera at 1 m it is asin(80 / 1000) = 4.6 degrees
    nearer the middle. The far side's jaw points must move there, the near side's stay
    at +-80 degrees (their lines end there)."""
    vertices, landmarks, phi = cylinder_face()
    lines = contour_lines(vertices, landmarks, band_mm=3.0, inner_fraction=0.3)
    u = yawed_u(vertices, yaw)
    chosen = select_contour(lines, torch.from_numpy(landmarks), u)[0].numpy()
    # Positive yaw (R = Ry) takes x' = x cos + z sin, z' = z cos - x sin: the subject's
    # left (x > 0, jaw 9-16) turns away from the camera.
    far = [j for j in JAW_POINTS if (j > 8) == (yaw > 0)]
    near = [j for j in JAW_POINTS if j not in far]
    perspective = math.degrees(math.asin(RADIUS / 1000.0))
    silhouette = (90.0 - yaw - perspective) if yaw > 0 else (-90.0 - yaw + perspective)
    assert np.all(np.abs(phi[chosen[far]] - silhouette) <= STEP_DEG), phi[chosen[far]]
    assert np.array_equal(chosen[near], landmarks[near])
    assert chosen[8] == landmarks[8]
    # The chosen far-side points are the outermost of the whole ring in the image.
    for j in far:
        ring = np.flatnonzero((np.abs(vertices[:, 1] - vertices[landmarks[j], 1]) < 1e-9)
                              & (np.sign(vertices[:, 0]) == np.sign(vertices[landmarks[j], 0])))
        outer = ring[np.argmin(u[0, ring].numpy())] if j < 8 else ring[np.argmax(u[0, ring].numpy())]
        assert abs(phi[chosen[j]] - phi[outer]) <= STEP_DEG + 1e-9


def test_selection_keeps_gradients_of_positions():
    vertices, landmarks, _ = cylinder_face()
    lines = contour_lines(vertices, landmarks, band_mm=3.0, inner_fraction=0.3)
    u = yawed_u(vertices, 30.0).requires_grad_(True)
    chosen = select_contour(lines, torch.from_numpy(landmarks), u)
    assert chosen.dtype == torch.long and not chosen.requires_grad
    u[0, chosen[0]].sum().backward()
    assert u.grad.sum() == 68


def _walk(polyline: np.ndarray, count: int) -> np.ndarray:
    """Slow reference for equal-arc-length points: 20000 small steps per segment."""
    fine = np.concatenate([np.linspace(a, b, 20000, endpoint=False) for a, b in zip(polyline[:-1], polyline[1:])]
                          + [polyline[-1:]])
    length = np.concatenate([[0], np.cumsum(np.linalg.norm(np.diff(fine, axis=0), axis=1))])
    return fine[[np.argmin(np.abs(length - t)) for t in np.linspace(0, length[-1], count)]]


def disc_mesh():
    """A fake 468-point mesh: 300 points on a circle (radius 100 px about (200, 200)),
    the rest inside; the jaw chains' vertices inside the circle at known places (the
    right chain at x = 170, the left at x = 230, from y = 150 down), the chin on the
    circle's bottom. Eye corners on a horizontal line."""
    rng = np.random.default_rng(0)
    mesh = 200 + rng.uniform(-50, 50, (468, 2))
    chain_ids = set(JAW_CHAINS[0]) | set(JAW_CHAINS[1])
    free = [i for i in range(468) if i not in chain_ids]
    angles = np.radians(np.linspace(0, 360, 300, endpoint=False))
    mesh[free[:300]] = np.stack([200 + 100 * np.cos(angles), 200 + 100 * np.sin(angles)], axis=1)
    for chain, x in ((JAW_CHAINS[0], 170.0), (JAW_CHAINS[1], 230.0)):
        mesh[list(chain[:-1])] = np.stack([np.full(len(chain) - 1, x), np.linspace(150, 285, len(chain) - 1)], axis=1)
    mesh[152] = (200.0, 300.0)
    points = np.full((68, 2), 200.0)
    points[36], points[45] = (150.0, 170.0), (250.0, 170.0)
    return mesh, points


def test_jaw_on_outline_hand_case():
    """Chain vertices move horizontally onto the circle (up to the 1.2-degree polygon's
    chord error), then 0-8 and 16-8 are evenly spaced along each slid chain."""
    mesh, points = disc_mesh()
    result = jaw_on_outline(points, mesh)
    for chain, sign, targets in ((JAW_CHAINS[0], -1, range(0, 9)), (JAW_CHAINS[1], 1, range(16, 7, -1))):
        slid = mesh[list(chain)].copy()
        slid[:-1, 0] = 200 + sign * np.sqrt(100**2 - (slid[:-1, 1] - 200) ** 2)
        np.testing.assert_allclose(result[list(targets)], _walk(slid, 9), atol=0.6)
    np.testing.assert_array_equal(result[17:], points[17:])


def test_jaw_on_outline_follows_roll():
    """Rotating the image (mesh and points) by 90 degrees rotates the result with it:
    the slide follows the eye axis, not the image rows."""
    mesh, points = disc_mesh()
    rotate = lambda p: np.stack([400 - p[:, 1], p[:, 0]], axis=1)  # noqa: E731
    np.testing.assert_allclose(jaw_on_outline(rotate(points), rotate(mesh)), rotate(jaw_on_outline(points, mesh)),
                               atol=1e-6)


def test_mesh_to_68_respaces_brows_and_bridge():
    mesh, _ = disc_mesh()
    points = mesh_to_68(mesh, "mesh")
    for brow, chain in ((points[17:22], RIGHT_BROW_UPPER), (points[22:27], LEFT_BROW_UPPER)):
        np.testing.assert_allclose(brow, _walk(mesh[list(chain)], 5), atol=0.05)
    np.testing.assert_allclose(points[28], (2 * mesh[168] + mesh[4]) / 3, atol=1e-4)
    np.testing.assert_allclose(points[29], (mesh[168] + 2 * mesh[4]) / 3, atol=1e-4)
    np.testing.assert_allclose(points[:17], mesh[MESH_TO_68[:17]], atol=1e-4)
    np.testing.assert_allclose(points[36:], mesh[MESH_TO_68[36:]], atol=1e-4)


def test_march_matches_select_contour_on_a_model():
    """The fitting's fast path (landmark and candidate vertices only, `march`,
    `march_vertices`) gives the same points and vertices as selecting on the whole
    projected mesh (`select_contour`), for a turned built-in face."""
    from lib.facemodel.builtin import build_builtin_face_model
    from lib.fitting.contour import march_vertices
    from lib.fitting.fit import LandmarkProjector
    from lib.morphable import FaceCoefficients, MorphableModel

    model = build_builtin_face_model()
    morphable = MorphableModel(model)
    lines = contour_lines(model.mean_shape, model.landmarks68, band_mm=6.0, inner_fraction=0.35)
    coeffs = FaceCoefficients.zeros(model, 2)
    coeffs.rotation = torch.tensor([[0.0, math.radians(40.0), 0.0], [0.1, math.radians(-25.0), 0.05]])
    coeffs.identity = torch.randn(2, model.num_id, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        screen = morphable(coeffs, (224, 224)).screen
        chosen = select_contour(lines, morphable.landmarks68, screen[..., 0])
        projector = LandmarkProjector(morphable, lines)
        points = projector(coeffs, (224, 224))
        projected = project(rigid_transform(projector.shape(coeffs.identity, coeffs.expression),
                                            euler_to_matrix(coeffs.rotation), coeffs.translation), (224, 224))[..., :2]
    assert not torch.equal(chosen[0], morphable.landmarks68)  # the turned face really marches
    assert torch.equal(march_vertices(lines, morphable.landmarks68, projected), chosen)
    torch.testing.assert_close(points, torch.gather(screen[..., :2], 1, chosen[..., None].expand(-1, -1, 2)),
                               atol=1e-3, rtol=0)
