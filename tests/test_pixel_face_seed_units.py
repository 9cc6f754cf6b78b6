"""Done-when of the seed-fidelity work: a miniature Pixel-Face tree in decimetres (the
released files' unit) trains and evaluates, and the evaluation's figure in mm equals a
hand computation of the seed's procedure (lib/now_evaluation/compute_error.py and
scan2mesh_computations.py, written out below in the seed's units) on the same files;
a tree read in the wrong unit stops with one line."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from scipy.optimize import least_squares
from scipy.spatial.transform import Rotation

from lib.errors import UserError
from lib.evaluation.distance import MeshDistance
from lib.meshio import read_obj, write_obj

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, "configs", "tiny.yaml")
RUN = ("--config", TINY, "train.progress=false", "train.device=cpu", "preprocess.aligned=true")


@pytest.fixture(scope="module")
def face_model():
    from lib.facemodel import load_face_model

    return load_face_model("builtin")


@pytest.fixture(scope="module")
def tree(tmp_path_factory, face_model):
    """train: 2 subjects, val: 2 subjects with meshes; photos rendered at 224 px and
    stored sideways, landmark files and meshes in decimetres, as released."""
    from PIL import Image

    from data.pixel_face import DROPPED_106
    from data.synthetic import generate_split
    from lib.config.schema import Config
    from lib.facemodel.schema import NOW7_IN_PIXEL_FACE101

    cfg = Config()
    cfg.data.image_size = 224
    renders = generate_split(face_model, cfg.data, cfg.loss, "val", 4, progress=False,
                             feature_dilation_px=cfg.preprocess.feature_dilation_px, render=cfg.render)
    root = tmp_path_factory.mktemp("pixel_face")
    now7 = face_model.extra_landmarks["now7"]
    for split, subject, index in (("train", "s0", 0), ("train", "s1", 1), ("val", "s2", 2), ("val", "s3", 3)):
        base = root / split / subject / "1_neutral" / "Images"
        for view in range(3):
            (base / str(view)).mkdir(parents=True)
            Image.fromarray(renders["rgb"][index, view].transpose(1, 0, 2)).save(base / str(view) / "t.jpg")
        gt = renders["gt_shape"][index].astype(np.float64)
        points101 = gt[np.linspace(0, len(gt) - 1, 101).astype(int)]
        points101[list(NOW7_IN_PIXEL_FACE101)] = gt[now7]
        points106 = np.insert(points101, [d - i for i, d in enumerate(DROPPED_106)], 0.0, axis=0)
        (base / "fusion").mkdir()
        np.savetxt(base / "fusion" / "nicp_106_pts.txt", points106 / 100.0, fmt="%.9g")  # dm
        if split == "val":
            (root / "val_obj" / subject).mkdir(parents=True)
            write_obj(str(root / "val_obj" / subject / "1_neutral.obj"), gt / 100.0, face_model.faces)  # dm
    return str(root)


# ------------------------------------------------- the seed's procedure, written out
def seed_procrustes(x, y):
    """scan2mesh_computations.py:220-332 (MATLAB procrustes, scaling, reflection 'best'):
    (scale b, rotation T, translation c) with x ~ b * y @ T + c."""
    mu_x, mu_y = x.mean(0), y.mean(0)
    x0, y0 = x - mu_x, y - mu_y
    norm_x, norm_y = np.sqrt((x0**2).sum()), np.sqrt((y0**2).sum())
    u, s, vt = np.linalg.svd((x0 / norm_x).T @ (y0 / norm_y))
    t = vt.T @ u.T
    b = s.sum() * norm_x / norm_y
    return b, t, mu_x - b * mu_y @ t


def seed_sample_error(gt_verts, gt_faces, gt_al, pred_verts, pred_faces, pred_al) -> float:
    """Mean distance (the file's unit) of one sample, as compute_errors does it."""
    nose_bottom, bridge = gt_al[4], (gt_al[1] + gt_al[2]) / 2  # compute_mask, :55-71
    centre = nose_bottom + 0.3 * (bridge - nose_bottom)
    radius = 1.4 * (np.linalg.norm(gt_al[0] - gt_al[3]) + np.linalg.norm(bridge - nose_bottom)) / 2
    scan = gt_verts[np.linalg.norm(gt_verts - centre, axis=1) <= radius]  # crop_face_scan: scan vertices
    b, t, c = seed_procrustes(gt_al, pred_al)  # compute_rigid_alignment, :105-111
    aligned = b * pred_verts @ t + c
    anchor = scan.mean(0)

    def moved(params):  # s * R(r) x + t about the scan's centroid (the same family as s R x + t)
        return Rotation.from_rotvec(params[1:4]).apply(aligned - anchor) * params[0] + anchor + params[4:]

    def residuals(params):  # rigid_scan_2_mesh_alignment's objective, :22-53: scan -> mesh distances
        return MeshDistance(moved(params), pred_faces).distance(scan)

    fit = least_squares(residuals, np.array([1.0, 0, 0, 0, 0, 0, 0]), x_scale=np.array([1e-3] + [1e-3] * 3 + [1e-2] * 3),
                        xtol=1e-12, ftol=1e-12, gtol=1e-12)
    return float(MeshDistance(moved(fit.x), pred_faces).distance(scan).mean())


def seed_figure(root: str, run: str, face_model) -> float:
    """compute_rmse (compute_error.py:93-113) per validation sample, x100, averaged over
    the samples (test_pixel_face.py:60-78 with AverageMeter): read from the dm files and
    the exported predictions (mm, converted to the seed's dm)."""
    now7 = face_model.extra_landmarks["now7"]  # the fixed vertex indices of both meshes
    errors = []
    for subject in ("s2", "s3"):
        gt = read_obj(os.path.join(root, "val_obj", subject, "1_neutral.obj"))
        pred = read_obj(os.path.join(run, "samples", f"{subject}_1_neutral", "prediction.obj"))
        pred_dm = pred.vertices / 100.0
        errors.append(100 * seed_sample_error(gt.vertices, gt.faces, gt.vertices[now7], pred_dm, pred.faces, pred_dm[now7]))
    return float(np.mean(errors))


def test_decimetre_tree_trains_and_evaluates_as_the_seed(tree, face_model, tmp_path):
    pytest.importorskip("mediapipe")
    import test_pixel_face
    import train

    out = tmp_path / "train"
    assert train.main([*RUN, "--out", str(out), "train.epochs=1", "data.dataset=pixel_face", f"data.root={tree}",
                       "loss.landmark3d=0"]) == 0
    history = [json.loads(line) for line in open(out / "metrics.jsonl")]
    assert 0 < history[-1]["val/now_error_mm"] < 20  # mm: neither 100x too small nor too large
    run = tmp_path / "eval"
    checkpoint = out / "checkpoints" / "last.pt"
    assert test_pixel_face.main([*RUN, "--out", str(run), "--checkpoint", str(checkpoint), "data.dataset=pixel_face",
                                 f"data.root={tree}"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["pixel_face_unit"], summary["pixel_face_landmarks"]) == ("dm", "points101")
    ours = summary["prediction"]["RMSE"]  # the seed's figure, under its name
    assert ours == summary["prediction"]["mean_of_sample_means"]
    assert summary["prediction"]["samples"] == 2 and 0.1 < ours < 20
    assert ours == pytest.approx(seed_figure(tree, str(run), face_model), abs=0.01)


def test_tree_in_the_wrong_unit_stops_with_one_line(tree, tmp_path, capsys):
    import test_pixel_face
    import train

    for main in (train.main, test_pixel_face.main):
        with pytest.raises(UserError) as err:
            main([*RUN, "--out", str(tmp_path / main.__module__), "data.dataset=pixel_face", f"data.root={tree}",
                  "data.pixel_face_unit=mm", "loss.landmark3d=0"])
        assert "\n" not in str(err.value) and "set data.pixel_face_unit=dm" in str(err.value)
