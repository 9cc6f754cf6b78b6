"""Benchmark the involution implementations on RedNet-50's layer shapes at 224 px input.

Prints, per layer shape, forward and forward+backward time and peak memory of each
implementation side by side, with unfold / lean ratios (> 1: lean is better), and which
one `model.involution: auto` picks for that call.

    python bench/involution.py [--batch 1] [--repeats 3] [--threads N]

CPU peak memory is the rise of the process's peak resident set (VmHWM, reset through
/proc/self/clear_refs) over the resident set before the call. For that to follow
tensor lifetimes, glibc must return freed blocks to the OS at once, so memory is
measured in a child process started with a small fixed MALLOC_MMAP_THRESHOLD_ (Linux
only); times are taken here with the normal allocator (that setting slows every large
allocation down). CUDA rows use torch.cuda.max_memory_allocated.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEMORY_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536"}  # freed blocks go back to the OS at once

sys.path.insert(0, ROOT)

import torch  # noqa: E402

from bench.common import machine  # noqa: E402
from lib.ops import involution_lean, involution_output_size, involution_unfold, resolve_implementation  # noqa: E402

# (name, channels, kernel, stride, input side) of every distinct involution in RedNet-50
# fed by the 224 x 224 fused map: stem at 112 px, then layers 1-4 at 56 / 28 / 14 / 7 px.
SHAPES = [
    ("stem", 32, 3, 1, 112),
    ("layer1", 64, 7, 1, 56),
    ("layer2.0 s2", 128, 7, 2, 56),
    ("layer2", 128, 7, 1, 28),
    ("layer3.0 s2", 256, 7, 2, 28),
    ("layer3", 256, 7, 1, 14),
    ("layer4.0 s2", 512, 7, 2, 14),
    ("layer4", 512, 7, 1, 7),
]
IMPLEMENTATIONS = {"unfold": involution_unfold, "lean": involution_lean}
GROUP_CHANNELS = 16


def _rss(field: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(field + r":\s+(\d+) kB", f.read()).group(1)) * 1024


def peak_bytes(fn, device: torch.device) -> float:
    """Peak memory above the state before `fn()` (bytes); NaN where unmeasurable."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        base = _rss("VmRSS")
        fn()
        return _rss("VmHWM") - base
    except OSError:
        return float("nan")


def seconds(fn, device: torch.device, repeats: int) -> float:
    """Median wall time of `fn()` after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def memory_in_child(script: str, arguments: list[str]) -> dict:
    """Run `script --memory-child ARGUMENTS` under MEMORY_ENV; it prints one JSON dict."""
    result = subprocess.run(
        [sys.executable, script, "--memory-child", *arguments],
        env={**os.environ, **MEMORY_ENV},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def bench_shape(shape, batch: int, device: torch.device, repeats: int, measure: str) -> dict:
    """{implementation: {fwd_s, both_s}} (measure='time') or {fwd_mb, both_mb} ('memory')."""
    _, channels, k, stride, side = shape
    ho, wo = involution_output_size(side, side, stride)
    gen = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(batch, channels, side, side, device=device, generator=gen, requires_grad=True)
    weight = torch.randn(batch, channels // GROUP_CHANNELS * k * k, ho, wo, device=device, generator=gen,
                         requires_grad=True)
    upstream = torch.randn(batch, channels, ho, wo, device=device, generator=gen)
    results = {}
    for name, op in IMPLEMENTATIONS.items():
        def forward():
            with torch.no_grad():
                op(x, weight, k, stride)

        def both():
            torch.autograd.grad(op(x, weight, k, stride), (x, weight), upstream)

        if measure == "time":
            results[name] = {"fwd_s": seconds(forward, device, repeats), "both_s": seconds(both, device, repeats)}
        else:
            forward()  # warm-up: one-time allocations are not the op's peak
            both()
            results[name] = {"fwd_mb": peak_bytes(forward, device) / 2**20, "both_mb": peak_bytes(both, device) / 2**20}
    return results


def print_table(device: torch.device, batch: int, repeats: int) -> None:
    memory = {}
    if device.type == "cpu":
        memory = memory_in_child(os.path.abspath(__file__), ["--batch", str(batch)])
    print(f"\n{device.type.upper()}, batch {batch}, median of {repeats}; time ms, peak MiB; ratio = unfold / lean")
    head = f"{'layer':<12}{'C':>5}{'K':>3}{'s':>3}{'px':>5} | {'fwd unfold':>10}{'lean':>8}{'ratio':>7}"
    head += f" | {'f+b unfold':>10}{'lean':>8}{'ratio':>7} | {'MiB unfold':>10}{'lean':>8}{'ratio':>7}"
    head += f" | {'f+b MiB unf':>11}{'lean':>8}{'ratio':>7} | auto"
    print(head)
    print("-" * len(head))
    totals = {name: {"fwd_s": 0.0, "both_s": 0.0} for name in IMPLEMENTATIONS}
    for shape in SHAPES:
        r = bench_shape(shape, batch, device, repeats, "time")
        peaks = memory.get(shape[0]) or bench_shape(shape, batch, device, repeats, "memory")
        for name in IMPLEMENTATIONS:
            r[name].update(peaks[name])
        u, lean = r["unfold"], r["lean"]
        for name in IMPLEMENTATIONS:
            totals[name]["fwd_s"] += r[name]["fwd_s"]
            totals[name]["both_s"] += r[name]["both_s"]
        name, channels, k, stride, side = shape
        line = f"{name:<12}{channels:>5}{k:>3}{stride:>3}{side:>5} |"
        line += f" {u['fwd_s'] * 1e3:>10.2f}{lean['fwd_s'] * 1e3:>8.2f}{u['fwd_s'] / lean['fwd_s']:>7.1f} |"
        line += f" {u['both_s'] * 1e3:>10.2f}{lean['both_s'] * 1e3:>8.2f}{u['both_s'] / lean['both_s']:>7.1f} |"
        line += f" {u['fwd_mb']:>10.1f}{lean['fwd_mb']:>8.1f}{u['fwd_mb'] / max(lean['fwd_mb'], 1e-3):>7.1f} |"
        line += f" {u['both_mb']:>11.1f}{lean['both_mb']:>8.1f}{u['both_mb'] / max(lean['both_mb'], 1e-3):>7.1f}"
        pixels = involution_output_size(side, side, stride)[0] ** 2
        line += f" | {resolve_implementation('auto', batch * channels * k * k * pixels, pixels)}"
        print(line, flush=True)
    u, lean = totals["unfold"], totals["lean"]
    print(f"{'sum of rows':<28} | {u['fwd_s'] * 1e3:>10.2f}{lean['fwd_s'] * 1e3:>8.2f}{u['fwd_s'] / lean['fwd_s']:>7.1f} |"
          f" {u['both_s'] * 1e3:>10.2f}{lean['both_s'] * 1e3:>8.2f}{u['both_s'] / lean['both_s']:>7.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_child:
        cpu = torch.device("cpu")
        print(json.dumps({shape[0]: bench_shape(shape, args.batch, cpu, 1, "memory") for shape in SHAPES}))
        return
    print(f"machine: {machine()}")
    print_table(torch.device("cpu"), args.batch, args.repeats)
    if torch.cuda.is_available():
        print_table(torch.device("cuda"), args.batch, args.repeats)
    else:
        print("\nno CUDA")


if __name__ == "__main__":
    main()
