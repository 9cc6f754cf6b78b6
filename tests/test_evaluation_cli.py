"""test_pixel_face.py end to end on two tiny synthetic subjects: the mean-face
baseline without a checkpoint, a saved network with one, resuming, and one-line
errors for bad checkpoints."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import test_pixel_face
from lib.config.loader import config_to_dict, load_config
from lib.facemodel import load_face_model
from lib.facemodel.schema import NOW7_IN_PIXEL_FACE101
from lib.meshio import read_obj

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, "configs", "tiny.yaml")
SMALL = ["eval.scan_points=3000", "eval.heatmap_size=64", "eval.refine_points=1000", "train.device=cpu"]


def evaluate(out, *extra):
    return test_pixel_face.main(["--config", TINY, "--out", str(out), *SMALL, *extra])


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    checkpoint = pytest.importorskip("models.checkpoint")
    cfg = load_config(TINY, [])
    torch.manual_seed(0)
    model = checkpoint.build_model(cfg, load_face_model(cfg.face_model.source, cfg.face_model.path))
    path = str(tmp_path_factory.mktemp("ckpt") / "tiny.pt")
    checkpoint.save_checkpoint(path, {"model": model.state_dict(), "config": config_to_dict(cfg), "epoch": 0})
    return path


def test_baseline_only_writes_every_output_and_resumes(tmp_path, capsys):
    assert evaluate(tmp_path) == 0
    first = capsys.readouterr().out
    assert "mean-face baseline only" in first and "mean_face" in first
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["units"] == "mm" and "prediction" not in summary
    stats = summary["mean_face"]
    assert stats["samples"] == 2 and 0.1 < stats["mean"] < 20 and stats["RMSE"] == stats["mean_of_sample_means"]
    assert stats["rms"] >= stats["mean"]
    with open(tmp_path / "errors.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["name"] for r in rows] == ["synthetic-val-00000", "synthetic-val-00001"]
    # pooled mean = point-weighted mean of the per-sample means
    weights = np.array([float(r["scan_points"]) for r in rows])
    means = np.array([float(r["mean_face_mean"]) for r in rows])
    assert stats["mean"] == pytest.approx((weights * means).sum() / weights.sum(), rel=1e-5)
    for row in rows:
        folder = tmp_path / "samples" / row["name"]
        assert (folder / "mean_face_heatmap.png").is_file() and not (folder / "prediction.obj").exists()
        assert len(np.load(folder / "mean_face_distances.npy")) == int(row["scan_points"])
    assert (tmp_path / "cumulative_error.png").is_file() and (tmp_path / "config.yaml").is_file()

    # Rerun: both samples reused, same summary; a lost summary is rebuilt.
    (tmp_path / "summary.json").unlink()
    assert evaluate(tmp_path) == 0
    assert "reused 2 finished sample(s)" in capsys.readouterr().out
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    # Other settings: recomputed, not reused.
    assert evaluate(tmp_path, "eval.crop_radius_factor=1.2") == 0
    assert "reused" not in capsys.readouterr().out
    assert json.loads((tmp_path / "summary.json").read_text())["mean_face"]["points"] < stats["points"]


def test_missing_checkpoint_is_a_user_error(tmp_path):
    with pytest.raises(test_pixel_face.UserError, match="file not found"):
        evaluate(tmp_path, "--checkpoint", str(tmp_path / "missing.pt"))


def test_checkpoint_prediction_and_obj(tmp_path, tiny_checkpoint, capsys):
    assert evaluate(tmp_path, "--checkpoint", tiny_checkpoint) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["checkpoint"] == tiny_checkpoint
    assert {"prediction", "mean_face"} <= set(summary)
    face_model = load_face_model("builtin")
    folder = tmp_path / "samples" / "synthetic-val-00000"
    verts, faces = read_obj(str(folder / "prediction.obj"))
    assert verts.shape == (face_model.num_vertices, 3) and np.array_equal(faces, face_model.faces)
    assert (folder / "prediction_heatmap.png").is_file()
    assert "prediction" in capsys.readouterr().out
    check_figures(tmp_path, ["prediction", "mean_face"])


def check_figures(out, methods):
    """figure.png: the three input views, the reconstruction, then each method's heat
    map, every panel scaled to 192 px high and 4 px apart; overview.png stacks them."""
    def png(path):
        return np.asarray(Image.open(path).convert("RGB"))

    def scaled(image):
        width = round(image.shape[1] * 192 / image.shape[0])
        return np.asarray(Image.fromarray(image).resize((width, 192), Image.BILINEAR))

    figures = []
    for name in ("synthetic-val-00000", "synthetic-val-00001"):
        folder = out / "samples" / name
        figure = png(folder / "figure.png")
        heatmaps = [scaled(png(folder / f"{m}_heatmap.png")) for m in methods]
        widths = [192] * 4 + [h.shape[1] for h in heatmaps]
        assert figure.shape == (192, sum(widths) + 4 * (len(widths) - 1), 3)
        right = figure.shape[1]
        for heatmap in reversed(heatmaps):  # the lower half, below the caption strip
            assert np.array_equal(figure[96:, right - heatmap.shape[1]:right], heatmap[96:])
            right -= heatmap.shape[1] + 4
        figures.append(figure)
    overview = png(out / "overview.png")
    assert np.array_equal(overview, np.concatenate([figures[0], np.full((4, figures[0].shape[1], 3), 255), figures[1]]))


def test_bad_checkpoint_is_one_line(tmp_path):
    path = tmp_path / "bad.pt"
    path.write_bytes(b"not a checkpoint")
    out = subprocess.run(
        [sys.executable, "test_pixel_face.py", "--out", str(tmp_path / "run"), "--checkpoint", str(path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and str(path) in out.stderr


SAMPLES = os.path.join(os.path.dirname(ROOT), "shared", "assets", "pixel_face_samples")


@pytest.mark.skipif(not os.path.isdir(SAMPLES), reason=f"Pixel-Face samples not found at {SAMPLES}")
def test_pixel_face_validation_mesh_and_landmarks(tmp_path, capsys):
    """A fake Pixel-Face tree whose validation mesh is the built-in mean face under a
    similarity transform: the mean-face baseline must measure ~0 mm against it, which
    only happens if the mesh, the 101-point file and the 7 NoW positions line up."""
    pytest.importorskip("mediapipe")
    from data.pixel_face import DROPPED_106
    from lib.evaluation import Similarity
    from lib.meshio import write_obj

    face_model = load_face_model("builtin")
    angle = np.deg2rad(20.0)
    rot = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]])
    gt = Similarity(1.1, rot, np.array([10.0, -5.0, 300.0])).apply(face_model.mean_shape)
    root = tmp_path / "pf"
    points101 = gt[np.linspace(0, len(gt) - 1, 101).astype(int)]
    points101[list(NOW7_IN_PIXEL_FACE101)] = gt[face_model.extra_landmarks["now7"]]
    points106 = np.insert(points101, [d - i for i, d in enumerate(DROPPED_106)], 0.0, axis=0)
    for subject in ("s09", "s10"):  # s10 gets no validation mesh
        base = root / "val" / subject / "1_neutral" / "Images"
        for view in range(3):
            (base / str(view)).mkdir(parents=True)
            name = sorted(os.listdir(os.path.join(SAMPLES, str(view))))[0]
            photo = np.asarray(Image.open(os.path.join(SAMPLES, str(view), name)).convert("RGB"))
            Image.fromarray(photo.transpose(1, 0, 2)).save(base / str(view) / "t.jpg", quality=95)
        (base / "fusion").mkdir()
        np.savetxt(base / "fusion" / "nicp_106_pts.txt", points106 / 100)  # dm, as released
    (root / "val_obj" / "s09").mkdir(parents=True)
    write_obj(str(root / "val_obj" / "s09" / "1_neutral.obj"), gt / 100, face_model.faces)
    out = tmp_path / "run"
    assert evaluate(out, "data.dataset=pixel_face", f"data.root={root}", "preprocess.aligned=true") == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dataset"] == "pixel_face" and summary["mean_face"]["samples"] == 1
    assert len(summary["skipped"]) == 1 and summary["skipped"][0].startswith("s10/1_neutral")
    assert "skipped s10/1_neutral" in capsys.readouterr().out
    assert summary["mean_face"]["mean"] < 1e-3
    assert summary["mean_face"]["points"] > 1000  # the mesh's vertices inside the crop
    assert (out / "samples" / "s09_1_neutral" / "mean_face_heatmap.png").is_file()


def test_training_validation_and_test_pixel_face_agree(tmp_path):
    """The same checkpoint gives the same NoW-style error in train.py's validation and
    in test_pixel_face.py: one prediction (lib.evaluation.prediction), one scan and
    one measurement (lib.evaluation.runner). Before they differed (mean shape over
    views and vertex scans in training, the front view and sampled scans here)."""
    import train

    run = tmp_path / "train"
    assert train.main(["--config", TINY, "--out", str(run), "train.epochs=1", *SMALL]) == 0
    with open(run / "metrics.jsonl") as f:
        last = [json.loads(line) for line in f][-1]
    assert evaluate(tmp_path / "eval", "--checkpoint", str(run / "checkpoints" / "last.pt")) == 0
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert last["val/now_error_mm"] == pytest.approx(summary["prediction"]["mean"], rel=1e-4)
    assert last["val/now_mean_face_error_mm"] == pytest.approx(summary["mean_face"]["mean"], rel=1e-9)
    assert summary["prediction"]["mean"] != pytest.approx(summary["mean_face"]["mean"], rel=1e-6)
