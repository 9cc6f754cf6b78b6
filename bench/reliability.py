"""Run the adversarial probes of doc/reliability.md against the entry points and print
what each gives: exit status, stderr line count, the last stderr line.

    .venv/bin/python bench/reliability.py [--work DIR]

Every probe runs an entry point as a user would (a subprocess, tiny config) in a
scratch folder; nothing is timed. The table is the one in doc/reliability.md.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.common import machine  # noqa: E402

TINY = ["--config", os.path.join(ROOT, "configs", "tiny.yaml"), "train.progress=false", "train.log_images_every=0",
        "train.epochs=1"]


def _bomb(path: str) -> None:
    lines = ['a0: &a0 ["lol"]'] + [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def _evil_checkpoint(path: str) -> None:
    import torch

    class RunsCode:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"model": {}, "payload": RunsCode()}, path)


def _other_network(out: str) -> None:
    """out/checkpoints/last.pt: this config, another network's weights."""
    from lib.config import load_config
    from lib.facemodel import load_face_model
    from models.checkpoint import build_model, save_checkpoint

    cfg = load_config(TINY[1], TINY[2:])
    other = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, rednet_layers=[2, 1, 1, 1]))
    state = {"model": build_model(other, load_face_model("builtin")).state_dict(),
             "config": dataclasses.asdict(cfg), "epoch": 0, "optimizer": {}}
    save_checkpoint(os.path.join(out, "checkpoints", "last.pt"), state)


def probes(work: str) -> list[tuple[str, list[str], callable]]:
    """(name, command line, preparation) per probe."""
    j = lambda *p: os.path.join(work, *p)  # noqa: E731
    py = sys.executable
    return [
        ("train.lr=-1", [py, "train.py", *TINY, "--out", j("a"), "train.lr=-1"], None),
        ("train.lr=.nan", [py, "train.py", *TINY, "--out", j("a"), "train.lr=.nan"], None),
        ("train.save_every=0", [py, "train.py", *TINY, "--out", j("a"), "train.save_every=0"], None),
        ("data.image_size=0", [py, "train.py", *TINY, "--out", j("a"), "data.image_size=0"], None),
        ("train.epochs=0", [py, "train.py", *TINY, "--out", j("a"), "train.epochs=0"], None),
        ("empty --config", [py, "train.py", "--config", j("empty.yaml"), "--out", j("a")],
         lambda: open(j("empty.yaml"), "w").close()),
        ("YAML alias bomb (9 levels)", [py, "train.py", "--config", j("bomb.yaml"), "--out", j("a")],
         lambda: _bomb(j("bomb.yaml"))),
        ("recursive YAML alias", [py, "train.py", "--config", j("loop.yaml"), "--out", j("a")],
         lambda: open(j("loop.yaml"), "w").write("train: &t\n  again: *t\n")),
        ("non-UTF-8 --config", [py, "train.py", "--config", j("latin1.yaml"), "--out", j("a")],
         lambda: open(j("latin1.yaml"), "wb").write("face_model:\n  path: caf\xe9\n".encode("latin-1"))),
        ("--out is a file", [py, "train.py", *TINY, "--out", j("empty.yaml")], None),
        ("train.lr=1e6 (NaN guard)", [py, "train.py", *TINY, "--out", j("huge"), "train.lr=1e6", "train.epochs=3"], None),
        ("fit.lr=.nan (test_sample)", [py, "test_sample.py", "--out", j("s"), "fit.lr=.nan"], None),
        ("checkpoint that runs code", [py, "test_sample.py", "--out", j("s"), "--checkpoint", j("evil.pt")],
         lambda: _evil_checkpoint(j("evil.pt"))),
        ("a finished run", [py, "train.py", *TINY, "--out", j("run")], None),
        ("resume with model.width changed", [py, "train.py", *TINY, "--out", j("run"), "model.width=0.125"], None),
        ("resume with train.epochs=2 (safe)", [py, "train.py", *TINY, "--out", j("run"), "train.epochs=2"], None),
        ("test_pixel_face.py --out on it", [py, "test_pixel_face.py", *TINY[:2], "--out", j("run")], None),
        ("resume from another network", [py, "train.py", *TINY, "--out", j("other")], lambda: _other_network(j("other"))),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="", help="scratch folder (default: a new temporary one)")
    work = parser.parse_args().work or tempfile.mkdtemp(prefix="reliability-")
    os.makedirs(work, exist_ok=True)
    print(machine())
    print(f"scratch folder: {work}\n")
    print("| probe | exit | stderr lines | last stderr line |")
    print("| --- | --- | --- | --- |")
    for name, command, prepare in probes(work):
        if prepare is not None:
            prepare()
        started = time.monotonic()
        out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
        lines = [line for line in out.stderr.splitlines() if line.strip()]
        last = (lines[-1] if lines else "").replace(work, "W").replace("|", "\\|")
        print(f"| {name} | {out.returncode} | {len(lines)} | {last[:240]} |  <!-- {time.monotonic() - started:.0f} s -->",
              flush=True)


if __name__ == "__main__":
    main()
