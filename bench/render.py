"""Benchmark of the renderer's backends on a BFM-front-size mesh at 224 x 224.

Prints, per implementation and batch size, forward and forward+backward wall time
per view (median of repeats), the fwd+bwd speed-up over the plain vectorized torch
baseline measured in the same run, the process CPU time per view (all threads; a
figure less distorted by other users' load), plus the machine. The workload is `render_mesh` of a face-like mesh
(lib.render.synthetic, 35,721 vertices / 70,688 triangles, ~58% of the image covered)
under yaw -35..35 deg, with back-face culling, one RGB attribute, loss = image sum,
gradients to vertices and colours.

    python bench/render.py [--threads 2] [--batches 3 36] [--repeats 3]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine  # noqa: E402
from lib.geometry import euler_to_matrix, rigid_transform  # noqa: E402
from lib.jit import numba_available  # noqa: E402
from lib.render import render_mesh  # noqa: E402
from lib.render.synthetic import face_like_mesh  # noqa: E402

IMAGE_SIZE = (224, 224)


def make_batch(batch: int, device: torch.device):
    vertices, faces = face_like_mesh()
    yaw = torch.linspace(-35.0, 35.0, batch) if batch > 1 else torch.zeros(1)
    angles = torch.stack([torch.zeros(batch), torch.deg2rad(yaw), torch.zeros(batch)], -1)
    posed = rigid_transform(vertices.expand(batch, -1, -1), euler_to_matrix(angles), torch.zeros(batch, 3))
    colors = torch.rand(batch, vertices.shape[0], 3, generator=torch.Generator().manual_seed(0))
    return posed.to(device), faces.to(device), colors.to(device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_one(backend: str, batch: int, device: torch.device, repeats: int) -> tuple[float, float, float]:
    """Median ms per view: forward wall, forward + backward wall, forward + backward
    CPU time of the process (all threads; less sensitive to other users' load)."""
    vertices, faces, colors = make_batch(batch, device)
    forward, total, cpu = [], [], []
    for run in range(repeats + 1):  # the first run warms up (JIT compile, allocator)
        verts = vertices.clone().requires_grad_()
        cols = colors.clone().requires_grad_()
        sync(device)
        t0, c0 = time.perf_counter(), time.process_time()
        result = render_mesh(verts, faces, {"rgb": cols}, IMAGE_SIZE, cull_backfaces=True, backend=backend)
        sync(device)
        t1 = time.perf_counter()
        result.images["rgb"].sum().backward()
        sync(device)
        t2, c2 = time.perf_counter(), time.process_time()
        if run:
            forward.append((t1 - t0) * 1000 / batch)
            total.append((t2 - t0) * 1000 / batch)
            cpu.append((c2 - c0) * 1000 / batch)
    return statistics.median(forward), statistics.median(total), statistics.median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", type=int, nargs="+", default=[3, 36])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    implementations = [("torch (baseline)", "torch", torch.device("cpu"))]
    if numba_available():
        implementations.append(("numba", "numba", torch.device("cpu")))
    if torch.cuda.is_available():
        implementations.append(("torch cuda", "torch", torch.device("cuda")))

    details = []
    if numba_available():
        import numba

        details.append(f"numba {numba.__version__}")
    print(f"machine: {machine(*details)}")
    print(f"mesh: face_like_mesh {make_batch(1, torch.device('cpu'))[0].shape[1]} vertices, image {IMAGE_SIZE}")
    header = (
        f"{'implementation':<18} {'batch':>5} {'fwd ms/view':>12} {'fwd+bwd ms/view':>16} "
        f"{'speed-up':>9} {'fwd+bwd CPU ms/view':>20}"
    )
    print(header)
    print("-" * len(header))
    baseline: dict[int, float] = {}
    for batch in args.batches:
        for name, backend, device in implementations:
            fwd, total, cpu = time_one(backend, batch, device, args.repeats)
            if backend == "torch" and device.type == "cpu":
                baseline[batch] = total
            speed_up = f"{baseline[batch] / total:.1f}x"
            print(f"{name:<18} {batch:>5} {fwd:>12.2f} {total:>16.2f} {speed_up:>9} {cpu:>20.2f}", flush=True)


if __name__ == "__main__":
    main()
