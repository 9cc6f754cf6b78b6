"""Landmark backends side by side: speed, robustness and accuracy (doc/preprocess.md).

    .venv/bin/python bench/preprocess.py [--subjects N] [--repeats R]

1. Speed on CPU, photos per second: detection + 68 landmarks, + parsing (the full
   aligned pipeline on 224 px crops), and the unaligned pipeline on 1280x960 photos
   (detection, POS alignment, crop, parsing).
2. Robustness: faces found on the 18 real Pixel-Face sample photos (6 frontal, 12
   side views), read from ../shared/assets/pixel_face_samples/ when present.
3. Accuracy against known landmarks: faces rendered from the built-in synthetic face
   model (data/synthetic.py, yaw about -35 / 0 / +35 degrees) whose 68 landmarks are
   the projected model vertices. Error = mean point distance / outer-eye-corner
   distance (NME), over all 68 points and without the jaw (17-67). These cartoon-like
   faces measure relative behaviour, not accuracy on real photos.
4. Agreement of the two backends on the real photos both detect (NME, dlib reference).

Numbers taken on a shared, loaded machine vary; rerun on an idle one to compare.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
from PIL import Image  # noqa: E402

from bench.common import machine  # noqa: E402
from lib.config.schema import DataConfig, LossConfig, PreprocessConfig, RenderConfig  # noqa: E402
from lib.errors import UserError  # noqa: E402
from lib.facemodel.builtin import build_builtin_face_model  # noqa: E402
from lib.preprocess import Preprocessor, read_image  # noqa: E402
from lib.preprocess.landmarks import BACKENDS, get_backend  # noqa: E402

SAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "assets", "pixel_face_samples")


def library_versions() -> list[str]:
    """mediapipe's and (when installed) dlib's version."""
    import mediapipe

    versions = [f"mediapipe {mediapipe.__version__}"]
    try:
        import dlib

        versions.append(f"dlib {dlib.__version__}")
    except ImportError:
        pass
    return versions


def available_backends() -> list[str]:
    names = []
    for name in BACKENDS:
        try:
            get_backend(name)
            names.append(name)
        except UserError as err:
            print(f"(skipping {name}: {err})")
    return names


def nme(pred: np.ndarray, truth: np.ndarray, points=slice(None)) -> float:
    """Mean point error over `points`, divided by the true outer-eye-corner distance."""
    return float(np.linalg.norm(pred[points] - truth[points], axis=1).mean() / np.linalg.norm(truth[36] - truth[45]))


def real_photos() -> list[tuple[str, np.ndarray]]:
    if not os.path.isdir(SAMPLES):
        return []
    return [(view, read_image(os.path.join(SAMPLES, view, f))) for view in ("0", "1", "2") for f in sorted(os.listdir(os.path.join(SAMPLES, view)))]


def speed(backends: list[str], photos: list[np.ndarray], repeats: int) -> None:
    canvases = []
    for photo in photos[:6]:
        canvas = np.full((960, 1280, 3), 110, np.uint8)
        big = np.asarray(Image.fromarray(photo).resize((448, 448)))
        canvas[250:698, 400:848] = big
        canvases.append(canvas)
    print("\n1. speed, photos / s (CPU)")
    print(f"{'backend':<10} {'detect+68 @224':>15} {'+parsing @224':>14} {'full @1280x960':>15}")
    base = None
    for name in backends:
        backend = get_backend(name)
        aligned = Preprocessor(PreprocessConfig(aligned=True, landmarks=name), LossConfig().skin_weights, None,
                               crop_size=224)
        unaligned = Preprocessor(PreprocessConfig(aligned=False, landmarks=name), LossConfig().skin_weights,
                                 build_builtin_face_model(), crop_size=224)
        unaligned.model_points  # build the template outside the timing
        rates = []
        for job in (lambda p: backend.detect_all(p), lambda p: aligned(p), None):
            images = photos if job is not None else canvases
            run = job or (lambda p: unaligned(p))
            count, start = 0, time.perf_counter()
            for _ in range(repeats):
                for image in images:
                    try:
                        run(image)
                    except UserError:
                        pass
                    count += 1
            rates.append(count / (time.perf_counter() - start))
        base = base or rates
        ratio = "  ".join(f"{r / b:.2f}x" for r, b in zip(rates, base))
        print(f"{name:<10} {rates[0]:>15.1f} {rates[1]:>14.1f} {rates[2]:>15.1f}   (vs {backends[0]}: {ratio})")


def robustness(backends: list[str], photos: list[tuple[str, np.ndarray]]) -> dict:
    print("\n2. faces found on the Pixel-Face sample photos")
    print(f"{'backend':<10} {'frontal':>8} {'side':>8} {'all':>8}")
    found = {}
    for name in backends:
        backend = get_backend(name)
        found[name] = [max(backend.detect_all(img), key=lambda f: f.area, default=None) for _, img in photos]
        front = sum(f is not None for (v, _), f in zip(photos, found[name]) if v == "1")
        side = sum(f is not None for (v, _), f in zip(photos, found[name]) if v != "1")
        n_front = sum(v == "1" for v, _ in photos)
        print(f"{name:<10} {front:>5}/{n_front:<2} {side:>5}/{len(photos) - n_front:<2} {front + side:>5}/{len(photos)}")
    return found


def accuracy(backends: list[str], subjects: int) -> None:
    from data.synthetic import generate_split

    arrays = generate_split(build_builtin_face_model(), DataConfig(image_size=224), LossConfig(), "val", subjects,
                            progress=False, feature_dilation_px=PreprocessConfig().feature_dilation_px, render=RenderConfig())
    rgb, truth = arrays["rgb"], arrays["landmarks"]
    print(f"\n3. accuracy on {subjects} synthetic subjects x 3 views (built-in model renders, 224 px)")
    print(f"{'backend':<10} {'view':<6} {'found':>7} {'NME all':>8} {'NME no jaw':>11}")
    for name in backends:
        backend = get_backend(name)
        for view, label in ((1, "front"), (0, "side"), (2, "side")):
            errors, hits = [], 0
            for s in range(subjects):
                faces = backend.detect_all(rgb[s, view])
                if faces:
                    hits += 1
                    pred = max(faces, key=lambda f: f.area).points68
                    errors.append((nme(pred, truth[s, view]), nme(pred, truth[s, view], slice(17, 68))))
            err = np.array(errors) if errors else np.full((1, 2), np.nan)
            print(f"{name:<10} {label + str(view):<6} {hits:>4}/{subjects:<2} {err[:, 0].mean():>8.3f} {err[:, 1].mean():>11.3f}")


def agreement(found: dict, photos: list[tuple[str, np.ndarray]]) -> None:
    if not {"mediapipe", "dlib"} <= set(found):
        return
    print("\n4. mediapipe vs dlib on the real photos both detect (NME, dlib as reference)")
    for label, views in (("frontal", ("1",)), ("side", ("0", "2"))):
        errors = [
            (nme(m.points68, d.points68), nme(m.points68, d.points68, slice(17, 68)))
            for (v, _), m, d in zip(photos, found["mediapipe"], found["dlib"])
            if v in views and m is not None and d is not None
        ]
        err = np.array(errors)
        print(f"{label:<8} n={len(errors):<2} NME all {err[:, 0].mean():.3f}  no jaw {err[:, 1].mean():.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=20, help="synthetic subjects for the accuracy table")
    parser.add_argument("--repeats", type=int, default=2, help="passes over the photos for the speed table")
    args = parser.parse_args()
    print("machine:", machine(*library_versions()))
    backends = available_backends()
    photos = real_photos()
    if photos:
        speed(backends, [img for _, img in photos], args.repeats)
        found = robustness(backends, photos)
    else:
        print(f"(no Pixel-Face samples at {SAMPLES}: speed, robustness and agreement skipped)")
        found = {}
    accuracy(backends, args.subjects)
    agreement(found, photos)


if __name__ == "__main__":
    main()
