"""Benchmark: our NoW refinement against a full-point refinement, side by side.

The seed (NoW's code) refines scale + rigid pose on every cropped scan vertex with a
dogleg solver run to convergence; ours takes `eval.refine_iterations` (10)
Levenberg-Marquardt steps on `eval.refine_points` (10,000) of them. On synthetic
scans (100k area-uniform points on a random face of the built-in model; the
prediction is another random face) this prints, per subject, the mean scan-to-mesh
error of both, their difference (the claim: below 0.01 mm) and the time of each, plus
the machine line.

Run: OMP_NUM_THREADS=1 .venv/bin/python bench/refinement.py [--subjects 10] [--points 100000]
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from bench.common import machine  # noqa: E402
from lib.config.schema import EvalConfig  # noqa: E402
from lib.evaluation import now_scan_to_mesh, sample_surface  # noqa: E402
from lib.facemodel import load_face_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subjects", type=int, default=10)
    parser.add_argument("--points", type=int, default=100000)
    parser.add_argument("--id-std", type=float, default=1.0, help="spread of the random faces (basis std)")
    args = parser.parse_args()
    model = load_face_model("builtin")
    now7 = model.extra_landmarks["now7"]
    ours = EvalConfig()
    full = dataclasses.replace(ours, refine_iterations=200, refine_points=0)
    rng = np.random.default_rng(0)
    print(machine())
    print(f"ours: {ours.refine_iterations} LM steps on {ours.refine_points} points; full: every cropped point, "
          f"up to {full.refine_iterations} steps (stops on a relative decrease < 1e-4)")
    print(f"{'subject':>7} {'cropped':>8} {'ours mm':>9} {'full mm':>9} {'|diff| mm':>10} {'ours s':>7} {'full s':>7}")
    diffs = []
    for subject in range(args.subjects):
        gt = model.mean_shape + model.id_basis @ rng.normal(0, args.id_std, model.num_id)
        pred = model.mean_shape + model.id_basis @ rng.normal(0, args.id_std, model.num_id)
        scan = sample_surface(gt, model.faces, args.points, seed=[0, subject])
        results, times = [], []
        for options in (ours, full):
            start = time.perf_counter()
            results.append(now_scan_to_mesh(scan, gt[now7], pred, model.faces, pred[now7], options))
            times.append(time.perf_counter() - start)
        a, b = (r.distances.mean() for r in results)
        diffs.append(abs(a - b))
        print(f"{subject:>7} {len(results[0].distances):>8} {a:>9.4f} {b:>9.4f} {abs(a - b):>10.5f} "
              f"{times[0]:>7.2f} {times[1]:>7.2f}")
    print(f"largest |diff| {max(diffs):.5f} mm, mean {np.mean(diffs):.5f} mm over {args.subjects} subjects")


if __name__ == "__main__":
    main()
