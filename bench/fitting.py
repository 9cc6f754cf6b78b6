"""Seconds per 3-view subject for multi-view fitting (the issue's budget: 30 s on CPU).

Fits every subject of ../shared/assets/pixel_face_samples (real photos; synthetic
subjects rendered from the built-in model when that folder is absent) with a few
render sizes side by side, and times the rest of test_sample.py's work (texture
baking, figures, files). Prints one table with ratios to the default setting and the
machine it ran on.

    .venv/bin/python bench/fitting.py [--subjects N] [--threads T] [section.key=value ...]
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import machine  # noqa: E402
from lib.config import load_config  # noqa: E402
from lib.facemodel import load_face_model  # noqa: E402
from lib.fitting.fit import fit_views  # noqa: E402
from lib.fitting.inputs import discover_subjects  # noqa: E402
from lib.fitting.pipeline import PreparedSubject, landmark_summary, prepare_subject, write_subject  # noqa: E402
from lib.morphable import MorphableModel  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLES = os.path.join(ROOT, "..", "shared", "assets", "pixel_face_samples")


def load_subjects(cfg, face_model, count: int) -> tuple[list[PreparedSubject], str, float]:
    """(subjects, where they came from, preprocessing seconds per subject)."""
    if os.path.isdir(SAMPLES):
        from lib.preprocess.pipeline import Preprocessor

        pre = Preprocessor(dataclasses.replace(cfg.preprocess, aligned=True), cfg.loss.skin_weights, face_model, crop_size=cfg.fit.crop_size)
        start = time.perf_counter()
        subjects = [prepare_subject(s, pre) for s in discover_subjects(SAMPLES)[:count]]
        return subjects, "pixel_face_samples (real photos)", (time.perf_counter() - start) / len(subjects)
    from data.synthetic import generate_split

    data_cfg = dataclasses.replace(cfg.data, image_size=cfg.fit.crop_size)
    arrays = generate_split(face_model, data_cfg, cfg.loss, "val", count, progress=False,
                            feature_dilation_px=cfg.preprocess.feature_dilation_px, render=cfg.render)
    subjects = [
        PreparedSubject(f"synthetic-{i}", ["0", "1", "2"], arrays["rgb"][i], arrays["landmarks"][i],
                        arrays["parsing"][i], arrays["skin_weight"][i], arrays["gt_shape"][i])
        for i in range(count)
    ]
    return subjects, "synthetic (assets folder absent)", 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=3, help="subjects to time (default 3)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: fit.num_threads)")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. fit.steps_appearance=40")
    args = parser.parse_args()
    cfg = load_config(os.path.join(ROOT, "configs", "synthetic.yaml"), args.overrides)
    threads = args.threads or cfg.fit.num_threads
    if threads > 0:
        torch.set_num_threads(threads)
    face_model = load_face_model(cfg.face_model.source, cfg.face_model.path)
    morphable = MorphableModel(face_model)
    subjects, source, prep_s = load_subjects(cfg, face_model, args.subjects)

    default = cfg.fit.render_size
    variants = [(f"render {default} px (default)", cfg.fit)]
    for size in (64, 224):
        if size != default:
            variants.append((f"render {size} px", dataclasses.replace(cfg.fit, render_size=size)))
    variants.append(("landmarks only (no appearance)", dataclasses.replace(cfg.fit, steps_appearance=0)))

    print(f"machine: {machine()}")
    print(f"subjects: {len(subjects)} from {source}; crop {cfg.fit.crop_size} px; steps pose/shape/appearance "
          f"{cfg.fit.steps_pose}/{cfg.fit.steps_shape}/{cfg.fit.steps_appearance}")
    rows, write_s = [], []
    for name, fit_cfg in variants:
        seconds, medians = [], []
        for subject in subjects:
            result = fit_views(morphable, subject.target(), fit_cfg, cfg.loss, cfg.render,
                               expression_per_view=cfg.model.expression_per_view)
            seconds.append(result.seconds)
            medians.append(landmark_summary(result)["landmark_median_px"])
            if fit_cfg is cfg.fit:
                with tempfile.TemporaryDirectory() as tmp:
                    start = time.perf_counter()
                    write_subject(tmp, subject, morphable, result, cfg, "fit")
                    write_s.append(time.perf_counter() - start)
        rows.append((name, float(np.mean(seconds)), float(np.max(seconds)), float(np.max(medians))))
        print(f"  done: {name}", flush=True)

    base = rows[0][1]
    print(f"\n{'variant':34s} {'fit s/subject':>14s} {'worst s':>8s} {'ratio':>6s} {'worst median px':>16s}")
    for name, mean_s, worst_s, px in rows:
        print(f"{name:34s} {mean_s:14.2f} {worst_s:8.2f} {mean_s / base:6.2f} {px:16.2f}")
    print(f"\nper subject besides fitting: preprocessing {prep_s:.2f} s, texture + figures + files "
          f"{np.mean(write_s):.2f} s; default total {prep_s + base + np.mean(write_s):.2f} s")


if __name__ == "__main__":
    main()
