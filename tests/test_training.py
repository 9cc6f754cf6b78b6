"""Training loop: schedule, overfitting, resume, NaN guard, safe checkpoints, DDP
(torchrun-style and train.processes)."""
from __future__ import annotations

import json
import math
import os
import pickle
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from lib.config import load_config
from lib.errors import UserError
from lib.training import Trainer, learning_rate, seed_everything
from lib.training.distributed import DistInfo, free_port, init_distributed, shutdown_distributed
from models.checkpoint import build_model, load_checkpoint, save_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, "configs", "tiny.yaml")


def _config(*overrides):
    return load_config(TINY, ["train.progress=false", "train.last_every_minutes=0", *overrides])


@pytest.fixture(scope="module")
def face_model():
    from lib.facemodel.builtin import build_builtin_face_model

    return build_builtin_face_model()


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("synthetic-cache"))


def _trainer(cfg, face_model, cache_dir, out, info=DistInfo()):
    from data.synthetic import build_synthetic

    train_set, val_set = build_synthetic(face_model, cfg, cache_dir, progress=False)
    seed_everything(cfg.train.seed)
    model = build_model(cfg, face_model)
    return Trainer(model, face_model, train_set, val_set, cfg, str(out), save_checkpoint, load_checkpoint, info)


def _assert_same_weights(a: dict, b: dict, atol: float) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key].float(), b[key].float(), atol=atol, rtol=0, msg=key)


def test_schedule_constant_then_cosine():
    assert learning_rate(0, 1e-4, 50, 280) == 1e-4
    assert learning_rate(49, 1e-4, 50, 280) == 1e-4
    assert learning_rate(50, 1e-4, 50, 280) == pytest.approx(1e-4)
    mid = 1e-6 + 0.5 * (1e-4 - 1e-6) * (1 + math.cos(math.pi * 0.5))
    assert learning_rate(165, 1e-4, 50, 280) == pytest.approx(mid)
    assert learning_rate(279, 1e-4, 50, 280) < 2e-6
    # Fractional epochs (the loop's per-step evaluation) follow the same curve.
    quarter = 1e-6 + 0.5 * (1e-4 - 1e-6) * (1 + math.cos(math.pi * 0.25))
    assert learning_rate(50.5, 1e-4, 50, 52) == pytest.approx(quarter)
    assert learning_rate(49.9, 1e-4, 50, 52) == 1e-4
    assert learning_rate(51.99, 1e-4, 50, 52) < 2e-6


@pytest.mark.slow
def test_overfits_four_subjects(face_model, cache_dir, tmp_path):
    cfg = _config("train.epochs=50", "train.batch_size=4", "train.val_every=100", "train.log_images_every=0",
                  "train.lr=3e-3", "train.step_epoch=25", "train.mask_epoch=0")
    history = _trainer(cfg, face_model, cache_dir, tmp_path).fit()
    losses = [h["train/total"] for h in history if "train/total" in h]
    assert losses[-1] < losses[0] / 10, losses


def test_resume_after_interruption_matches_uninterrupted(face_model, cache_dir, tmp_path):
    cfg = _config("train.epochs=3", "train.val_every=1", "train.log_images_every=0")
    whole = _trainer(cfg, face_model, cache_dir, tmp_path / "whole")
    whole.fit()

    resumable = _config("train.epochs=3", "train.val_every=1", "train.log_images_every=0",
                        "train.last_every_minutes=1e-9")  # last.pt after every step
    first = _trainer(resumable, face_model, cache_dir, tmp_path / "cut")
    calls = {"n": 0}
    step = first._train_step

    def dies_on_fourth(*args):
        calls["n"] += 1
        if calls["n"] == 4:
            raise RuntimeError("simulated kill")
        return step(*args)

    first._train_step = dies_on_fourth
    with pytest.raises(RuntimeError, match="simulated kill"):
        first.fit()
    state = load_checkpoint(str(tmp_path / "cut" / "checkpoints" / "last.pt"))
    assert (state["epoch"], state["step"]) == (1, 1)  # mid-epoch: 3 of 6 steps kept

    second = _trainer(resumable, face_model, cache_dir, tmp_path / "cut")
    history = second.fit()
    assert [h["epoch"] for h in history] == [0, 1, 2, 3]
    _assert_same_weights(whole.net.state_dict(), second.net.state_dict(), atol=1e-5)


