"""Benchmark of vertex normals: the torch graph against the numba kernels, side by side.

Two workloads: the built-in face model (6,278 vertices) at batch 24, the shape of one
step of the embedded training preset (8 subjects x 3 views), and a BFM-front-size
face-like mesh (35,721 vertices / 70,688 triangles) at batch 3 and 36. Prints, per
implementation, the median forward and forward + backward wall time (ms per call),
the speed-up, and the largest difference between the two (normals; gradients
relative to the largest gradient entry).

    python bench/normals.py [--threads 1] [--repeats 10]
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
from lib.facemodel import load_face_model  # noqa: E402
from lib.geometry.normals import vertex_normals_torch  # noqa: E402
from lib.jit import numba_available  # noqa: E402
from lib.render.synthetic import face_like_mesh  # noqa: E402


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up (and numba compilation)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def run_pair(name: str, vertices: torch.Tensor, faces: torch.Tensor, repeats: int) -> None:
    from lib.geometry.normals_numba import vertex_normals_numba

    weights = torch.randn_like(vertices)
    rows, results = [], {}
    for label, fn in (("torch", vertex_normals_torch), ("numba", vertex_normals_numba)):
        verts = vertices.clone().requires_grad_(True)

        def forward():
            with torch.no_grad():
                return fn(verts, faces)

        def both():
            verts.grad = None
            out = fn(verts, faces)
            (out * weights).sum().backward()
            return out

        out = both()
        results[label] = (out.detach(), verts.grad.clone())
        rows.append((label, median_ms(forward, repeats), median_ms(both, repeats)))
    base = rows[0][2]
    diff_n = (results["torch"][0] - results["numba"][0]).abs().max().item()
    grad_torch, grad_numba = results["torch"][1], results["numba"][1]
    diff_g = ((grad_torch - grad_numba).abs().max() / grad_torch.abs().max()).item()
    for label, fwd, fb in rows:
        print(f"| {name} | {label} | {fwd:.2f} | {fb:.2f} | {base / fb:.1f}x |")
    print(f"|  | largest difference | normals {diff_n:.1e} | gradient {diff_g:.1e} (relative) | |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    if not numba_available():
        raise SystemExit("numba is not installed: nothing to compare")
    torch.set_num_threads(args.threads)
    print(f"machine: {machine()}; median of {args.repeats}")
    print("| mesh, batch | implementation | forward ms | forward + backward ms | speed-up (f+b) |")
    print("|---|---|---|---|---|")
    model = load_face_model("builtin", None)
    mean = torch.as_tensor(model.mean_shape)
    generator = torch.Generator().manual_seed(0)
    builtin = mean.expand(24, -1, -1) + torch.randn(24, *mean.shape, generator=generator)
    run_pair("built-in (6,278 v), 24", builtin, torch.as_tensor(model.faces), args.repeats)
    vertices, faces = face_like_mesh()
    for batch in (3, 36):
        run_pair(f"BFM size (35,721 v), {batch}", vertices.expand(batch, -1, -1).contiguous(), faces, args.repeats)


if __name__ == "__main__":
    main()
