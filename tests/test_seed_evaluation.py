"""Evaluation as the seed does it: ground-truth landmarks at fixed mesh vertices
(gt_al_index.npy), meshes in decimetres, and our refinement (10 Levenberg-Marquardt
steps on 10,000 scan points) against a full-point refinement run to convergence."""
import dataclasses

import numpy as np
import pytest

from lib.config.schema import EvalConfig
from lib.errors import UserError
from lib.evaluation import now_scan_to_mesh, sample_surface
from lib.evaluation.pixel_face import pixel_face_scan
from lib.facemodel import load_face_model
from lib.facemodel.bfm import BFM_FRONT_VERTICES, NOW7_BFM
from lib.facemodel.schema import NOW7_IN_PIXEL_FACE101
from lib.meshio import write_obj
from lib.units import UnitError

from test_facemodel_bfm import synthetic_face


def test_ground_truth_landmarks_from_mesh_vertices_or_the_101_points(tmp_path):
    vertices, faces, _ = synthetic_face(189, 189, num_vertices=BFM_FRONT_VERTICES)  # mm, BFM-front topology
    path = str(tmp_path / "s01.obj")
    write_obj(path, vertices / 100.0, faces)  # dm, as released
    points101 = np.random.default_rng(0).uniform(-50, 50, (101, 3))
    scan = pixel_face_scan("s01", path, points101, "dm", "mesh")
    np.testing.assert_allclose(scan.points, vertices, rtol=1e-7, atol=1e-6)  # mm
    np.testing.assert_allclose(scan.landmarks7, vertices[NOW7_BFM], rtol=1e-7, atol=1e-6)  # gt_al_index
    assert np.array_equal(scan.faces, faces)
    from_points = pixel_face_scan("s01", path, points101, "dm", "points101").landmarks7
    np.testing.assert_array_equal(from_points, points101[list(NOW7_IN_PIXEL_FACE101)])
    small = str(tmp_path / "small.obj")
    write_obj(small, vertices[:2000] / 100.0, faces[(faces < 2000).all(1)])
    with pytest.raises(UserError, match="eval.pixel_face_landmarks=mesh takes the 7 points at fixed vertices"):
        pixel_face_scan("s02", small, points101, "dm", "mesh")
    with pytest.raises(UnitError, match="set data.pixel_face_unit=dm"):
        pixel_face_scan("s01", path, points101, "mm", "points101")
    with pytest.raises(UserError, match="eval.pixel_face_landmarks must be one of"):
        pixel_face_scan("s01", path, points101, "dm", "scan")


def test_our_refinement_equals_a_full_point_refinement():
    """Scans of 40,000 points on synthetic faces; predictions are other faces. Our
    default refinement (10 LM steps on a 10,000-point subset) and one on every cropped
    point run to convergence give the same mean error within 0.01 mm."""
    model = load_face_model("builtin")
    now7 = model.extra_landmarks["now7"]
    ours = EvalConfig()
    assert (ours.refine_iterations, ours.refine_points) == (10, 10000)
    full = dataclasses.replace(ours, refine_iterations=100, refine_points=0)
    rng = np.random.default_rng(7)
    for subject in range(3):
        gt = model.mean_shape + model.id_basis @ rng.normal(0, 1.0, model.num_id)
        pred = model.mean_shape + model.id_basis @ rng.normal(0, 1.0, model.num_id)
        scan = sample_surface(gt, model.faces, 40000, seed=[7, subject])
        a = now_scan_to_mesh(scan, gt[now7], pred, model.faces, pred[now7], ours).distances.mean()
        b = now_scan_to_mesh(scan, gt[now7], pred, model.faces, pred[now7], full).distances.mean()
        assert 0.3 < b < 5 and a == pytest.approx(b, abs=0.01)
