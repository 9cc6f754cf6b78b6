"""How accurate and how stable the 68 landmarks are, per backend, region and yaw.

    .venv/bin/python bench/landmarks.py [--subjects N] [--size PX] [--backends a,b] [--overlays DIR]

Needs ../shared/assets (ICT-FaceKit, Pixel-Face samples); parts whose assets are
absent are skipped with a line saying so.

1. Accuracy on ICT-FaceKit renders with known landmarks. Subjects draw an identity
   (N(0, 1) coefficients), a mild expression (a few ARKit blendshapes at 0-0.3) and an
   albedo, and are rendered at |yaw| 0, 15, 30, 45, 60 degrees (both signs; pitch and
   roll jitter +-5 / +-3 degrees) under three lights: `front` (soft frontal), `side`
   (strong light from one side, half the face dark) and `grey` (the side-lit render
   in greyscale at half contrast, like an old print). ICT's face area has no eyeballs,
   so the eye openings are painted (sclera and a dark iris) where the background shows
   through. Ground truth: ICT's 68 landmark vertices projected, except the 16 jaw
   points besides the chin, which follow the visible silhouette as 300-W annotates
   them: each is the outermost candidate vertex of its contour line in the image
   (lib/fitting/contour.py, band 6 mm, lines from 35 % of the landmark's |x| out to
   the landmark vertex). The rendered image is then cut to the ground truth's
   bounding box plus 50 % margin per side (the held-out check's face crops) and scaled
   to --size px. Error: NME = mean point distance / true outer-eye-corner distance
   (36-45), per region; misses (no face) are counted apart, not as errors.
2. Stability on the 18 real Pixel-Face photos (no annotations exist): each photo is
   also detected in 4 re-framings (zoomed out 1.5x on an edge-padded canvas, zoomed
   in 1.25x, shifted by 10 % of the side, zoomed out 2x), and each backend's points,
   mapped back, are compared with its own points on the original photo (NME). A
   backend that is accurate is also stable; an unstable one cannot be accurate.
   Across views: a subject's three views were taken at the same moment, so its
   non-jaw points (17-67; the jaw contour legitimately slides with yaw) must be
   one rigid 3D point set seen by three cameras. The residual of the best rank-3
   (affine camera) factorisation of the stacked, centred points [6, 51] is that
   consistency error (NME per view, front view's eye distance).
   Greyscale: each photo also in greyscale and in greyscale at half contrast (old
   prints), compared with the backend's own points on the colour photo.
   Far-side silhouette (side views): how far inside the person's outline (mediapipe's
   selfie segmentation, mask > 0.5, on the photos' plain backgrounds) the far side's
   jaw points 1-5 (or 11-15) lie, along their image row, in eye distances. Hair over
   the cheek or a mis-segmented background makes single values wrong; the mean over
   the 12 side views still shows where a backend puts the far-side contour.
3. Agreement between backends on those photos (per region, frontal and side views),
   with dlib (trained on 300-W) as reference: a hint of which definitions differ, not
   an accuracy.

4. Speed (--skip without "speed"): photos per second of each variant on the 18
   photos (224 px), side by side, with the ratio to "before". Timings on a shared
   machine are noisy; compare the ratios.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from bench.common import machine  # noqa: E402
from lib.config.schema import FitConfig  # noqa: E402
from lib.errors import UserError  # noqa: E402
from lib.facemodel.ict import convert_ict  # noqa: E402
from lib.fitting.contour import contour_lines, select_contour  # noqa: E402
from lib.morphable import FaceCoefficients, MorphableModel  # noqa: E402
from lib.preprocess import read_image  # noqa: E402
from lib.preprocess.landmarks import (DlibBackend, FaceLandmarks, LandmarkBackend, MediapipeBackend,  # noqa: E402
                                      MediapipeDlibBackend)
from lib.render import render_mesh  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ASSETS = os.path.join(ROOT, "..", "shared", "assets")
ICT_ARCHIVE = os.path.join(ASSETS, "ict_facekit", "FaceXModel.tar.xz")
SAMPLES = os.path.join(ASSETS, "pixel_face_samples")

REGIONS = {"jaw": slice(0, 17), "brows": slice(17, 27), "nose": slice(27, 36), "eyes": slice(36, 48),
           "mouth": slice(48, 68), "all": slice(0, 68)}
YAWS = (0, 15, 30, 45, 60)
LIGHTS = ("front", "side", "grey")
CONTOUR_BAND_MM = FitConfig.contour_band_mm  # the fitting's contour lines define the truth too
CONTOUR_INNER = FitConfig.contour_inner_fraction
RENDER_PX = 512
MARGIN = 0.5
REFRAMINGS = (("out1.5", 1 / 1.5, 0.0), ("in1.25", 1.25, 0.0), ("shift", 1.0, 0.1), ("out2", 0.5, 0.0))


def nme(pred: np.ndarray, truth: np.ndarray, points=slice(None)) -> float:
    """Mean point distance over `points` / outer-eye-corner distance of `truth`."""
    return float(np.linalg.norm(pred[points] - truth[points], axis=1).mean() / np.linalg.norm(truth[36] - truth[45]))


def _lighting(kind: str, rng: np.random.Generator) -> np.ndarray:
    """SH coefficients [27] (R, G, B x 9; lib/shading adds 0.8 to the DC term)."""
    gamma = np.zeros(9)
    if kind == "front":
        gamma[0], gamma[2] = -0.1, 0.25
    else:  # a strong light from image left or right: half the face in shadow
        gamma[0], gamma[3], gamma[2] = -0.45, rng.choice([-1, 1]) * 0.55, 0.1
    tint = 1 + rng.normal(0, 0.03, 3)
    return (gamma[None, :] * tint[:, None]).reshape(27)


def _paint_eyes(image: np.ndarray, covered: np.ndarray, truth: np.ndarray, rng: np.random.Generator) -> None:
    """Fill the eyeball holes of ICT's face area in place: background pixels inside
    each eye's landmark polygon become sclera, with a dark iris disc at its centre."""
    height, width = covered.shape
    for eye in (slice(36, 42), slice(42, 48)):
        poly = truth[eye]
        canvas = Image.new("L", (width, height), 0)
        ImageDraw.Draw(canvas).polygon([tuple(p) for p in poly], fill=1)
        hole = (np.asarray(canvas) > 0) & ~covered
        eye_width = np.linalg.norm(poly[0] - poly[3])
        centre = poly.mean(axis=0)
        yy, xx = np.mgrid[0:height, 0:width] + 0.5
        iris = (xx - centre[0]) ** 2 + (yy - centre[1]) ** 2 <= (0.22 * eye_width) ** 2
        sclera = rng.uniform(150, 200) * np.array([1.0, 0.97, 0.93])
        image[hole] = sclera.astype(np.uint8)
        image[hole & iris] = np.array([40, 30, 25], np.uint8)


