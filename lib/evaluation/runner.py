"""The one evaluation path: scans, measurement, and the resumable per-sample runner.

- `Scan` / `synthetic_scan` / `lib.evaluation.pixel_face.pixel_face_scan`: the
  ground truth a prediction is measured against (mm);
- `measure`: the NoW procedure of `lib.evaluation.now` for one predicted mesh in the
  face model's topology against one scan;
- `evaluate_samples`: test_pixel_face.py's runner (per-sample files, resume,
  pooled summary).

Training validation (`lib.training.validation`), test_pixel_face.py and test_sample.py
all measure through `measure` on scans from the same functions, so one checkpoint
gives one error (the mesh measured is `lib.evaluation.prediction.evaluated_shape`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from lib.config.schema import Config, EvalConfig, RenderConfig
from lib.errors import UserError
from lib.evaluation.now import NowResult, error_statistics, now_scan_to_mesh, vertex_errors
from lib.evaluation.report import (
    STAT_KEYS,
    plot_cumulative_errors,
    render_error_heatmap,
    save_png,
    write_json,
    write_sample_table,
)
from lib.evaluation.sampling import sample_surface
from lib.facemodel.schema import FaceModel
from lib.meshio import write_obj
from lib.visualize import reconstruction_figure, shaded_render, stacked

PREDICTION, MEAN_FACE = "prediction", "mean_face"
FIGURE_YAW_DEG = -25.0  # the reconstruction is shown turned, so its depth reads
FIGURE_HEIGHT = 192  # px, every panel of figure.png
OVERVIEW_SAMPLES = 3  # samples stacked in overview.png


@dataclass
class Scan:
    """Ground truth for the NoW procedure, mm, float64: points [N, 3] measured from;
    verts [K, 3] / faces [F, 3] the scan mesh (heat maps; faces None for a point
    cloud); landmarks7 [7, 3] the 7 NoW points."""

    points: np.ndarray
    verts: np.ndarray
    faces: np.ndarray | None
    landmarks7: np.ndarray


def synthetic_scan(gt_verts: np.ndarray, face_model: FaceModel, options: EvalConfig, index: int) -> Scan:
    """The scan of a synthetic subject: `eval.scan_points` area-uniform random points
    on its ground-truth mesh gt_verts [V, 3] mm (face model topology), seeded by
    [eval.seed, index] (index: the subject's index in its split). A fresh sampling, not
    the model's vertices, which would favour predictions in that topology."""
    gt = np.asarray(gt_verts, np.float64)
    points = sample_surface(gt, face_model.faces, options.scan_points, seed=[options.seed, index])
    return Scan(points, gt, face_model.faces, gt[face_model.extra_landmarks["now7"]])


def measure(verts: np.ndarray, face_model: FaceModel, scan: Scan, options: EvalConfig) -> NowResult:
    """NoW result of the mesh verts [V, 3] mm (face model topology, any frame) against
    `scan`: crop, 7-point similarity from the model's 'now7' vertices, refinement,
    distances (mm) of the cropped scan points."""
    pred = np.asarray(verts, np.float64)
    return now_scan_to_mesh(scan.points, scan.landmarks7, pred, face_model.faces,
                            pred[face_model.extra_landmarks["now7"]], options)


def run_key(cfg: Config, checkpoint: str) -> str:
    """Hash of everything that changes a sample's results: finished samples computed
    under another key are redone, not reused."""
    stat = os.stat(checkpoint) if checkpoint else None
    settings = {
        "checkpoint": [os.path.abspath(checkpoint), stat.st_size, stat.st_mtime_ns] if stat else None,
        "eval": {k: v for k, v in dataclasses.asdict(cfg.eval).items() if k not in ("checkpoint", "num_samples")},
        "data": {k: v for k, v in dataclasses.asdict(cfg.data).items() if k not in ("num_workers", "cache_dir")},
        "face_model": dataclasses.asdict(cfg.face_model),
    }
    return hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def read_record(path: str) -> dict | None:
    """A finished sample's result.json, or None when absent or unreadable (redo it)."""
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def evaluate_sample(methods: dict, face_model: FaceModel, scan: Scan, options: EvalConfig, render: RenderConfig,
                    folder: str) -> tuple[dict, dict]:
    """Align and measure every method's mesh against one scan; write its files
    (<method>_distances.npy, <method>_heatmap.png rendered with `render.*`). methods:
    name -> verts [V, 3] model space mm, in face_model's topology. Returns
    ({name: statistics}, {name: heat map uint8 [H, W, 3]})."""
    stats, heatmaps = {}, {}
    for name, verts in methods.items():
        result = measure(verts, face_model, scan, options)
        stats[name] = error_statistics(result.distances)
        np.save(os.path.join(folder, f"{name}_distances.npy"), result.distances.astype(np.float32))
        errors = vertex_errors(result.aligned_verts, scan.verts, scan.faces, result.centre, result.radius)
        heatmap = render_error_heatmap(verts, face_model.faces, errors, options.heatmap_max_mm, options.heatmap_size,
                                       render)
        save_png(os.path.join(folder, f"{name}_heatmap.png"), heatmap)
        heatmaps[name] = heatmap
    return stats, heatmaps


def sample_figure(sample: dict, methods: dict, stats: dict, heatmaps: dict, face_model: FaceModel,
                  render: RenderConfig) -> np.ndarray:
    """figure.png of one sample: its present input views, a shaded render of the
    prediction (when there is one) and every method's error heat map with its mean
    error. sample: 'rgb' float [Vw, 3, H, W] in [0, 1], 'view_mask' bool [Vw];
    methods, stats, heatmaps as in `evaluate_sample`. Returns uint8 [FIGURE_HEIGHT, W, 3]."""
    mask = sample["view_mask"].bool().tolist()
    panels = [(f"input: view {v}", (sample["rgb"][v].permute(1, 2, 0).clamp(0, 1).numpy() * 255).round()
               .astype(np.uint8)) for v in range(len(mask)) if mask[v]]
    if PREDICTION in methods:
        render_image = shaded_render(torch.as_tensor(methods[PREDICTION], dtype=torch.float32),
                                     torch.as_tensor(face_model.faces, dtype=torch.long), (FIGURE_HEIGHT, FIGURE_HEIGHT), render,
                                     yaw_deg=FIGURE_YAW_DEG)
        panels.append(("reconstruction", render_image))
    panels += [(f"{name.replace('_', ' ')} error: {stats[name]['mean']:.2f} mm", heatmaps[name]) for name in methods]
    return reconstruction_figure(panels, FIGURE_HEIGHT)


def summarize(out: str, rows: list[dict], distances: dict[str, list], cfg: Config, checkpoint: str,
              failed: list) -> dict:
    """Statistics per method, the per-sample tables, the cumulative error curve and
    summary.json (which also lists the samples that could not be evaluated and, for
    Pixel-Face, the files' unit and where the scans' 7 points came from).

    mean, median, std, rms pool all scan points of all samples (NoW); RMSE is the seed's
    figure: the mean over samples of each sample's mean distance (its
    test_pixel_face.py:60-78 averaging compute_error.py:93-113 per sample), also given
    as mean_of_sample_means. overview.png stacks the first samples' figures."""
    summary = {}
    for name, parts in distances.items():
        stats = error_statistics(np.concatenate(parts))
        stats["samples"] = len(parts)
        stats["mean_of_sample_means"] = float(np.mean([row[f"{name}_mean"] for row in rows]))
        stats["RMSE"] = stats["mean_of_sample_means"]
        summary[name] = stats
    write_sample_table(rows, os.path.join(out, "errors.csv"))
    write_overview(out, rows)
    write_json(os.path.join(out, "errors.json"), rows)
    plot_cumulative_errors(
        {name: np.concatenate(parts) for name, parts in distances.items()},
        os.path.join(out, "cumulative_error.png"),
        cfg.eval.curve_max_mm,
    )
    document = {
        "units": "mm",
        "metric": "NoW scan-to-mesh distance: every cropped scan point to the aligned mesh, pooled over samples",
        "RMSE": "the seed's figure (1.4040 in its paper): the mean over samples of each sample's mean distance; "
                "'mean' pools all points (NoW), 'rms' is the root mean square",
        "dataset": cfg.data.dataset,
        "split": "val",
        "checkpoint": checkpoint or None,
        "crop_radius_factor": cfg.eval.crop_radius_factor,
        "refine_rigid": cfg.eval.refine_rigid,
        "skipped": failed,
        **({"pixel_face_unit": cfg.data.pixel_face_unit, "pixel_face_landmarks": cfg.eval.pixel_face_landmarks}
           if cfg.data.dataset == "pixel_face" else {}),
        **summary,
    }
    write_json(os.path.join(out, "summary.json"), document)
    return summary


def write_overview(out: str, rows: list[dict]) -> None:
    """OUT/overview.png: the figure.png of the first OVERVIEW_SAMPLES samples, stacked
    (samples reused from a run that drew no figure are passed over)."""
    paths = [os.path.join(out, "samples", row["name"].replace("/", "_"), "figure.png") for row in rows]
    figures = [np.asarray(Image.open(p).convert("RGB")) for p in paths if os.path.isfile(p)][:OVERVIEW_SAMPLES]
    if figures:
        save_png(os.path.join(out, "overview.png"), stacked(figures))


def evaluate_samples(
    samples: Sequence[dict],
    scan_of: Callable[[dict, int], Scan],
    predict: Callable[[dict], np.ndarray] | None,
    face_model: FaceModel,
    cfg: Config,
    out: str,
    key: str,
) -> tuple[list[dict], dict[str, list], list[str], int]:
    """Measure the prediction (when `predict`) and the mean face on every sample,
    writing OUT/samples/<name>/ (prediction.obj, per-method distances and heat maps,
    figure.png with the inputs, result.json last); samples whose result.json carries `key` are reused.

    samples: indexable dataset of dicts with 'name'; scan_of(sample, index) -> Scan
    (UserError: the sample is skipped and listed); predict(sample) -> evaluated mesh
    [V, 3] mm. Returns (rows, distances per method, skipped lines, reused count)."""
    methods = ([PREDICTION] if predict is not None else []) + [MEAN_FACE]
    rows, distances = [], {name: [] for name in methods}
    reused, failed = 0, []
    for index in tqdm(range(len(samples)), desc="evaluating", unit="sample"):
        sample = samples[index]
        folder = os.path.join(out, "samples", sample["name"].replace("/", "_"))
        done = os.path.join(folder, "result.json")
        record = read_record(done)
        finished = (
            record is not None
            and record.get("key") == key
            and all(os.path.isfile(os.path.join(folder, f"{name}_distances.npy")) for name in methods)
        )
        if not finished:
            try:
                scan = scan_of(sample, index)
            except UserError as err:  # e.g. a missing validation mesh: list it, go on
                failed.append(f"{sample['name']}: {err}")
                continue
            os.makedirs(folder, exist_ok=True)
            meshes = {MEAN_FACE: face_model.mean_shape.astype(np.float64)}
            if predict is not None:
                meshes = {PREDICTION: predict(sample), **meshes}
                write_obj(os.path.join(folder, "prediction.obj"), meshes[PREDICTION], face_model.faces)
            stats, heatmaps = evaluate_sample(meshes, face_model, scan, cfg.eval, cfg.render, folder)
            save_png(os.path.join(folder, "figure.png"),
                     sample_figure(sample, meshes, stats, heatmaps, face_model, cfg.render))
            record = {"key": key, "name": sample["name"], "stats": stats}
            write_json(done, record)  # written last: marks the sample finished
        else:
            reused += 1
        row = {"name": sample["name"], "scan_points": record["stats"][MEAN_FACE]["points"]}
        for name in methods:
            row.update({f"{name}_{k}": record["stats"][name][k] for k in STAT_KEYS})
            distances[name].append(np.load(os.path.join(folder, f"{name}_distances.npy")).astype(np.float64))
        rows.append(row)
    return rows, distances, failed, reused
