"""Evaluate a checkpoint with the NoW-style scan-to-mesh error (Pixel-Face or synthetic).

Pixel-Face validation split when data.dataset=pixel_face, else the synthetic
validation split (ground-truth meshes sampled as scans). Every sample's prediction
(the front view's mesh in model space) and the mean face are aligned to the scan the
same way (crop, 7-point similarity, rigid + scale refinement) and measured in mm.
Without --checkpoint only the mean-face baseline is evaluated.

Writes under --out: config.yaml, summary.json, errors.csv / errors.json (per sample),
cumulative_error.png and samples/<name>/ ('/' in names becomes '_'; prediction.obj, <method>_heatmap.png,
<method>_distances.npy, result.json). Rerunning with the same --out skips finished
samples and rebuilds the summary. See doc/evaluation.md.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os

import numpy as np
import torch
from tqdm import tqdm

from lib.cli import make_parser, parse_config, run
from lib.errors import UserError
from lib.evaluation import error_statistics, now_scan_to_mesh, sample_surface, vertex_errors
from lib.evaluation.pixel_face import pixel_face_scan
from lib.evaluation.report import (
    STAT_KEYS,
    plot_cumulative_errors,
    render_error_heatmap,
    save_png,
    summary_table,
    write_json,
    write_sample_table,
)
from lib.facemodel import load_face_model
from lib.meshio import write_obj
from lib.morphable import MorphableModel
from lib.training import resolve_device

FRONT_VIEW = 1  # views are ordered left, front, right
PREDICTION, MEAN_FACE = "prediction", "mean_face"


def load_predictor(path: str, cfg, device):
    """(model or None, face model, config describing the network's inputs)."""
    if not path:
        print("no --checkpoint given: evaluating the mean-face baseline only")
        return None, load_face_model(cfg.face_model.source, cfg.face_model.path), cfg
    from models.checkpoint import load_model

    model, ckpt_cfg = load_model(path, device)
    # The network fixes the face model and input size; the rest comes from the command line.
    if (ckpt_cfg.face_model, ckpt_cfg.data.image_size) != (cfg.face_model, cfg.data.image_size):
        print(
            f"using the checkpoint's face model ({ckpt_cfg.face_model.source}) and image size "
            f"({ckpt_cfg.data.image_size} px) instead of the config's"
        )
    cfg = dataclasses.replace(
        cfg,
        face_model=ckpt_cfg.face_model,
        model=ckpt_cfg.model,
        data=dataclasses.replace(cfg.data, image_size=ckpt_cfg.data.image_size),
    )
    return model, load_face_model(ckpt_cfg.face_model.source, ckpt_cfg.face_model.path), cfg


class SyntheticGroundTruth:
    """Synthetic validation samples; the scan is an area-uniform random sampling of the
    ground-truth mesh (a different sampling from the face model's vertices)."""

    def __init__(self, cfg, face_model, out: str):
        from data.synthetic import SyntheticMultiView, generate_split

        # Subject i depends only on (seed, split, i): the same subjects train.py validates on.
        arrays = generate_split(face_model, cfg.data, cfg.loss, "val", cfg.data.synthetic.num_val, progress=True)
        self.dataset = SyntheticMultiView(arrays, "val")
        self.faces = face_model.faces
        self.now7 = face_model.extra_landmarks["now7"]
        self.eval_cfg = cfg.eval

    def scan(self, sample: dict, index: int):
        """(scan points [N, 3], scan mesh (verts, faces) for heat maps, 7 landmarks [7, 3]), mm."""
        gt = sample["gt_shape"].numpy().astype(np.float64)
        points = sample_surface(gt, self.faces, self.eval_cfg.scan_points, seed=[self.eval_cfg.seed, index])
        return points, (gt, self.faces), gt[self.now7]


class PixelFaceGroundTruth:
    """Pixel-Face validation samples; the scan is the subject's mesh from <root>/val_obj/
    (its vertices are the scan points: NoW measures from scan vertices) and the 7
    landmarks are taken from the sample's 101 3D points (same frame, mm)."""

    def __init__(self, cfg, face_model, out: str):
        from data.pixel_face import PixelFace
        from lib.preprocess import Preprocessor

        if not os.path.isdir(os.path.join(cfg.data.root, "val")):
            raise UserError(f"data.root={cfg.data.root!r}: give the Pixel-Face folder holding val/ and val_obj/")
        preprocessor = Preprocessor(cfg.preprocess, face_model, crop_size=cfg.data.image_size)
        cache_dir = cfg.data.cache_dir or os.path.join(out, "cache")
        self.dataset = PixelFace(cfg.data.root, "val", preprocessor, cache_dir)

    def scan(self, sample: dict, index: int):
        """(scan points [N, 3], scan mesh (verts, faces), 7 landmarks [7, 3]), mm."""
        return pixel_face_scan(sample["name"], sample.get("mesh_path", ""), sample["landmarks3d"].numpy())


def predict_front_shape(model, morphable: MorphableModel, sample: dict, device) -> np.ndarray:
    """The front view's shape (identity + front-view expression) [V, 3] mm, model space."""
    with torch.no_grad():
        coeffs = model(
            sample["rgb"][None].to(device), sample["parsing"][None].to(device), sample["view_mask"][None].to(device)
        )
    row = min(FRONT_VIEW, sample["rgb"].shape[0] - 1)
    shape = morphable.shape(coeffs.identity[row : row + 1].cpu(), coeffs.expression[row : row + 1].cpu())
    return shape[0].numpy().astype(np.float64)


def run_key(cfg, checkpoint: str) -> str:
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


def evaluate_sample(methods: dict, face_model, scan, cfg, folder: str) -> dict:
    """Align and measure every method's mesh against one scan; write its files.

    methods: name -> verts [V, 3] model space mm, in face_model's topology.
    Returns {name: statistics}.
    """
    points, (scan_verts, scan_faces), scan_lm7 = scan
    faces, now7 = face_model.faces, face_model.extra_landmarks["now7"]
    stats = {}
    for name, verts in methods.items():
        result = now_scan_to_mesh(points, scan_lm7, verts, faces, verts[now7], cfg.eval)
        stats[name] = error_statistics(result.distances)
        np.save(os.path.join(folder, f"{name}_distances.npy"), result.distances.astype(np.float32))
        errors = vertex_errors(result.aligned_verts, scan_verts, scan_faces, result.centre, result.radius)
        heatmap = render_error_heatmap(verts, faces, errors, cfg.eval.heatmap_max_mm, cfg.eval.heatmap_size)
        save_png(os.path.join(folder, f"{name}_heatmap.png"), heatmap)
    return stats


def summarize(out: str, rows: list[dict], distances: dict[str, list], cfg, checkpoint: str, failed: list) -> dict:
    """Pooled statistics per method (NoW pools all scan points of all samples), the
    per-sample tables, the cumulative error curve and summary.json (which also lists
    the samples that could not be evaluated)."""
    summary = {}
    for name, parts in distances.items():
        stats = error_statistics(np.concatenate(parts))
        stats["samples"] = len(parts)
        stats["mean_of_sample_means"] = float(np.mean([row[f"{name}_mean"] for row in rows]))
        summary[name] = stats
    write_sample_table(rows, os.path.join(out, "errors.csv"))
    write_json(os.path.join(out, "errors.json"), rows)
    plot_cumulative_errors(
        {name: np.concatenate(parts) for name, parts in distances.items()},
        os.path.join(out, "cumulative_error.png"),
        cfg.eval.curve_max_mm,
    )
    document = {
        "units": "mm",
        "metric": "NoW scan-to-mesh distance: every cropped scan point to the aligned mesh, pooled over samples",
        "RMSE": "the seed's name for the mean distance; 'rms' is the root mean square",
        "dataset": cfg.data.dataset,
        "split": "val",
        "checkpoint": checkpoint or None,
        "crop_radius_factor": cfg.eval.crop_radius_factor,
        "refine_rigid": cfg.eval.refine_rigid,
        "skipped": failed,
        **summary,
    }
    write_json(os.path.join(out, "summary.json"), document)
    return summary


def main(argv=None) -> int:
    parser = make_parser(__doc__.split("\n")[0], "configs/synthetic.yaml", "runs/test_pixel_face", "test_pixel_face.py")
    parser.add_argument("--checkpoint", default="", help="checkpoint to evaluate (default: eval.checkpoint)")
    args, cfg = parse_config(parser, argv)
    checkpoint = args.checkpoint or cfg.eval.checkpoint
    if checkpoint and not os.path.isfile(checkpoint):
        raise UserError(f"--checkpoint {checkpoint}: file not found")
    if cfg.data.dataset not in ("synthetic", "pixel_face"):
        raise UserError(f"data.dataset={cfg.data.dataset}: evaluation needs ground truth (synthetic or pixel_face)")
    device = resolve_device(cfg.train.device)
    model, face_model, cfg = load_predictor(checkpoint, cfg, device)
    if "now7" not in face_model.extra_landmarks:
        raise UserError(f"face model '{face_model.name}': has no 'now7' landmarks for the NoW alignment")
    ground_truth = PixelFaceGroundTruth if cfg.data.dataset == "pixel_face" else SyntheticGroundTruth
    source = ground_truth(cfg, face_model, args.out)
    morphable = MorphableModel(face_model) if model is not None else None
    count = len(source.dataset) if cfg.eval.num_samples <= 0 else min(cfg.eval.num_samples, len(source.dataset))
    if count == 0:
        raise UserError(f"data.dataset={cfg.data.dataset}: the validation split is empty")
    key = run_key(cfg, checkpoint)
    methods = ([PREDICTION] if model is not None else []) + [MEAN_FACE]
    rows, distances = [], {name: [] for name in methods}
    reused, failed = 0, []
    for index in tqdm(range(count), desc="evaluating", unit="sample"):
        sample = source.dataset[index]
        folder = os.path.join(args.out, "samples", sample["name"].replace("/", "_"))
        done = os.path.join(folder, "result.json")
        record = read_record(done)
        finished = (
            record is not None
            and record.get("key") == key
            and all(os.path.isfile(os.path.join(folder, f"{name}_distances.npy")) for name in methods)
        )
        if not finished:
            try:
                scan = source.scan(sample, index)
            except UserError as err:  # e.g. a missing validation mesh: list it, go on
                failed.append(f"{sample['name']}: {err}")
                continue
            os.makedirs(folder, exist_ok=True)
            meshes = {MEAN_FACE: face_model.mean_shape.astype(np.float64)}
            if model is not None:
                meshes = {PREDICTION: predict_front_shape(model, morphable, sample, device), **meshes}
                write_obj(os.path.join(folder, "prediction.obj"), meshes[PREDICTION], face_model.faces)
            stats = evaluate_sample(meshes, face_model, scan, cfg, folder)
            record = {"key": key, "name": sample["name"], "stats": stats}
            write_json(done, record)  # written last: marks the sample finished
        else:
            reused += 1
        row = {"name": sample["name"], "scan_points": record["stats"][MEAN_FACE]["points"]}
        for name in methods:
            row.update({f"{name}_{k}": record["stats"][name][k] for k in STAT_KEYS})
            distances[name].append(np.load(os.path.join(folder, f"{name}_distances.npy")).astype(np.float64))
        rows.append(row)
    if reused:
        print(f"reused {reused} finished sample(s) from {args.out}")
    for line in failed:
        print(f"skipped {line}")
    if not rows:
        raise UserError(f"data.dataset={cfg.data.dataset}: no sample could be evaluated ({failed[0]})")
    summary = summarize(args.out, rows, distances, cfg, checkpoint, failed)
    print(summary_table(summary))
    print(f"wrote {os.path.join(args.out, 'summary.json')}")
    return 0


if __name__ == "__main__":
    run(main)
