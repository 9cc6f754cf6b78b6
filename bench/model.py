"""Benchmark MVRNet: forward and forward+backward time per batch, per config.

    python bench/model.py [--repeats 3] [--threads N] [--full-batch 1]

CPU rows: configs/tiny.yaml and configs/synthetic.yaml (forward and forward+backward,
their own batch sizes and image sizes, and the peak memory of forward+backward above
the state before it, measured in a child process as in bench/involution.py), and the paper's network (configs/pixel_face.yaml:
width 1, 224 px; forward only, --full-batch samples), each with the unfold, lean and auto
involution side by side. CUDA rows (when a GPU is present): the paper's network at batch
12, forward+backward, float32 vs bf16 autocast, NCHW vs channels_last. Heads are sized
for BFM09 (80 identity, 64 expression, 80 albedo).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from types import SimpleNamespace

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402

from bench.common import machine  # noqa: E402
from bench.involution import memory_in_child, peak_bytes, seconds  # noqa: E402
from lib.config import load_config  # noqa: E402
from models.mvrnet import MVRNet  # noqa: E402

CPU_IMPLEMENTATIONS = ("unfold", "lean", "auto")
BFM09_SIZES = SimpleNamespace(num_id=80, num_exp=64, num_tex=80)  # all MVRNet reads of a FaceModel


def build(config_file: str, involution: str, device: torch.device) -> tuple[MVRNet, object]:
    cfg = load_config(os.path.join(ROOT, "configs", config_file))
    model_cfg = dataclasses.replace(cfg.model, involution=involution)
    torch.manual_seed(0)
    return MVRNet(model_cfg, BFM09_SIZES, cfg.data.image_size).to(device), cfg


def inputs(batch: int, model: MVRNet, device: torch.device):
    gen = torch.Generator().manual_seed(0)
    v, s = model.num_views, model.image_size
    rgb = torch.rand(batch, v, 3, s, s, generator=gen).to(device)
    parsing = torch.randint(0, 10, (batch, v, s, s), generator=gen).to(device)
    return rgb, parsing


def step_fn(model, rgb, parsing, backward: bool, amp: bool = False):
    device_type = rgb.device.type

    def run():
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=amp):
            if not backward:
                with torch.no_grad():
                    model(rgb, parsing)
                return
            coeffs = model(rgb, parsing)
            loss = sum(t.float().square().mean() for t in coeffs.as_dict().values())
        model.zero_grad(set_to_none=True)
        loss.backward()

    return run


TRAINABLE_ON_CPU = ("tiny.yaml", "synthetic.yaml")  # forward+backward rows


def training_memory(config_file: str, involution: str) -> float:
    """Peak MiB of one forward+backward step (run in the memory child)."""
    device = torch.device("cpu")
    model, cfg = build(config_file, involution, device)
    step = step_fn(model.train(), *inputs(cfg.train.batch_size, model, device), backward=True)
    step()  # warm-up: gradients and one-time buffers exist before the measured step
    return peak_bytes(step, device) / 2**20


def cpu_rows(args) -> None:
    device = torch.device("cpu")
    rows = [(name, None, True) for name in TRAINABLE_ON_CPU] + [("pixel_face.yaml", args.full_batch, False)]
    memory = memory_in_child(os.path.abspath(__file__), ["--threads", str(args.threads)])
    print(f"\nCPU, median of {args.repeats}; seconds per batch; x = unfold time / this time")
    head = f"{'config':<16}{'width':>6}{'px':>5}{'batch':>6}{'params M':>9} | forward: "
    head += "".join(f"{name:>8}{'x':>5}" for name in CPU_IMPLEMENTATIONS)
    head += " | fwd+bwd: " + "".join(f"{name:>8}{'x':>5}" for name in CPU_IMPLEMENTATIONS)
    head += " | f+b MiB: " + "".join(f"{name:>8}" for name in CPU_IMPLEMENTATIONS)
    print(head)
    print("-" * len(head))
    for config_file, batch_override, with_backward in rows:
        forward, both = {}, {}
        for involution in CPU_IMPLEMENTATIONS:
            model, cfg = build(config_file, involution, device)
            batch = batch_override or cfg.train.batch_size
            rgb, parsing = inputs(batch, model, device)
            model.train()
            forward[involution] = seconds(step_fn(model, rgb, parsing, backward=False), device, args.repeats)
            if with_backward:
                both[involution] = seconds(step_fn(model, rgb, parsing, backward=True), device, args.repeats)
        params = sum(p.numel() for p in model.parameters()) / 1e6
        line = f"{config_file:<16}{cfg.model.width:>6g}{cfg.data.image_size:>5}{batch:>6}{params:>9.2f} | forward: "
        line += "".join(f"{forward[n]:>8.3f}{forward['unfold'] / forward[n]:>5.1f}" for n in CPU_IMPLEMENTATIONS)
        line += " | fwd+bwd: "
        line += "".join(f"{both[n]:>8.3f}{both['unfold'] / both[n]:>5.1f}" for n in CPU_IMPLEMENTATIONS) if both else "-"
        if config_file in memory:
            line += " | f+b MiB: " + "".join(f"{memory[config_file][n]:>8.0f}" for n in CPU_IMPLEMENTATIONS)
        print(line, flush=True)


def cuda_rows(args) -> None:
    device = torch.device("cuda")
    print(f"\nCUDA, pixel_face.yaml (paper network), batch {args.cuda_batch}, median of {args.repeats}; "
          "seconds per forward+backward; peak GiB")
    print(f"{'involution':<12}{'dtype':<10}{'memory format':<15}{'f+b s':>8}{'peak GiB':>10}")
    for involution in ("unfold", "lean", "auto"):
        for amp in (False, True):
            for channels_last in (False, True):
                model, _ = build("pixel_face.yaml", involution, device)
                rgb, parsing = inputs(args.cuda_batch, model, device)
                if channels_last:
                    model = model.to(memory_format=torch.channels_last)
                torch.cuda.reset_peak_memory_stats()
                t = seconds(step_fn(model, rgb, parsing, backward=True, amp=amp), device, args.repeats)
                peak = torch.cuda.max_memory_allocated() / 2**30
                fmt = "channels_last" if channels_last else "NCHW"
                print(f"{involution:<12}{'bf16' if amp else 'float32':<10}{fmt:<15}{t:>8.3f}{peak:>10.2f}", flush=True)
                del model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--full-batch", type=int, default=1, help="CPU batch of the paper network (forward only)")
    parser.add_argument("--cuda-batch", type=int, default=12)
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_child:
        print(json.dumps({c: {n: training_memory(c, n) for n in CPU_IMPLEMENTATIONS} for c in TRAINABLE_ON_CPU}))
        return
    print(f"machine: {machine()}")
    cpu_rows(args)
    if torch.cuda.is_available():
        cuda_rows(args)
    else:
        print("\nno CUDA")


if __name__ == "__main__":
    main()
