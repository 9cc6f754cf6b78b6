"""Jaw contour that follows the silhouette: model-side marching (lib/fitting/contour.py)
and the detector-side slide onto the mesh outline (lib/preprocess/mediapipe_68.py)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lib.fitting.contour import JAW_POINTS, contour_lines, select_contour
from lib.geometry import euler_to_matrix, project
from lib.preprocess.mediapipe_68 import slide_jaw_to_outline

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


def test_slide_jaw_to_outline_hand_case():
    """A disc of mesh points (radius 100 px about (200, 200)): jaw points inside it move
    horizontally to the circle, on their own side; points on the circle and the chin stay.
    With the face rolled by 90 degrees, 'horizontal' follows the eye axis."""
    angles = np.radians(np.arange(0, 360, 1.0))
    ring = np.stack([200 + 100 * np.cos(angles), 200 + 100 * np.sin(angles)], axis=1)
    mesh = np.concatenate([ring, 200 + np.random.default_rng(0).uniform(-60, 60, (200, 2))])
    points = np.full((68, 2), 200.0)
    points[36], points[45] = (150.0, 170.0), (250.0, 170.0)  # eye axis along +x
    points[0:8] = np.stack([np.full(8, 170.0), np.linspace(150, 280, 8)], axis=1)  # inside, left half
    points[9:17] = np.stack([np.full(8, 230.0), np.linspace(280, 150, 8)], axis=1)  # inside, right half
    points[3] = ring[180]  # already on the outline (x = 100, y = 200)
    slid = slide_jaw_to_outline(points, mesh)
    for j in list(range(8)) + list(range(9, 17)):
        dy = slid[j, 1] - 200
        half_chord = math.sqrt(100**2 - dy**2)
        expected_x = 200 - half_chord if j < 8 else 200 + half_chord
        assert slid[j, 1] == pytest.approx(points[j, 1], abs=1e-6)
        assert slid[j, 0] == pytest.approx(expected_x, abs=0.3)  # the 1-degree polygon's chord error
    np.testing.assert_array_equal(slid[17:], points[17:])
    np.testing.assert_array_equal(slid[8], points[8])
    # Rolled by 90 degrees: the eye axis points down the image, so points move along y.
    rolled = points.copy()
    rolled[36], rolled[45] = (230.0, 150.0), (230.0, 250.0)
    slid = slide_jaw_to_outline(rolled, mesh)
    assert slid[5, 0] == pytest.approx(rolled[5, 0]) and slid[5, 1] < rolled[5, 1]
    assert slid[12, 0] == pytest.approx(rolled[12, 0]) and slid[12, 1] > rolled[12, 1]