def test_checkpoint_loading_refuses_pickles(tmp_path):
    path = str(tmp_path / "evil.pt")
    with open(path, "wb") as f:
        torch.save({"model": {}, "payload": _Payload()}, f)
    with pytest.raises(UserError, match="refused"):
        load_checkpoint(path)


class _Payload:
    """An arbitrary object: a weights_only loader must refuse to rebuild it."""

    def __reduce__(self):
        return (pickle.loads, (b"\x80\x04K\x01.",))


def test_nan_guard_skips_steps_and_stops(face_model, cache_dir, tmp_path, monkeypatch):
    import lib.training.loop as loop

    cfg = _config("train.epochs=5", "train.nan_patience=3")
    trainer = _trainer(cfg, face_model, cache_dir, tmp_path)
    before = {k: v.clone() for k, v in trainer.net.state_dict().items()}
    real = loop.multiview_losses

    def poisoned(*args, **kwargs):
        result = real(*args, **kwargs)
        result.total = result.total * float("nan")
        return result

    monkeypatch.setattr(loop, "multiview_losses", poisoned)
    with pytest.raises(UserError, match="nan_patience=3"):
        trainer.fit()
    after = trainer.net.state_dict()
    for key, value in before.items():
        if value.is_floating_point() and "running" not in key:
            torch.testing.assert_close(after[key], value, msg=key)
    log = (tmp_path / "train.log").read_text()
    assert log.count("non-finite") == 3


# -------------------------------------------------------------------------- DDP
DDP_OVERRIDES = ("train.epochs=1", "train.batch_size=4", "train.sync_bn=true", "train.lr=1e-3",
                 "train.log_images_every=0", "train.mask_epoch=0")


