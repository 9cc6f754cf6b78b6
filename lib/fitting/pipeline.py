"""One subject from photos to files: preprocess, reconstruct (network and/or fitting),
bake the texture, draw the figures, write everything (doc/fitting.md).

The network itself lives in `models/`, which `lib` never imports: callers hand in a
`predictor` callable (test_sample.py builds it from a checkpoint).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from PIL import Image

from lib.config.schema import Config
from lib.errors import UserError
from lib.evaluation.prediction import evaluated_view
from lib.evaluation.runner import measure, synthetic_scan
from lib.fitting.fit import FitResult, FitTarget, fit_views
from lib.fitting.inputs import Subject
from lib.fitting.photo_space import surface_maps, write_photo_view, write_view_maps
from lib.fitting.report import coefficient_report, view_agreement
from lib.fitting.texture import bake_texture
from lib.meshio import write_glb, write_now_prediction, write_obj
from lib.morphable import FaceCoefficients, MorphableModel
from lib.preprocess.image_io import read_image
from lib.preprocess.landmark_accuracy import detector_error_estimate
from lib.visualize import shaded_render, subject_sheet, view_figure

RESULT_FILE = "result.json"
"""Written last for each subject: its presence means the subject is complete."""

Predictor = Callable[["PreparedSubject"], FaceCoefficients]
"""Network prediction for a subject: Vw rows of coefficients, one per view."""


@dataclass
class PreparedSubject:
    """A subject's views after preprocessing (S = crop size).

    images uint8 [Vw, S, S, 3]; landmarks float32 [Vw, 68, 2] px; parsing uint8
    [Vw, S, S]; skin_weight float32 [Vw, S, S]; view_names: one label per view
    (file stems); gt_shape float32 [V, 3] mm model space for synthetic subjects, and
    index: their index in the synthetic validation split (seeds their scan);
    photo_paths and alignments (photo -> crop, `lib.preprocess.align.Alignment`) per
    view for subjects read from photos (None for rendered demo subjects).
    """

    name: str
    view_names: list
    images: np.ndarray
    landmarks: np.ndarray
    parsing: np.ndarray
    skin_weight: np.ndarray
    gt_shape: np.ndarray | None = None
    index: int = 0
    photo_paths: list | None = None
    alignments: list | None = None

    def target(self) -> FitTarget:
        return FitTarget(
            rgb=torch.from_numpy(self.images).permute(0, 3, 1, 2).float() / 255.0,
            landmarks=torch.from_numpy(np.asarray(self.landmarks, np.float32)),
            parsing=torch.from_numpy(self.parsing.astype(np.int64)),
            skin_weight=torch.from_numpy(np.asarray(self.skin_weight, np.float32)),
            landmarks_on_silhouette=self.gt_shape is None,  # synthetic: the fixed vertices, projected
        )


def prepare_subject(subject: Subject, preprocessor) -> PreparedSubject:
    """Read and preprocess a subject's views. preprocessor: `lib.preprocess.pipeline.
    Preprocessor`. Raises UserError naming the file (unreadable image, no face)."""
    if not subject.views:
        raise UserError(f"{subject.name}: no images in this subject's folder")
    faces = [preprocessor(read_image(path), name=path) for path in subject.views]
    return PreparedSubject(
        name=subject.name,
        view_names=[os.path.splitext(os.path.basename(p))[0] for p in subject.views],
        images=np.stack([f.crop for f in faces]),
        landmarks=np.stack([f.landmarks for f in faces]).astype(np.float32),
        parsing=np.stack([f.parsing for f in faces]),
        skin_weight=np.stack([f.skin_weight for f in faces]).astype(np.float32),
        photo_paths=list(subject.views),
        alignments=[f.alignment for f in faces],
    )


def assign_view_slots(yaw: torch.Tensor, num_slots: int, side_view_deg: float) -> list[int]:
    """Network input slot (0 left, 1 front, 2 right for a 3-view network) of each of
    Vw views given their yaw [Vw] radians: in order when all slots are filled, else by
    the sign of the yaw (negative = left, as the synthetic data's yaws), falling back
    to the first free slots when two views would share one."""
    count = yaw.shape[0]
    if count > num_slots:
        raise UserError(f"{count} views, but the network takes at most {num_slots}; remove views or use --fit alone")
    if count == num_slots:
        return list(range(count))
    if num_slots != 3:
        return list(range(count))
    side = math.radians(side_view_deg)
    wanted = [0 if y < -side else 2 if y > side else 1 for y in yaw.tolist()]
    if len(set(wanted)) == count:
        return wanted
    return list(range(count))


def reconstruct(
    prepared: PreparedSubject,
    morphable: MorphableModel,
    cfg: Config,
    predictor: Predictor | None = None,
    fit: bool = True,
    progress: bool = False,
) -> FitResult:
    """Network prediction (when `predictor`), fitting (when `fit`), or both. Without
    a predictor the fit starts from the mean face. With both, the prediction refined
    for fit.steps_refine steps and a fit from the mean face are compared by the
    fitting objective (FitResult.terms['total']) and the better one is returned, so
    refining never ends worse than fitting alone (FitResult.start says which)."""
    if predictor is None and not fit:
        raise UserError("nothing to do: give --checkpoint FILE, --fit, or both")
    init = predictor(prepared) if predictor is not None else None
    fit_cfg = cfg.fit if fit else dataclasses.replace(cfg.fit, steps_refine=0)
    run = lambda start: fit_views(  # noqa: E731
        morphable, prepared.target(), fit_cfg, cfg.loss, cfg.render, init=start,
        expression_per_view=cfg.model.expression_per_view, progress=progress,
    )
    result = run(init)
    if init is None or not fit:
        return result
    scratch = run(None)
    best = scratch if scratch.terms["total"] < result.terms["total"] else result
    return dataclasses.replace(best, seconds=result.seconds + scratch.seconds)


def landmark_summary(result: FitResult) -> dict:
    """Median landmark distances in px: over all views' 68 points, per view, worst view."""
    error = result.landmark_error.numpy()
    per_view = [float(np.median(e)) for e in error]
    return {
        "landmark_median_px": float(np.median(error)),
        "landmark_median_px_per_view": per_view,
        "landmark_worst_view_px": max(per_view),
        "landmark_median_px_no_jaw": float(np.median(error[:, 17:])),
    }


def shape_error(pred_shape: np.ndarray, prepared: PreparedSubject, face_model, cfg: Config) -> float:
    """NoW-style mean distance (mm) of the mesh pred_shape [V, 3] to a synthetic
    subject's scan, exactly as test_pixel_face.py and training validation measure it
    (`lib.evaluation.runner`; pooled over the scan's cropped points)."""
    scan = synthetic_scan(prepared.gt_shape, face_model, cfg.eval, prepared.index)
    return float(measure(pred_shape, face_model, scan, cfg.eval).distances.mean())


def write_subject(
    folder: str,
    prepared: PreparedSubject,
    morphable: MorphableModel,
    result: FitResult,
    cfg: Config,
    mode: str,
    request: dict,
) -> dict:
    """Write every file of one subject into `folder` and return its summary row.
    request: what was asked (lib.fitting.request), recorded in result.json so that a
    rerun can tell whether the results still answer it.

    Files: mesh.obj (per-vertex albedo colours), textured.obj/.mtl/.png (when the
    face model has UVs), mesh.glb (textured, or coloured without UVs), now/<name>.obj
    + .npy + .txt (NoW submission), view<k>.png per view, sheet.png, coeffs.json,
    coeffs.npz, per view the depth and normal maps (lib.fitting.photo_space), for
    photos the photo-space JSON and overlay, and last result.json (the summary row;
    marks the subject complete).
    """
    start = time.perf_counter()
    check_finite(result, prepared.name)
    os.makedirs(folder, exist_ok=True)
    face_model = morphable.face_model
    coeffs = result.coeffs
    size = prepared.images.shape[1:3]
    with torch.no_grad():
        instance = morphable(coeffs, size)
        view_mask = torch.ones(1, coeffs.rotation.shape[0], dtype=torch.bool)
        front = int(evaluated_view(coeffs.rotation[None], view_mask)[0])
        shape = instance.shape[front]  # = evaluated_shape(morphable, coeffs, view_mask)[0]
        albedo = instance.albedo[front].clamp(0, 1)
    maps = surface_maps(instance.vertices, instance.normals, instance.colors, morphable.faces, size, cfg.render)

    write_obj(os.path.join(folder, "mesh.obj"), shape.numpy(), face_model.faces, colors=albedo.numpy())
    row = {"name": prepared.name, "mode": mode, "views": len(prepared.view_names)}
    if face_model.has_uv:
        baked = bake_texture(
            torch.from_numpy(prepared.images).float() / 255.0, instance.vertices, instance.normals, morphable.faces,
            torch.from_numpy(face_model.uv_coords), torch.from_numpy(face_model.uv_faces), albedo,
            cfg.fit.texture_size, cfg.fit.texture_min_cosine, cfg.fit.texture_cosine_power,
            bakeable=torch.from_numpy(prepared.parsing > 0),  # skin or a facial feature, not background
        )
        write_obj(
            os.path.join(folder, "textured.obj"), shape.numpy(), face_model.faces,
            uv_coords=face_model.uv_coords, uv_faces=face_model.uv_faces, texture=baked.image,
        )
        write_glb(
            os.path.join(folder, "mesh.glb"), shape.numpy(), face_model.faces,
            uv_coords=face_model.uv_coords, uv_faces=face_model.uv_faces, texture=baked.image,
        )
        row["texture_baked_fraction"] = baked.baked_fraction
    else:
        write_glb(os.path.join(folder, "mesh.glb"), shape.numpy(), face_model.faces, colors=albedo.numpy())
    now7 = face_model.extra_landmarks["now7"]
    write_now_prediction(os.path.join(folder, "now"), prepared.name, shape.numpy(), face_model.faces,
                         shape.numpy()[now7])

    figures = []
    for k, view_name in enumerate(prepared.view_names):
        figure = view_figure(
            prepared.images[k], maps[k].colour, maps[k].mask.astype(np.float32),
            result.landmarks[k].numpy(), prepared.landmarks[k], f"view {k}: {view_name}",
        )
        Image.fromarray(figure).save(os.path.join(folder, f"view{k}.png"))
        figures.append(figure)
        alignment = prepared.alignments[k] if prepared.alignments else None
        write_view_maps(folder, k, maps[k], alignment)
        if alignment is not None:
            write_photo_view(folder, k, prepared.photo_paths[k], read_image(prepared.photo_paths[k]), alignment,
                             maps[k], prepared.landmarks[k], result.landmarks[k].numpy())
    yaw = cfg.fit.novel_yaw_deg
    novel = [
        shaded_render(shape, morphable.faces, size, cfg.render, yaw_deg=yaw),
        shaded_render(shape, morphable.faces, size, cfg.render, yaw_deg=-yaw),
        shaded_render(shape, morphable.faces, size, cfg.render, yaw_deg=0.0, colors=albedo),
    ]
    row.update(landmark_summary(result))
    row["fit_start"] = result.start
    row["objective"] = result.terms.get("total")
    row.update(coefficient_report(coeffs, face_model, cfg.loss.plausible_quantile))
    row["identity_sd"] = row["prior_distance_sd"]["identity"]
    if face_model.has_uv and len(prepared.view_names) > 1:
        agreement = view_agreement(
            torch.from_numpy(prepared.images).float() / 255.0, instance.vertices, instance.normals, morphable.faces,
            torch.from_numpy(face_model.uv_coords), torch.from_numpy(face_model.uv_faces),
            torch.from_numpy(prepared.parsing > 0), cfg.fit, front,
        )
        row["view_agreement"] = agreement["agreement"]
        row["view_agreement_pairs"] = agreement["pairs"]
        if agreement["agreement"] is not None and agreement["agreement"] < cfg.fit.min_view_agreement:
            row["warnings"].append(
                f"the views may show different people: their facial detail agrees {agreement['agreement']:.2f} "
                f"(below fit.min_view_agreement {cfg.fit.min_view_agreement})")
    # The fit's landmark error is agreement with the detector; the detector's own
    # measured error (ICT renders, by yaw) says how accurate those points are.
    # Synthetic subjects' landmarks are exact (no detector ran): no estimate.
    estimate = None if prepared.gt_shape is not None else detector_error_estimate(
        cfg.preprocess.landmarks, prepared.landmarks, coeffs.rotation[:, 1].numpy())
    row["detector_error_px_estimate_per_view"] = estimate
    row["detector_error_px_estimate"] = None if estimate is None else float(np.mean(estimate))
    title = f"{prepared.name}  ({mode}; model vs image landmarks: median {row['landmark_median_px']:.2f} px"
    title += ")" if estimate is None else f"; detector's own error ~{row['detector_error_px_estimate']:.1f} px)"
    Image.fromarray(subject_sheet(figures, novel, title)).save(os.path.join(folder, "sheet.png"))

    _write_coefficients(folder, prepared, coeffs, face_model.name, result)
    row["seconds_fit"] = result.seconds
    if prepared.gt_shape is not None:
        mean_shape = morphable.mean_shape.reshape(-1, 3).numpy()
        row["shape_error_mm"] = shape_error(shape.numpy(), prepared, face_model, cfg)
        row["mean_face_error_mm"] = shape_error(mean_shape, prepared, face_model, cfg)
    row["seconds_write"] = time.perf_counter() - start
    _write_json(os.path.join(folder, RESULT_FILE), {**row, "request": request})
    return row


def check_finite(result: FitResult, name: str) -> None:
    """UserError unless every coefficient and fitted landmark is finite: a diverged
    fit must fail visibly, never be written (and later skipped) as a finished subject."""
    bad = [k for k, v in result.coeffs.as_dict().items() if not torch.isfinite(v).all()]
    if not torch.isfinite(result.landmarks).all():
        bad.append("landmarks")
    if bad:
        raise UserError(
            f"{name}: the reconstruction is not finite (nan or inf in {', '.join(bad)}); "
            "lower fit.lr / fit.lr_* or check the photos"
        )


def _write_coefficients(folder: str, prepared: PreparedSubject, coeffs: FaceCoefficients, model_name: str,
                        result: FitResult) -> None:
    """coeffs.npz (arrays, Vw rows) and coeffs.json (the same as lists, plus context)."""
    arrays = {k: v.numpy().astype(np.float32) for k, v in coeffs.as_dict().items()}
    arrays["landmarks_fit"] = result.landmarks.numpy().astype(np.float32)
    arrays["landmarks_detected"] = np.asarray(prepared.landmarks, np.float32)
    np.savez(os.path.join(folder, "coeffs.npz"), **arrays)
    doc = {
        "face_model": model_name,
        "views": list(prepared.view_names),
        "units": "rotation: Euler radians (x, y, z), R = Rz Ry Rx; translation: mm; landmarks: px",
        "shared": ["identity", "albedo"],
        "coefficients": {k: v.tolist() for k, v in arrays.items() if not k.startswith("landmarks")},
        "loss_terms": result.terms,
    }
    _write_json(os.path.join(folder, "coeffs.json"), doc)


def _write_json(path: str, data: dict) -> None:
    """Atomic write: a crash never leaves a half JSON (result.json marks completion)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, default=_jsonable)
    os.replace(tmp, path)


def _jsonable(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def read_result(folder: str) -> dict | None:
    """The summary row of a completed subject, or None when it is not complete or
    holds a non-finite number."""
    path = os.path.join(folder, RESULT_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            row = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(row, dict):
        return None
    # A row holding nan / inf (written before results were checked) is redone.
    numbers = [x for v in row.values() for x in (v if isinstance(v, list) else [v]) if isinstance(x, float)]
    return row if all(math.isfinite(x) for x in numbers) else None
