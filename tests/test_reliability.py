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


# ------------------------------------------------------------------ kill -9 test
KILLER = r'''
"""train.py, SIGKILLed at a chosen moment: in the middle of the N-th write of
metrics.jsonl (half of the text written), or right after the N-th last.pt is in place."""
import builtins, os, runpy, signal, sys

moment, target = sys.argv[1], int(sys.argv[2])
count = {"n": 0}
real_open, real_replace = builtins.open, os.replace


class DiesWhileWriting:
    def __init__(self, handle):
        self.handle = handle

    def write(self, text):
        self.handle.write(text[: len(text) // 2])
        self.handle.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self.handle.__exit__(*exc)

    def __getattr__(self, name):
        return getattr(self.handle, name)


def open_(file, mode="r", *args, **kwargs):
    handle = real_open(file, mode, *args, **kwargs)
    if moment == "metrics" and "metrics.jsonl" in os.path.basename(str(file)) and set(mode) & set("wax"):
        count["n"] += 1
        if count["n"] == target:
            return DiesWhileWriting(handle)
    return handle


def replace(src, dst, *args, **kwargs):
    real_replace(src, dst, *args, **kwargs)
    if moment == "checkpoint" and os.path.basename(str(dst)) == "last.pt":
        count["n"] += 1
        if count["n"] == target:
            os.kill(os.getpid(), signal.SIGKILL)


builtins.open, os.replace = open_, replace
sys.argv = ["train.py", *sys.argv[3:]]
sys.path.insert(0, os.getcwd())
runpy.run_path("train.py", run_name="__main__")
'''
KILL_RUN = [*TINY, "train.epochs=2", "train.last_every_minutes=1e-9", "train.num_threads=1"]  # last.pt every step


def _train(out, *extra, kill=None):
    import subprocess
    import sys

    script = os.path.join(os.path.dirname(out), "kill_train.py")
    with open(script, "w") as f:
        f.write(KILLER)
    moment, target = kill or ("none", 0)
    return subprocess.run([sys.executable, script, moment, str(target), *KILL_RUN, "--out", out, *extra],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)


def _history(out):
    with open(os.path.join(out, "metrics.jsonl")) as f:
        return [{k: v for k, v in json.loads(line).items() if k != "time_s"} for line in f]


def test_kill_during_metrics_write_loses_nothing(tmp_path):
    """kill -9 of train.py (tiny config, 2 steps per epoch, last.pt after every step)
    in the middle of writing metrics.jsonl, and right after a mid-epoch checkpoint: the
    rerun resumes, the history is whole (each epoch once, the resumed epoch's mean over
    all its steps) and the weights equal an uninterrupted run's bit for bit."""
    from models.checkpoint import load_checkpoint

    cache = f"data.cache_dir={tmp_path / 'cache'}"
    whole = str(tmp_path / "whole")
    assert _train(whole, cache).returncode == 0
    expected = load_checkpoint(os.path.join(whole, "checkpoints", "last.pt"))["model"]
    # metrics write 2 / 3: the end of epoch 1 / 2 (write 1 is the validation before
    # training); last.pt 4: epoch 2 after its first step (3 per epoch: 2 steps + the end).
    for kill in (("metrics", 2), ("metrics", 3), ("checkpoint", 4)):
        out = str(tmp_path / f"{kill[0]}{kill[1]}")
        killed = _train(out, cache, kill=kill)
        assert killed.returncode == -9, killed.stderr
        resumed = _train(out, cache)
        assert resumed.returncode == 0, resumed.stderr
        assert "resumed from" in resumed.stdout + resumed.stderr
        assert _history(out) == _history(whole), kill
        weights = load_checkpoint(os.path.join(out, "checkpoints", "last.pt"))["model"]
        assert weights.keys() == expected.keys()
        assert [k for k in expected if not torch.equal(weights[k], expected[k])] == [], kill
        leftovers = [name for _, _, files in os.walk(out) for name in files if ".tmp" in name]
        assert leftovers == [], kill


# ------------------------------------------------------------------- NaN guard
def test_similarity_fits_give_nan_for_non_finite_input_instead_of_raising():
    from lib.geometry import similarity_transform
    from lib.training.validation import aligned_vertex_error

    torch.manual_seed(0)
    good = torch.randn(2, 7, 3, dtype=torch.float64)
    bad = good.clone()
    bad[1, 3, 0] = math.inf
    scale, rotation, translation = similarity_transform(bad, good)
    assert not torch.isfinite(scale[1]) and not torch.isfinite(rotation[1]).any()
    # the finite row is untouched: the identity fit of a set onto itself
    torch.testing.assert_close(scale[0], torch.tensor(1.0, dtype=torch.float64))
    torch.testing.assert_close(rotation[0], torch.eye(3, dtype=torch.float64))
    errors = aligned_vertex_error(bad.float(), good.float())
    assert errors[0].item() < 1e-4 and math.isnan(errors[1].item())


def test_a_huge_learning_rate_stops_with_the_guards_message(tmp_path):
    import train

    with pytest.raises(UserError, match=r"^training stopped: "):
        train.main([*TINY, "--out", str(tmp_path / "run"), "train.lr=1e6", "train.epochs=3"])


def test_resume_from_a_checkpoint_of_another_network_is_one_line(tmp_path):
    import dataclasses

    import train
    from lib.config import load_config
    from lib.facemodel import load_face_model
    from models.checkpoint import build_model, save_checkpoint

    out = tmp_path / "run"
    args = [*TINY, "--out", str(out)]
    cfg = load_config(TINY[1], TINY[2:])
    other = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, rednet_layers=[2, 1, 1, 1]))
    weights = build_model(other, load_face_model("builtin")).state_dict()
    # this run's config, another network's weights (e.g. a last.pt copied from elsewhere)
    save_checkpoint(str(out / "checkpoints" / "last.pt"),
                    {"model": weights, "config": dataclasses.asdict(cfg), "epoch": 0, "optimizer": {}})
    with pytest.raises(UserError, match=r"checkpoints/last.pt: not a checkpoint of this network \(.*\); give another --out$"):
        train.main(args)


def test_a_killed_generation_leaves_no_cache_temporaries(tmp_path):
    """data.cache_dir may be shared by runs: its temporaries are judged by their pid."""
    import subprocess
    import sys

    from data.synthetic import cache_key, load_or_generate
    from lib.config import load_config
    from lib.facemodel import load_face_model

    cfg = load_config(TINY[1], ["data.synthetic.num_train=2", "data.synthetic.num_val=0"])
    face_model = load_face_model("builtin")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    root = tmp_path / f"synthetic-{cache_key(face_model, cfg.data, cfg.loss, cfg.preprocess.feature_dilation_px, cfg.render)}"
    (root / f"train-2.tmp{dead.pid}").mkdir(parents=True)
    (root / f"train-2.tmp{dead.pid}" / "rgb.npy").write_bytes(b"half")
    (root / f"val-9.tmp{os.getppid()}").mkdir()  # a live generator's
    load_or_generate(face_model, cfg, str(tmp_path), {"train": 2}, progress=False)
    assert sorted(os.listdir(root)) == ["train-2", f"val-9.tmp{os.getppid()}"]