def _ddp_worker(rank, world, port, face_model, cache_dir, out_root, result_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    info, device = init_distributed("cpu")
    try:
        trainer = _trainer(_config(*DDP_OVERRIDES), face_model, cache_dir, os.path.join(out_root, f"rank{rank}"), info)
        trainer.fit()
        torch.save(trainer.net.state_dict(), os.path.join(result_dir, f"rank{rank}.pt"))
    finally:
        shutdown_distributed()


@pytest.mark.slow
def test_ddp_two_gloo_processes_match_single_process(face_model, cache_dir, tmp_path):
    single = _trainer(_config(*DDP_OVERRIDES), face_model, cache_dir, tmp_path / "single")
    single.fit()  # also generates the cache the workers read
    results = tmp_path / "results"
    results.mkdir()
    mp.spawn(_ddp_worker, args=(2, free_port(), face_model, cache_dir, str(tmp_path / "ddp"), str(results)),
             nprocs=2, join=True)
    rank0 = torch.load(results / "rank0.pt", weights_only=True)
    rank1 = torch.load(results / "rank1.pt", weights_only=True)
    _assert_same_weights(rank0, rank1, atol=0.0)  # replicas identical
    assert os.path.isfile(tmp_path / "ddp" / "rank0" / "checkpoints" / "last.pt")
    assert os.path.isfile(tmp_path / "ddp" / "rank0" / "metrics.jsonl")
    assert not os.path.exists(tmp_path / "ddp" / "rank1") or not os.listdir(tmp_path / "ddp" / "rank1")
    # Synchronised BatchNorm over 2 x 2 samples = BatchNorm over the global batch of 4:
    # after one step the running statistics (from the forward pass) agree tightly.
    reference = single.net.state_dict()
    for key in reference:
        if "running_mean" in key or "running_var" in key:
            torch.testing.assert_close(rank0[key], reference[key], atol=1e-4, rtol=1e-4, msg=key)
    ddp_metrics = [json.loads(line) for line in open(tmp_path / "ddp" / "rank0" / "metrics.jsonl")]
    for key in ("train/total", "train/photometric", "train/landmark", "val/vertex_error_mm"):
        assert ddp_metrics[-1][key] == pytest.approx(single.history[-1][key], rel=1e-3), key
    # Weights: Adam's first step is about lr * sign(gradient), so parameters whose
    # gradient is float noise (conv biases feeding BatchNorm) may move either way;
    # everything else matches.
    lr = 1e-3
    diffs = torch.cat([(rank0[k].float() - reference[k].float()).abs().reshape(-1)
                       for k in reference if reference[k].is_floating_point()])
    assert diffs.max() <= 2.5 * lr
    assert (diffs < 1e-5).float().mean() > 0.98


@pytest.mark.slow
def test_train_processes_starts_a_local_process_group(cache_dir, tmp_path, capfd):
    """train.processes=2: train.py spawns two gloo processes itself and the run
    completes as a DDP run (the banner says 2 processes, rank 0 alone prints the
    final line and writes metrics and checkpoints); a batch that cannot be split and
    processes=0 are refused before any process starts."""
    import train

    out = tmp_path / "spawned"
    args = ["--config", TINY, "--out", str(out), "train.progress=false", "train.device=cpu", "train.epochs=1",
            "train.processes=2", "train.log_images_every=0", f"data.cache_dir={cache_dir}"]
    assert train.main([*args, "train.batch_size=4"]) == 0
    printed = capfd.readouterr().out  # the processes inherit the captured file descriptors
    assert "training on cpu x 2:" in printed and printed.count("final validation") == 1  # rank 0 only
    metrics = [json.loads(line) for line in open(out / "metrics.jsonl")]
    assert [m["epoch"] for m in metrics] == [0, 1] and "val/vertex_error_mm" in metrics[-1]
    assert os.path.isfile(out / "checkpoints" / "last.pt")
    args[args.index(str(out))] = str(tmp_path / "fresh")  # in `out`, another batch size is refused as a resume
    with pytest.raises(UserError, match="leaves 1 sample per process"):
        train.main([*args, "train.batch_size=2"])
    with pytest.raises(UserError, match="train.processes must be at least 1"):
        train.main([*args, "train.processes=0"])


LAUNCHER = """
import os, sys, time
sys.path.insert(0, sys.argv[1])
from lib.training.distributed import spawn_local


def report_and_sleep(folder):
    open(os.path.join(folder, str(os.getpid())), "w").close()
    time.sleep(120)


if __name__ == "__main__":
    spawn_local(2, report_and_sleep, sys.argv[2])
"""


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie may never be reaped in a container)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc")
def test_local_processes_stop_when_their_launcher_is_killed(tmp_path):
    """kill -9 of train.py must not leave its training processes running (they would
    go on writing into the run folder a rerun resumes from), even when started in
    the background, where SIGINT (torch's parent-death signal) is ignored."""
    script, folder = tmp_path / "launch.py", tmp_path / "pids"
    script.write_text(LAUNCHER)
    folder.mkdir()
    launcher = subprocess.Popen([sys.executable, str(script), ROOT, str(folder)],
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))  # as `cmd &`
    deadline = time.monotonic() + 60
    while len(os.listdir(folder)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    pids = [int(name) for name in os.listdir(folder)]
    assert len(pids) == 2 and all(_running(pid) for pid in pids)
    launcher.kill()
    launcher.wait()
    deadline = time.monotonic() + 10
    while any(_running(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_running(pid) for pid in pids)


# ------------------------------------------------------------- photo datasets
@pytest.fixture(scope="module")
def renders(face_model):
    """Three synthetic subjects rendered at 224 px (faces mediapipe detects) with their
    ground-truth meshes: the photos of the fake Pixel-Face and folders trees."""
    from data.synthetic import generate_split
    from lib.config.schema import Config

    cfg = Config()
    cfg.data.image_size = 224
    return generate_split(face_model, cfg.data, cfg.loss, "val", 3,
                          progress=False, feature_dilation_px=cfg.preprocess.feature_dilation_px, render=cfg.render)


def _pixel_face_tree(root, renders, face_model) -> str:
    """train: subjects 0, 1; val: subject 2 with its mesh in val_obj/, and subject 0
    again without a mesh. Photos stored transposed, as Pixel-Face's raw photos are;
    the 101 points are mesh vertices with the 7 NoW positions on the model's now7."""
    from PIL import Image

    from data.pixel_face import DROPPED_106
    from lib.facemodel.schema import NOW7_IN_PIXEL_FACE101
    from lib.meshio import write_obj

    now7 = face_model.extra_landmarks["now7"]
    for split, subject, index in (("train", "s0", 0), ("train", "s1", 1), ("val", "s2", 2), ("val", "s3", 0)):
        base = os.path.join(root, split, subject, "1_neutral", "Images")
        for view in range(3):
            os.makedirs(os.path.join(base, str(view)))
            Image.fromarray(renders["rgb"][index, view].transpose(1, 0, 2)).save(os.path.join(base, str(view), "t.jpg"))
        gt = renders["gt_shape"][index].astype(np.float64)
        points101 = gt[np.linspace(0, len(gt) - 1, 101).astype(int)]
        points101[list(NOW7_IN_PIXEL_FACE101)] = gt[now7]
        points106 = np.insert(points101, [d - i for i, d in enumerate(DROPPED_106)], 0.0, axis=0)
        os.makedirs(os.path.join(base, "fusion"))
        np.savetxt(os.path.join(base, "fusion", "nicp_106_pts.txt"), points106)
    os.makedirs(os.path.join(root, "val_obj", "s2"))
    write_obj(os.path.join(root, "val_obj", "s2", "1_neutral.obj"), renders["gt_shape"][2], face_model.faces)
    return root


PHOTO_RUN = ("--config", TINY, "train.progress=false", "train.epochs=1", "train.device=cpu", "preprocess.aligned=true")


def test_train_on_pixel_face_validates_against_its_scans(renders, face_model, tmp_path, capsys):
    pytest.importorskip("mediapipe")
    import train
    from lib.evaluation import now_scan_to_mesh

    root = _pixel_face_tree(str(tmp_path / "pf"), renders, face_model)
    out = tmp_path / "run"
    assert train.main([*PHOTO_RUN, "--out", str(out), "data.dataset=pixel_face", f"data.root={root}",
                       "loss.landmark3d=0"]) == 0
    history = [json.loads(line) for line in open(out / "metrics.jsonl")]
    assert [h["epoch"] for h in history] == [0, 1]
    last = history[-1]
    assert "val/vertex_error_mm" not in last and math.isfinite(last["val/total"])
    # The mean face's NoW error is that of s2's mesh alone (s3 has none): recompute it.
    gt = renders["gt_shape"][2].astype(np.float64)
    now7 = face_model.extra_landmarks["now7"]
    mean = face_model.mean_shape.astype(np.float64)
    cfg = load_config(TINY)
    expected = now_scan_to_mesh(gt, gt[now7], mean, face_model.faces, mean[now7], cfg.eval).distances.mean()
    assert last["val/now_mean_face_error_mm"] == pytest.approx(expected, rel=1e-4)
    assert last["val/now_error_mm"] > 0 and os.path.isfile(out / "checkpoints" / "last.pt")
    assert "NoW-style error" in capsys.readouterr().out
    # The built-in model has no Pixel-Face 101 points: the 3D landmark loss is refused.
    with pytest.raises(UserError, match="pixel_face101"):
        train.main([*PHOTO_RUN, "--out", str(tmp_path / "r2"), "data.dataset=pixel_face", f"data.root={root}"])


def test_train_on_folders_validates_with_loss_terms(renders, tmp_path):
    pytest.importorskip("mediapipe")
    from PIL import Image

    import train

    for subject in range(2):
        folder = tmp_path / "views" / f"person{subject}"
        folder.mkdir(parents=True)
        for view in range(3):
            Image.fromarray(renders["rgb"][subject, view]).save(folder / f"person{subject}{view}.png")
    out = tmp_path / "run"
    assert train.main([*PHOTO_RUN, "--out", str(out), "data.dataset=folders", f"data.root={tmp_path / 'views'}"]) == 0
    last = [json.loads(line) for line in open(out / "metrics.jsonl")][-1]
    assert not any("error_mm" in k for k in last)
    assert math.isfinite(last["val/total"]) and math.isfinite(last["val/photometric"]) and last["train/total"] > 0
    with pytest.raises(UserError, match="data.root"):
        train.main([*PHOTO_RUN, "--out", str(tmp_path / "r2"), "data.dataset=folders", f"data.root={tmp_path / 'no'}"])
    with pytest.raises(UserError, match="data.dataset=nope"):
        train.main([*PHOTO_RUN, "--out", str(tmp_path / "r3"), "data.dataset=nope"])
