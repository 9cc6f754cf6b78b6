"""Probes of an adversarial run: results never lost or silently wrong (doc/reliability.md)."""
import json
import math
import os

import pytest
import torch

import test_sample
from lib.errors import UserError
from lib.fitting.pipeline import read_result

FAST = ["fit.demo_subjects=2", "fit.crop_size=64", "fit.steps_pose=2", "fit.steps_shape=2",
        "fit.steps_appearance=1", "fit.render_size=32", "fit.texture_size=32"]


def _poisoned(reconstruct):
    """reconstruct() whose second subject comes back NaN (a diverged fit)."""
    calls = []

    def wrapped(prepared, *args, **kwargs):
        result = reconstruct(prepared, *args, **kwargs)
        calls.append(prepared.name)
        if len(calls) == 2:
            result.coeffs = result.coeffs.map(lambda t: torch.full_like(t, math.nan))
        return result

    return wrapped


def test_a_non_finite_result_is_never_written_as_done(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    monkeypatch.setattr(test_sample, "reconstruct", _poisoned(test_sample.reconstruct))
    assert test_sample.main(["--out", str(out), *FAST]) == 1
    table = capsys.readouterr()
    assert "demo-001: skipped: demo-001: the reconstruction is not finite" in table.err
    assert read_result(str(out / "demo-000")) is not None
    assert not (out / "demo-001" / "result.json").exists()
    # A result.json holding NaN (written by an older version) is not "done before".
    row = json.loads((out / "demo-000" / "result.json").read_text())
    row["landmark_median_px"] = math.nan
    (out / "demo-000" / "result.json").write_text(json.dumps(row))
    assert read_result(str(out / "demo-000")) is None
    monkeypatch.undo()
    assert test_sample.main(["--out", str(out), *FAST]) == 0
    assert "done before" not in capsys.readouterr().out  # both redone
    assert math.isfinite(read_result(str(out / "demo-001"))["landmark_median_px"])


def test_a_full_disk_in_test_sample_names_the_subject_and_stops(tmp_path, monkeypatch):
    out = tmp_path / "out"
    write_subject = test_sample.write_subject

    def disk_full(folder, prepared, *args, **kwargs):
        if prepared.name == "demo-001":
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, "mesh.obj.tmp"), "w") as f:
                f.write("v 0 0")
            raise OSError(28, "No space left on device", os.path.join(folder, "mesh.obj.tmp"))
        return write_subject(folder, prepared, *args, **kwargs)

    monkeypatch.setattr(test_sample, "write_subject", disk_full)
    with pytest.raises(UserError, match=r"^demo-001: stopped while writing its results \(.*mesh.obj.tmp: No space left"):
        test_sample.main(["--out", str(out), *FAST, "fit.demo_subjects=3"])
    assert read_result(str(out / "demo-000")) is not None
    assert not (out / "demo-001" / "result.json").exists() and not (out / "demo-002").exists()
    monkeypatch.undo()
    assert test_sample.main(["--out", str(out), *FAST, "fit.demo_subjects=3"]) == 0
    assert not (out / "demo-001" / "mesh.obj.tmp").exists()  # the killed write's leftover, removed


# ------------------------------------------------------------------ training runs
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--config", os.path.join(ROOT, "configs", "tiny.yaml"), "train.progress=false", "train.log_images_every=0",
        "train.epochs=1"]


def test_resume_with_a_changed_network_is_refused_and_keeps_the_config(tmp_path):
    import train

    out = str(tmp_path / "run")
    assert train.main([*TINY, "--out", out]) == 0
    config = (tmp_path / "run" / "config.yaml").read_bytes()
    with pytest.raises(UserError) as info:
        train.main([*TINY, "--out", out, "model.width=0.125", "train.lr=0.002", "train.epochs=2"])
    message = str(info.value)
    assert "model.width 0.0625 -> 0.125" in message and "train.lr 0.001 -> 0.002" in message
    assert "train.epochs" not in message.split("resume may change only")[0]  # a safe change is not named
    assert (tmp_path / "run" / "config.yaml").read_bytes() == config
    # A documented safe change (more epochs) resumes.
    assert train.main([*TINY, "--out", out, "train.epochs=2"]) == 0
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [0, 1, 2]