def ict_scenes(model_path: str, subjects: int, seed: int = 0):
    """Yield (subject, yaw_deg, light, image uint8 [S, S, 3], truth float [68, 2] px)
    at RENDER_PX, before cropping."""
    from lib.facemodel.schema import FaceModel

    model = FaceModel.load(model_path)
    morphable = MorphableModel(model)
    lines = contour_lines(model.mean_shape, model.landmarks68, CONTOUR_BAND_MM, CONTOUR_INNER)
    size = (RENDER_PX, RENDER_PX)
    for subject in range(subjects):
        rng = np.random.default_rng([seed, subject])
        identity = rng.normal(0, 1, model.num_id)
        expression = rng.uniform(0, 0.3, model.num_exp) * (rng.random(model.num_exp) < 0.12)
        albedo = rng.normal(0, 1, model.num_tex)
        for yaw in YAWS:
            for sign in ((1,) if yaw == 0 else (-1, 1)):
                for light in LIGHTS:
                    rotation = np.deg2rad([rng.uniform(-5, 5), sign * yaw + rng.uniform(-3, 3), rng.uniform(-3, 3)])
                    coeffs = FaceCoefficients(
                        *(torch.tensor(a, dtype=torch.float32)[None] for a in
                          (identity, expression, albedo, rotation, np.zeros(3), _lighting(light, rng)))
                    )
                    with torch.no_grad():
                        inst = morphable(coeffs, size)
                        render = render_mesh(inst.vertices, morphable.faces, {"color": inst.colors}, size)
                    chosen = select_contour(lines, morphable.landmarks68, inst.screen[..., 0])[0]
                    truth = inst.screen[0, chosen, :2].numpy().astype(np.float64)
                    covered = render.mask[0, ..., 0].numpy() > 0.5
                    background = rng.uniform(40, 200, 3)
                    rgb = render.images["color"][0].clamp(0, 1).numpy() * 255
                    image = np.where(covered[..., None], rgb, background).round().astype(np.uint8)
                    _paint_eyes(image, covered, truth, rng)
                    if light == "grey":
                        grey = image.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
                        grey = 0.5 * grey + 0.25 * 255
                        image = np.repeat(grey.round().astype(np.uint8)[..., None], 3, axis=-1)
                    yield subject, yaw, light, image, truth


