"""bench/multiview.py: statistics by hand, the ICT fallback, and the whole command at a
miniature budget (rows written, document from finished rows, resumable)."""
from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import multiview  # noqa: E402
from lib.config import load_config  # noqa: E402
from lib.errors import UserError  # noqa: E402
from lib.evaluation.runner import measure, synthetic_scan  # noqa: E402
from lib.facemodel.builtin import build_builtin_face_model  # noqa: E402


def test_bootstrap_interval_and_paired_reduction_by_hand():
    constant = np.full(10, 2.0)
    assert multiview.bootstrap_mean_ci(constant) == (2.0, 2.0)
    values = np.arange(20, dtype=float)
    low, high = multiview.bootstrap_mean_ci(values)
    # standard error of the mean = std / sqrt(n) = 5.77 / 4.47 = 1.29: the interval is about +-2.5
    assert low < 9.5 < high and 1.5 < 9.5 - low < 3.5 and 1.5 < high - 9.5 < 3.5
    worse = np.linspace(1.0, 3.0, 12)
    assert multiview.paired_reduction(0.5 * worse, worse) == pytest.approx((0.5, 0.5, 0.5))
    # a constant 0.2 mm gain on a mean of 2 mm: 10 %, and every resample agrees on the sign
    red, lo, hi = multiview.paired_reduction(worse - 0.2, worse)
    assert red == pytest.approx(0.1) and 0 < lo <= red <= hi


def test_verdicts():
    assert multiview.verdict(0.6, 0.55, 0.65, 0.5) == "holds"
    assert multiview.verdict(0.3, 0.2, 0.4, 0.5).startswith("holds in direction, misses")
    assert multiview.verdict(-0.1, -0.2, -0.05, None).startswith("does not hold")
    assert multiview.verdict(0.01, -0.02, 0.04, None).startswith("not resolved")


def test_missing_ict_falls_back_to_builtin_with_a_warning(tmp_path, capsys):
    cfg = load_config(None, ["face_model.source=ict", f"face_model.path={tmp_path / 'absent'}"])
    with pytest.warns(UserWarning, match="falling back to the built-in"):
        model, resolved, note = multiview.resolve_face_model(cfg, str(tmp_path / "cache"))
    assert resolved.face_model.source == "builtin" and "FALLBACK" in note
    assert model.num_vertices == build_builtin_face_model().num_vertices
    assert "warning:" in capsys.readouterr().err


def test_whole_command_at_a_miniature_budget(tmp_path):
    out, doc = tmp_path / "bench", tmp_path / "BENCHMARK.md"
    args = ["--budget", "tiny", "--out", str(out), "--doc", str(doc), "--rows", "mean_face,dfmvr_3v,dfmvr_test1v"]
    assert multiview.main(args) == 0
    text = doc.read_text()
    assert (tmp_path / "figures" / "benchmark_multiview.png").is_file()
    assert "figures/benchmark_multiview.png" in text
    # rows not asked for are reported as unfinished, claims needing them as not measured
    assert text.count("did not finish (not started)") == 7
    assert "not measured: train_1v did not finish" in text
    assert "network trained, row not evaluated" in text  # dfmvr_refine: its network exists

    rows = {name: json.loads((out / "rows" / f"{name}.json").read_text()) for name in
            ("mean_face", "dfmvr_3v", "dfmvr_test1v")}
    cfg = load_config(str(out / "config.yaml"))
    assert all(len(r["errors"]) == cfg.data.synthetic.num_val for r in rows.values())
    assert rows["dfmvr_3v"]["train_seconds"] > 0 and rows["mean_face"]["train_seconds"] is None
    # the mean face row, recomputed here from the held-out subjects' ground truth
    from data.synthetic import generate_split

    face_model = build_builtin_face_model()
    gts = generate_split(face_model, cfg.data, cfg.loss, "val", cfg.data.synthetic.num_val, progress=False,
                         feature_dilation_px=cfg.preprocess.feature_dilation_px, render=cfg.render)["gt_shape"]
    mean = face_model.mean_shape.astype(np.float64)
    expected = [measure(mean, face_model, synthetic_scan(g, face_model, cfg.eval, i), cfg.eval).distances.mean()
                for i, g in enumerate(gts.astype(np.float64))]
    np.testing.assert_allclose(rows["mean_face"]["errors"], expected, rtol=1e-9)
    assert f"**{np.mean(expected):.3f}**" in text
    # the two rows of one network count its training once
    evaluation = sum(r["eval_seconds"] for r in rows.values())
    assert (f"finished rows: {rows['dfmvr_3v']['train_seconds'] / 60:.1f} min of training (each network once) + "
            f"{evaluation / 60:.1f} min") in text
    assert "## GPU budget" in text  # where the gpu budget's page and results go

    # resumable: a rerun trains and evaluates nothing again, and rewrites the document
    stamps = {p: p.stat().st_mtime_ns for p in (out / "rows").iterdir()}
    doc.unlink()
    assert multiview.main(args + ["--report-only"]) == 0
    assert doc.is_file() and {p: p.stat().st_mtime_ns for p in (out / "rows").iterdir()} == stamps
    with pytest.raises(UserError, match="another config"):
        multiview.main(args + ["train.lr=0.5"])

    # another metric setting: rows are re-measured from their stored predictions, not rerun
    assert multiview.main(args + ["eval.crop_radius_factor=1.2"]) == 0
    remeasured = json.loads((out / "rows" / "dfmvr_3v.json").read_text())
    assert remeasured["train_seconds"] == rows["dfmvr_3v"]["train_seconds"] and "measure_seconds" in remeasured
    assert remeasured["errors"] != rows["dfmvr_3v"]["errors"]
    # --report-only describes the run under the settings it last ran with
    assert multiview.main(args + ["--report-only"]) == 0
    assert "crop factor 1.2" in doc.read_text() and "stale" not in doc.read_text()


def test_fit_rows_do_not_march_the_jaw_of_synthetic_subjects(monkeypatch):
    """Synthetic landmarks are fixed model vertices: the fitting rows must fit them
    as they are (fit.contour_marching would move the jaw to the silhouette), whatever
    the config says, as lib.fitting.pipeline does for synthetic subjects."""
    import torch

    import lib.fitting.fit as fit_module
    from lib.morphable import FaceCoefficients

    face_model = build_builtin_face_model()
    cfg = load_config(None, ["fit.contour_marching=true"])
    seen = []

    def fake_fit_views(morphable, target, fit_cfg, *args, init=None, **kwargs):
        marching = fit_cfg.contour_marching and target.landmarks_on_silhouette  # as lib.fitting.fit decides
        seen.append((marching, target.rgb.shape[0], init is not None))
        return type("Fit", (), {"coeffs": FaceCoefficients.zeros(face_model, target.rgb.shape[0])})()

    monkeypatch.setattr(fit_module, "fit_views", fake_fit_views)
    sample = {"rgb": torch.zeros(3, 3, 8, 8), "landmarks": torch.zeros(3, 68, 2), "parsing": torch.zeros(3, 8, 8),
              "skin_weight": torch.ones(3, 8, 8)}
    ctx = multiview.Context(cfg, face_model, [sample], "unused")
    for name in ("fit_3v", "fit_1v"):
        [(coeffs, mask)] = multiview.predict_row(multiview.ROW_BY_NAME[name], ctx)
        assert coeffs.identity.shape[0] == 3 and mask.sum() == len(multiview.ROW_BY_NAME[name].views)
    assert seen == [(False, 3, False), (False, 1, False)]
