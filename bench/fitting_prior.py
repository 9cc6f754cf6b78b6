"""NoW-style shape error of fitting on synthetic ICT-FaceKit subjects with known shapes,
with and without the plausibility term (doc/fitting.md "Fits that stay faces").

Each subject draws an ICT identity (~ N(0, 1) per mode), a few expression
blendshapes (weights 0.2-0.7), an albedo, varied SH lighting, a pose per view
(yaws -35 / 0 / +35 deg with jitter, pitch and roll) and a cluttered background
(colour gradient plus coloured boxes), and is rendered at fit.crop_size px. The
fitted landmarks are the true projected ones plus Gaussian noise (--noise-px, a
detector's error), the parsing map is the rendered one. Each subject is fitted from
3 views and from its frontal view alone, with loss.plausibility = 0 (before) and at
its default (after). Error: mean scan-to-mesh distance (mm) of the true mesh's
points to the fitted mesh after the NoW 7-point + rigid alignment, measured by
`lib.evaluation.runner` as test_pixel_face.py does (a scan sampled from the true mesh,
cropped); the mean face is the reference every fit must beat.

    .venv/bin/python bench/fitting_prior.py [--ict FILE] [--subjects N] [--noise-px P] [section.key=value ...]

--ict: the converted model (default face_model.converted) or ICT-FaceKit's FaceXModel
folder / .tar.xz.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import machine  # noqa: E402
from data.synthetic import skin_attention  # noqa: E402
from lib.config import load_config  # noqa: E402
from lib.facemodel import FaceModel  # noqa: E402
from lib.facemodel.ict import convert_ict  # noqa: E402
from lib.facemodel.ranges import gaussian_limits  # noqa: E402
from lib.evaluation.prediction import evaluated_shape  # noqa: E402
from lib.fitting.pipeline import PreparedSubject, landmark_summary, reconstruct, shape_error  # noqa: E402
from lib.geometry import CAMERA_DISTANCE_MM  # noqa: E402
from lib.morphable import FaceCoefficients, MorphableModel  # noqa: E402
from lib.render import render_mesh  # noqa: E402

YAWS = (-35.0, 0.0, 35.0)


def background(rng: np.random.Generator, size: int) -> np.ndarray:
    """float32 [size, size, 3]: a gradient between two random colours and 3 boxes."""
    ramp = np.linspace(0, 1, size, dtype=np.float32)
    c0, c1 = rng.uniform(0, 1, (2, 3)).astype(np.float32)
    image = c0 + (c1 - c0) * ramp[:, None, None] * np.ones((1, size, 1), np.float32)
    for _ in range(3):
        x0, y0 = rng.integers(0, size - size // 4, 2)
        w, h = rng.integers(size // 8, size // 2, 2)
        image[y0:y0 + h, x0:x0 + w] = rng.uniform(0, 1, 3)
    return image


def draw_subject(morphable: MorphableModel, cfg, index: int, noise_px: float) -> PreparedSubject:
    """Synthetic subject `index` (3 views) with its true mesh; see the module docstring."""
    fm = morphable.face_model
    rng = np.random.default_rng([2026, index])
    size = cfg.fit.crop_size
    views = len(YAWS)
    expression = np.zeros(fm.num_exp)
    expression[rng.choice(fm.num_exp, 4, replace=False)] = rng.uniform(0.2, 0.7, 4)
    light9 = rng.normal(0, 0.3, 9)
    lighting = (light9[None, :] + rng.normal(0, 0.05, (3, 1))).reshape(27)
    rotation = np.deg2rad(np.stack([rng.uniform(-10, 10, views), np.array(YAWS) + rng.uniform(-8, 8, views),
                                    rng.uniform(-5, 5, views)], 1))
    scale = 1.0 + rng.uniform(-0.05, 0.05, views)
    translation = np.concatenate([rng.uniform(-10, 10, (views, 2)), CAMERA_DISTANCE_MM * (1 - 1 / scale)[:, None]], 1)
    shared = lambda v: torch.tensor(np.broadcast_to(v, (views, len(v))), dtype=torch.float32)  # noqa: E731
    coeffs = FaceCoefficients(
        identity=shared(rng.normal(0, 1, fm.num_id)), expression=shared(expression),
        albedo=shared(rng.normal(0, 0.7, fm.num_tex)), rotation=torch.tensor(rotation, dtype=torch.float32),
        translation=torch.tensor(translation, dtype=torch.float32), lighting=shared(lighting),
    )
    with torch.no_grad():
        instance = morphable(coeffs, (size, size))
        onehot = morphable.region_onehot[None].expand(views, -1, -1)
        render = render_mesh(instance.vertices, morphable.faces, {"color": instance.colors, "parsing": onehot},
                             (size, size), cull_backfaces=cfg.render.cull_backfaces, backend=cfg.render.backend)
    mask = render.mask.numpy()
    backgrounds = np.stack([background(rng, size) for _ in range(views)])
    rgb = np.clip(render.images["color"].numpy(), 0, 1) * mask + backgrounds * (1 - mask)
    parsing = torch.where(render.mask[..., 0] > 0.5, render.images["parsing"].argmax(-1), torch.zeros((), dtype=torch.long))
    landmarks = instance.landmarks.numpy() + rng.normal(0, noise_px, instance.landmarks.shape)
    return PreparedSubject(
        name=f"ict-{index:02d}", view_names=[f"yaw{y:+.0f}" for y in YAWS],
        images=np.round(rgb * 255).astype(np.uint8), landmarks=landmarks.astype(np.float32),
        parsing=parsing.numpy().astype(np.uint8),
        skin_weight=skin_attention(parsing, cfg.loss.skin_weights, cfg.preprocess.feature_dilation_px).astype(np.float32),
        gt_shape=instance.shape[0].numpy(), index=index,
    )


def frontal_only(subject: PreparedSubject) -> PreparedSubject:
    k = YAWS.index(0.0)
    pick = lambda a: a[k:k + 1]  # noqa: E731
    return dataclasses.replace(subject, view_names=[subject.view_names[k]], images=pick(subject.images),
                               landmarks=pick(subject.landmarks), parsing=pick(subject.parsing),
                               skin_weight=pick(subject.skin_weight))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ict", default="", help="converted ICT .npz (default face_model.converted) or FaceXModel")
    parser.add_argument("--subjects", type=int, default=4)
    parser.add_argument("--noise-px", type=float, default=1.5, help="landmark noise (px at fit.crop_size)")
    parser.add_argument("overrides", nargs="*", help="section.key=value")
    args = parser.parse_args()
    cfg = load_config(None, args.overrides)
    torch.set_num_threads(max(cfg.fit.num_threads, 1))
    path = args.ict or cfg.face_model.converted
    face_model = FaceModel.load(path) if path.endswith(".npz") else convert_ict(path)
    morphable = MorphableModel(face_model)
    print(machine())
    print(f"{args.subjects} synthetic ICT subjects, {cfg.fit.crop_size} px, landmark noise {args.noise_px} px; "
          f"steps pose/shape/appearance {cfg.fit.steps_pose}/{cfg.fit.steps_shape}/{cfg.fit.steps_appearance}")
    variants = {"before (plausibility 0)": dataclasses.replace(cfg, loss=dataclasses.replace(cfg.loss, plausibility=0.0)),
                "after (default)": cfg}
    rows = {}
    mean_face = {}
    for i in range(args.subjects):
        subject = draw_subject(morphable, cfg, i, args.noise_px)
        mean_shape = morphable.mean_shape.reshape(-1, 3).numpy()
        mean_face[i] = shape_error(mean_shape, subject, face_model, cfg)
        for views, prepared in ((3, subject), (1, frontal_only(subject))):
            for name, variant in variants.items():
                result = reconstruct(prepared, morphable, variant)
                with torch.no_grad():
                    view_mask = torch.ones(1, views, dtype=torch.bool)
                    shape = evaluated_shape(morphable, result.coeffs, view_mask)[0]
                error = shape_error(shape.numpy(), subject, face_model, cfg)
                identity = float(result.coeffs.identity[0].norm())
                px = landmark_summary(result)["landmark_median_px"]
                rows.setdefault((views, name), []).append((error, px, identity))
                print(f"  {subject.name} {views} view(s) {name}: {error:.3f} mm, {px:.2f} px, identity {identity:.1f} SD"
                      f" (mean face {mean_face[i]:.3f} mm)", flush=True)
    print(f"\n{'views':>5s}  {'variant':24s} {'fit mm':>7s} {'mean face mm':>12s} {'ratio':>6s} "
          f"{'median px':>9s} {'identity SD':>11s}")
    reference = float(np.mean(list(mean_face.values())))
    for (views, name), values in rows.items():
        error, px, identity = (float(np.mean(col)) for col in zip(*values))
        print(f"{views:5d}  {name:24s} {error:7.3f} {reference:12.3f} {error / reference:6.2f} {px:9.2f} {identity:11.1f}")
    limit, _ = gaussian_limits(face_model.num_id, cfg.loss.plausible_quantile)
    print(f"(identity SD: Mahalanobis distance from the mean face; true identities: about "
          f"{math.sqrt(face_model.num_id):.0f}, {cfg.loss.plausible_quantile:.1%} under {limit:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