def crop_with_margin(image: np.ndarray, truth: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The square around `truth`'s bounding box with MARGIN of its larger side added on
    every side, scaled to size px (edge-padded where it leaves the image); the truth
    moves with it."""
    lo, hi = truth.min(axis=0), truth.max(axis=0)
    side = (hi - lo).max() * (1 + 2 * MARGIN)
    centre = (lo + hi) / 2
    x0, y0 = centre - side / 2
    scale = size / side
    pil = Image.fromarray(image)
    # Affine from output px to input px: in = out / scale + (x0, y0).
    crop = pil.transform((size, size), Image.Transform.AFFINE, (1 / scale, 0, x0, 0, 1 / scale, y0),
                         resample=Image.Resampling.BILINEAR, fillcolor=tuple(int(c) for c in image[0, 0]))
    return np.asarray(crop), (truth - np.array([x0, y0])) * scale


def reframe(image: np.ndarray, zoom: float, shift: float) -> tuple[np.ndarray, np.ndarray]:
    """The image zoomed by `zoom` about its centre (zoom < 1: edge-padded canvas) and
    shifted by shift x its side, same size; returns it and A [2, 3] mapping new px to
    original px (x_orig = A @ [x, y, 1])."""
    height, width = image.shape[:2]
    offset = np.array([width, height]) * (0.5 - 0.5 / zoom + shift)
    a = np.array([[1 / zoom, 0, offset[0]], [0, 1 / zoom, offset[1]]])
    pad = int(math.ceil(max(height, width) * (1 / zoom + abs(shift))))
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    moved = Image.fromarray(padded).transform(
        (width, height), Image.Transform.AFFINE,
        (a[0, 0], 0, a[0, 2] + pad, 0, a[1, 1], a[1, 2] + pad), resample=Image.Resampling.BILINEAR)
    return np.asarray(moved), a


class Clahe(LandmarkBackend):
    """Another backend run on the image after CLAHE on its lightness (OpenCV, 8x8 tiles,
    clip 2): evens out side light and lifts low contrast."""

    def __init__(self, inner: LandmarkBackend):
        import cv2

        self._cv2, self._inner = cv2, inner
        self._clahe = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8))

    def detect_all(self, image):
        lab = self._cv2.cvtColor(image, self._cv2.COLOR_RGB2LAB)
        lab[..., 0] = self._clahe.apply(np.ascontiguousarray(lab[..., 0]))
        return self._inner.detect_all(self._cv2.cvtColor(lab, self._cv2.COLOR_LAB2RGB))


OLD_MESH_TO_68 = np.array([
    127, 234, 132, 58, 172, 150, 149, 148, 152, 377, 378, 379, 397, 288, 361, 454, 356,
    70, 63, 105, 66, 55, 285, 296, 334, 293, 300, 168, 197, 5, 4, 98, 97, 2, 326, 327,
    33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181, 78, 82, 13, 312, 308, 317, 14, 87,
])
"""The 468 -> 68 picks before issue 15 (fixed vertices, no re-spacing), for the "before" rows."""


class OldMapping(LandmarkBackend):
    """The default before issue 15: plain 468-point mesh, OLD_MESH_TO_68 picks."""

    def __init__(self):
        self._mesh = MediapipeBackend(refine=False, jaw="mesh")

    def detect_all(self, image):
        return [FaceLandmarks(points68=face.dense[OLD_MESH_TO_68], box=face.box, dense=face.dense)
                for face in self._mesh.detect_all(image)]


VARIANTS = {
    "before": OldMapping,  # the default before issue 15
    "mp468_outline": lambda: MediapipeBackend(refine=False, jaw="outline"),
    "mp478_mesh": lambda: MediapipeBackend(refine=True, jaw="mesh"),
    "mp478_outline": lambda: MediapipeBackend(refine=True, jaw="outline"),  # the new default
    "mp478_out_clahe": lambda: Clahe(MediapipeBackend(refine=True, jaw="outline")),
    "dlib": lambda: DlibBackend(),
    "mp_dlib": lambda: MediapipeDlibBackend(refine=True),
}
"""Backends and variants compared (names as printed)."""
_built: dict[str, LandmarkBackend] = {}


def detect(name: str, image: np.ndarray) -> np.ndarray | None:
    """float [68, 2] px of the largest face variant `name` finds, or None."""
    if name not in _built:
        _built[name] = VARIANTS[name]()
    faces = _built[name].detect_all(image)
    return None if not faces else max(faces, key=lambda f: f.area).points68.astype(np.float64)


def _draw(image: np.ndarray, points: dict[str, np.ndarray]) -> Image.Image:
    colours = [(0, 255, 0), (255, 60, 60), (60, 160, 255), (255, 220, 0)]
    pil = Image.fromarray(image).resize((image.shape[1] * 2, image.shape[0] * 2), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(pil)
    for (label, pts), colour in zip(points.items(), colours):
        for x, y in pts * 2:
            draw.ellipse([x - 2.5, y - 2.5, x + 2.5, y + 2.5], outline=colour)
        draw.text((4, 4 + 12 * list(points).index(label)), label, fill=colour)
    return pil


def print_table(title: str, rows: dict, key_name: str) -> None:
    """rows: (backend, key) -> list of per-image region-error dicts (or None = missed)."""
    print(f"\n{title}")
    print(f"{'backend':<16} {key_name:>8} {'found':>8} " + " ".join(f"{r:>6}" for r in REGIONS))
    for (name, key), results in rows.items():
        found = [r for r in results if r is not None]
        cells = " ".join(f"{np.mean([r[k] for r in found]):6.3f}" if found else f"{'-':>6}" for k in REGIONS)
        print(f"{name:<16} {str(key):>8} {len(found):>4}/{len(results):<3} {cells}")


def accuracy(backends: list[str], subjects: int, size: int, overlays: str | None) -> None:
    if not os.path.isfile(ICT_ARCHIVE):
        print(f"(no ICT-FaceKit at {ICT_ARCHIVE}: accuracy table skipped)")
        return
    with tempfile.TemporaryDirectory(prefix="ict_bench_") as tmp:
        model_path = os.path.join(tmp, "ict.npz")
        convert_ict(ICT_ARCHIVE).save(model_path)
        by_yaw: dict = {}
        by_light: dict = {}
        for subject, yaw, light, image, truth in ict_scenes(model_path, subjects):
            crop, crop_truth = crop_with_margin(image, truth, size)
            found = {}
            for name in backends:
                pred = detect(name, crop)
                errors = None if pred is None else {k: nme(pred, crop_truth, s) for k, s in REGIONS.items()}
                by_yaw.setdefault((name, yaw), []).append(errors)
                by_light.setdefault((name, light), []).append(errors)
                if pred is not None:
                    found[name] = pred
            if overlays and subject < 2:
                os.makedirs(overlays, exist_ok=True)
                _draw(crop, {"truth": crop_truth, **found}).save(
                    os.path.join(overlays, f"ict_s{subject}_yaw{yaw:02d}_{light}_{len(os.listdir(overlays))}.png"))
    print_table(f"1a. ICT renders, NME per region by |yaw| (deg), {subjects} subjects x 3 lights, crops {size} px",
                dict(sorted(by_yaw.items())), "yaw")
    print_table("1b. the same by light", dict(sorted(by_light.items())), "light")


def real_photos() -> list[tuple[str, str, np.ndarray]]:
    return [(view, f, read_image(os.path.join(SAMPLES, view, f)))
            for view in ("0", "1", "2") for f in sorted(os.listdir(os.path.join(SAMPLES, view)))]


def three_view_consistency(backends: list[str], photos: list, points: dict) -> dict:
    """(backend, "3 views") -> per-subject region errors (jaw left out, see the docstring)."""
    subjects: dict = {}
    for i, (view, filename, _) in enumerate(photos):
        stem = os.path.splitext(filename)[0]
        subjects.setdefault(stem[:-1], {})[int(view)] = i
    rows: dict = {}
    for name in backends:
        for views in subjects.values():
            found = [points[name][views[v]] for v in (0, 1, 2)]
            if any(p is None for p in found):
                rows.setdefault((name, "3 views"), []).append(None)
                continue
            stacked = np.concatenate([(p[17:] - p[17:].mean(axis=0)).T for p in found])  # [6, 51]
            u, sv, vt = np.linalg.svd(stacked, full_matrices=False)
            residual = stacked - (u[:, :3] * sv[:3]) @ vt[:3]
            distance = np.full(68, np.nan)
            distance[17:] = np.linalg.norm(residual.reshape(3, 2, -1), axis=1).mean(axis=0)
            scale = np.linalg.norm(found[1][36] - found[1][45])
            rows.setdefault((name, "3 views"), []).append(
                {k: float(np.nanmean(distance[s]) / scale) if k != "jaw" else float("nan") for k, s in REGIONS.items()})
    return rows


def print_silhouette_inset(backends: list[str], photos: list, points: dict) -> None:
    """Table 2d (module docstring): mean far-side jaw inset from the person silhouette."""
    from mediapipe.python.solutions import selfie_segmentation

    segmenter = selfie_segmentation.SelfieSegmentation(model_selection=0)
    print("\n2d. far-side jaw (1-5 / 11-15) inside the person silhouette, side views (eye distances; 0 = on it)")
    print(f"{'backend':<16} {'found':>8} {'mean':>7} {'median':>7}")
    masks = [None if view == "1" else segmenter.process(image).segmentation_mask > 0.5 for view, _, image in photos]
    for name in backends:
        insets = []
        for mask, pts in zip(masks, points[name]):
            if mask is None or pts is None:
                continue
            turned_left = pts[30, 0] < (pts[36, 0] + pts[45, 0]) / 2  # nose left of the eyes: image-left side is far
            values = []
            for j in (range(1, 6) if turned_left else range(11, 16)):
                row = np.flatnonzero(mask[int(np.clip(pts[j, 1], 0, mask.shape[0] - 1))])
                if row.size:
                    edge = row.min() if turned_left else row.max() + 1
                    values.append((pts[j, 0] - edge) * (1 if turned_left else -1))
            if values:
                insets.append(np.mean(values) / np.linalg.norm(pts[36] - pts[45]))
        print(f"{name:<16} {len(insets):>5}/12 {np.mean(insets):>7.3f} {np.median(insets):>7.3f}")


def stability_and_agreement(backends: list[str], overlays: str | None) -> None:
    if not os.path.isdir(SAMPLES):
        print(f"(no Pixel-Face samples at {SAMPLES}: stability and agreement skipped)")
        return
    photos = real_photos()
    points = {name: [detect(name, image) for _, _, image in photos] for name in backends}
    rows: dict = {}
    for name in backends:
        for (view, _, image), base in zip(photos, points[name]):
            label = "front" if view == "1" else "side"
            for tag, zoom, shift in REFRAMINGS:
                moved, a = reframe(image, zoom, shift)
                pred = detect(name, moved)
                if base is None:
                    continue
                errors = None if pred is None else {
                    k: nme(pred @ a[:, :2].T + a[:, 2], base, s) for k, s in REGIONS.items()}
                rows.setdefault((name, label), []).append(errors)
    print_table("2a. stability on the 18 Pixel-Face photos: NME between the photo and 4 re-framings of it",
                rows, "views")
    grey_rows: dict = {}
    for name in backends:
        for (view, _, image), base in zip(photos, points[name]):
            if base is None:
                continue
            grey = np.repeat((image.astype(np.float64) @ [0.299, 0.587, 0.114])[..., None], 3, axis=-1)
            for tag, copy in (("grey", grey), ("grey_low", 0.5 * grey + 64)):
                pred = detect(name, copy.round().astype(np.uint8))
                grey_rows.setdefault((name, tag), []).append(
                    None if pred is None else {k: nme(pred, base, s) for k, s in REGIONS.items()})
    print_table("2c. greyscale copies (and at half contrast) vs the colour photo: NME to the backend's own colour points",
                grey_rows, "copy")
    print_silhouette_inset(backends, photos, points)
    print_table("2b. three-view consistency: residual of the rank-3 fit of the non-jaw points, per subject",
                three_view_consistency(backends, photos, points), "views")
    if "dlib" in backends:
        agree: dict = {}
        for name in backends:
            if name == "dlib":
                continue
            for (view, _, _), pred, ref in zip(photos, points[name], points["dlib"]):
                if ref is not None:
                    errors = None if pred is None else {k: nme(pred, ref, s) for k, s in REGIONS.items()}
                    agree.setdefault((name, "front" if view == "1" else "side"), []).append(errors)
        print_table("3. agreement with dlib on the Pixel-Face photos dlib detects (NME, dlib as reference)",
                    agree, "views")
    if overlays:
        os.makedirs(overlays, exist_ok=True)
        for i, (view, filename, image) in enumerate(photos):
            found = {name: points[name][i] for name in backends if points[name][i] is not None}
            _draw(image, found).save(os.path.join(overlays, f"pixel_{view}_{filename}"))


def speed(backends: list[str], repeats: int = 3) -> None:
    if not os.path.isdir(SAMPLES):
        return
    import time

    images = [image for _, _, image in real_photos()]
    print(f"\n4. speed: photos / s on the {len(images)} Pixel-Face photos (224 px), {repeats} passes")
    base = None
    for name in backends:
        detect(name, images[0])  # load outside the timing
        start = time.perf_counter()
        for _ in range(repeats):
            for image in images:
                detect(name, image)
        rate = repeats * len(images) / (time.perf_counter() - start)
        base = base or rate
        print(f"{name:<16} {rate:>8.1f}   ({rate / base:.2f}x of {backends[0]})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=6, help="ICT subjects (each: 9 yaws x 3 lights)")
    parser.add_argument("--size", type=int, default=256, help="side of the face crops, px")
    parser.add_argument("--backends", default=",".join(VARIANTS), help="comma-separated names from VARIANTS")
    parser.add_argument("--overlays", default=None, help="write overlay PNGs (truth + each backend) here")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: accuracy,stability,speed")
    args = parser.parse_args()
    import mediapipe
    import dlib

    print("machine:", machine(f"mediapipe {mediapipe.__version__}", f"dlib {dlib.__version__}"))
    backends = []
    for name in args.backends.split(","):
        try:
            detect(name, np.zeros((64, 64, 3), np.uint8))
            backends.append(name)
        except UserError as err:
            print(f"(skipping {name}: {err})")
    if "accuracy" not in args.skip:
        accuracy(backends, args.subjects, args.size, args.overlays)
    if "stability" not in args.skip:
        stability_and_agreement(backends, args.overlays)
    if "speed" not in args.skip:
        speed(backends)


if __name__ == "__main__":
    main()
