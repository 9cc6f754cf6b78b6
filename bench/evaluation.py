"""Benchmark: NoW-style evaluation of one 100k-point scan against a BFM-size mesh.

Prints one table comparing, side by side in one run:
  - the brute-force numpy reference (every point against every triangle), timed on a
    subset and extrapolated to the whole scan;
  - libigl's point_mesh_squared_distance called directly (tree built per call);
  - our `MeshDistance` (libigl AABB tree + Morton-ordered queries + degenerate
    handling), tree build + query;
  - the whole NoW procedure: crop, 7-point Procrustes, rigid + scale refinement and
    the final distances;
with ratios against the reference, plus the machine (CPU, threads, versions, load).

Run: OMP_NUM_THREADS=1 .venv/bin/python bench/evaluation.py [--points 100000]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import igl  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy.spatial import Delaunay  # noqa: E402

from bench.common import machine  # noqa: E402
from lib.config.schema import EvalConfig  # noqa: E402
from lib.evaluation import (  # noqa: E402
    MeshDistance,
    Similarity,
    crop_mask,
    crop_sphere,
    now_scan_to_mesh,
    sample_surface,
)
from lib.evaluation.distance import brute_force_distance  # noqa: E402

BFM_VERTICES = 35709


def face_sized_mesh(num_vertices: int, seed: int):
    """A smooth face-sized open surface (front of an ellipsoid, mm) with exactly
    num_vertices vertices, Delaunay-triangulated like a scan of a face (~2 V triangles),
    and 7 NoW-like landmark vertices."""
    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(num_vertices)))
    grid = np.stack(np.meshgrid(np.arange(side), np.arange(side), indexing="ij"), -1).reshape(-1, 2)[:num_vertices]
    uv = (grid + rng.uniform(0.2, 0.8, size=grid.shape)) / side * 2.4 - 1.2  # jittered grid, radians
    faces = Delaunay(uv).simplices.astype(np.int64)
    t, p = uv[:, 0], uv[:, 1]
    verts = np.stack([70 * np.sin(t) * np.cos(p), 90 * np.sin(p), 60 * np.cos(t) * np.cos(p)], -1)
    spots = np.array([[-0.45, 0.2], [-0.15, 0.2], [0.15, 0.2], [0.45, 0.2], [0.0, -0.25], [-0.3, -0.6], [0.3, -0.6]])
    landmarks = np.array([np.argmin(((uv - s) ** 2).sum(1)) for s in spots])
    return verts, faces, landmarks


def best_of(fn, repeats: int) -> tuple[float, float]:
    """(best wall seconds, best CPU seconds of this process) over `repeats` runs. On a
    shared machine the CPU time is the better guess of the idle wall time."""
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return min(wall), min(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=100_000, help="scan points after the crop")
    parser.add_argument("--reference-points", type=int, default=100, help="subset for the brute-force reference")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    gt_verts, faces, lm = face_sized_mesh(BFM_VERTICES, seed=0)
    rng = np.random.default_rng(1)
    # Ground truth = the mesh with smooth bumps (so the prediction is not exact),
    # sampled densely enough that the crop holds the requested number of points.
    bumps = 1.5 * np.sin(gt_verts[:, :1] / 9.0) * np.cos(gt_verts[:, 1:2] / 11.0)
    gt = gt_verts + bumps * np.array([[0.0, 0.0, 1.0]])
    opts = EvalConfig()
    centre, radius = crop_sphere(gt[lm], opts.crop_radius_factor)
    dense = sample_surface(gt, faces, 4 * args.points, seed=2)
    scan = dense[crop_mask(dense, centre, radius)][: args.points]
    rotation = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    rotation *= np.sign(np.linalg.det(rotation))  # proper rotation
    # The prediction: the un-bumped mesh in another frame, with noisy landmarks.
    pred = Similarity(1.2, rotation, np.array([3.0, -8.0, 40.0])).inverse().apply(gt_verts)
    pred_lm = pred[lm] + rng.normal(0.0, 1.0, size=(7, 3))

    # Reference and fast distances on the aligned prediction (the metric's last step).
    aligned = now_scan_to_mesh(scan, gt[lm], pred, faces, pred_lm, opts)
    sub = scan[: args.reference_points]
    start, start_cpu = time.perf_counter(), time.process_time()
    ref = brute_force_distance(sub, aligned.aligned_verts, faces)
    per_point = len(scan) / len(sub)
    t_ref = ((time.perf_counter() - start) * per_point, (time.process_time() - start_cpu) * per_point)
    fast_sub = MeshDistance(aligned.aligned_verts, faces).distance(sub)
    rel = np.max(np.abs(fast_sub - ref) / np.maximum(ref, 1e-9))

    t_igl = best_of(lambda: igl.point_mesh_squared_distance(scan, aligned.aligned_verts, faces), args.repeats)
    t_ours = best_of(lambda: MeshDistance(aligned.aligned_verts, faces).distance(scan), args.repeats)
    t_now = best_of(lambda: now_scan_to_mesh(scan, gt[lm], pred, faces, pred_lm, opts), args.repeats)
    t_now_all = best_of(
        lambda: now_scan_to_mesh(scan, gt[lm], pred, faces, pred_lm, EvalConfig(refine_points=0)), 1
    )

    libigl = getattr(igl, "__version__", "2.6.3")  # the pinned version; older builds lack the attribute
    print(f"machine: {machine(f'numpy {np.__version__}', f'libigl {libigl}')}")
    print(f"mesh: {len(gt_verts)} vertices, {len(faces)} triangles; scan: {len(scan)} points after the crop")
    print(f"fast vs brute force on {len(sub)} points: max relative difference {rel:.2e}")
    print(f"mean error after alignment: {aligned.distances.mean():.4f} mm (bumps up to 1.5 mm)")
    print()
    rows = [
        ("brute force numpy (extrapolated)", t_ref),
        ("igl.point_mesh_squared_distance", t_igl),
        ("MeshDistance (tree + query)", t_ours),
        (f"NoW procedure, refine on {opts.refine_points} pts", t_now),
        ("NoW procedure, refine on all pts", t_now_all),
    ]
    print(f"{'implementation':<42}{'wall s':>10}{'CPU s':>10}{'vs brute force (CPU)':>22}")
    for name, (wall, cpu) in rows:
        print(f"{name:<42}{wall:>10.3f}{cpu:>10.3f}{t_ref[1] / cpu:>21.0f}x")


if __name__ == "__main__":
    main()
