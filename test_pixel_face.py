"""Evaluate a checkpoint with the NoW-style scan-to-mesh error (Pixel-Face or synthetic).

Pixel-Face validation split when data.dataset=pixel_face, else the synthetic
validation split (ground-truth meshes sampled as scans). Every sample's prediction
(`lib.evaluation.prediction.evaluated_shape`: the front view's mesh in model space)
and the mean face are aligned to the scan the same way (crop, 7-point similarity, rigid + scale refinement) and measured in mm.
Without --checkpoint only the mean-face baseline is evaluated.

Writes under --out: config.yaml, summary.json, errors.csv / errors.json (per sample),
cumulative_error.png, overview.png (the first samples' figures) and samples/<name>/ ('/' in names
becomes '_'; prediction.obj, <method>_heatmap.png, <method>_distances.npy, figure.png: the input views, the
reconstruction and the heat maps; result.json). Rerunning with the same --out skips finished
samples and rebuilds the summary. See doc/evaluation.md.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np
import torch

from lib.cli import make_parser, parse_config, run
from lib.errors import UserError
from lib.evaluation.pixel_face import pixel_face_scan
from lib.evaluation.prediction import evaluated_shape
from lib.evaluation.report import summary_table
from lib.evaluation.runner import evaluate_samples, run_key, summarize, synthetic_scan
from lib.facemodel import load_face_model
from lib.morphable import MorphableModel
from lib.training import resolve_device


def predictor_and_config(path: str, cfg, device):
    """(predictor or None, face model, config describing the network's inputs)."""
    if not path:
        print("no --checkpoint given: evaluating the mean-face baseline only")
        return None, load_face_model(cfg.face_model.source, cfg.face_model.path), cfg
    from models.predictor import load_predictor

    predictor = load_predictor(path, cfg, device)
    ckpt_cfg = predictor.cfg
    if predictor.seed:
        from models.seed_port import seed_notice

        print(seed_notice(path, cfg))
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
    return predictor, predictor.face_model, cfg


def validation_split(cfg, face_model, out: str):
    """(dataset, scan_of(sample, index)): the synthetic validation split (the same
    subjects train.py validates on; scans sampled on their ground-truth meshes) or
    Pixel-Face's val split (scans from <root>/val_obj/)."""
    if cfg.data.dataset == "pixel_face":
        from data.pixel_face import PixelFace
        from lib.preprocess import Preprocessor

        if not os.path.isdir(os.path.join(cfg.data.root, "val")):
            raise UserError(f"data.root={cfg.data.root!r}: give the Pixel-Face folder holding val/ and val_obj/")
        preprocessor = Preprocessor(cfg.preprocess, cfg.loss.skin_weights, face_model, crop_size=cfg.data.image_size)
        dataset = PixelFace(cfg.data, "val", preprocessor, cfg.data.cache_dir or os.path.join(out, "cache"))
        return dataset, lambda s, i: pixel_face_scan(s["name"], s.get("mesh_path", ""), s["landmarks3d"].numpy(),
                                                     cfg.data.pixel_face_unit, cfg.eval.pixel_face_landmarks)
    from data.synthetic import SyntheticMultiView, generate_split

    # Subject i depends only on (seed, split, i): the same subjects train.py validates on.
    arrays = generate_split(face_model, cfg.data, cfg.loss, "val", cfg.data.synthetic.num_val, progress=True,
                            feature_dilation_px=cfg.preprocess.feature_dilation_px, render=cfg.render)
    dataset = SyntheticMultiView(arrays, "val", list(cfg.data.synthetic.present_views))
    return dataset, lambda s, i: synthetic_scan(s["gt_shape"].numpy(), face_model, cfg.eval, i)


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
    predictor, face_model, cfg = predictor_and_config(checkpoint, cfg, device)
    if "now7" not in face_model.extra_landmarks:
        raise UserError(f"face model '{face_model.name}': has no 'now7' landmarks for the NoW alignment")
    dataset, scan_of = validation_split(cfg, face_model, args.out)
    count = len(dataset) if cfg.eval.num_samples <= 0 else min(cfg.eval.num_samples, len(dataset))
    if count == 0:
        raise UserError(f"data.dataset={cfg.data.dataset}: the validation split is empty")
    predict = None
    if predictor is not None:
        morphable = MorphableModel(face_model)

        def predict(sample: dict) -> np.ndarray:
            coeffs = predictor(sample["rgb"][None], sample["parsing"][None], sample["view_mask"][None])
            return evaluated_shape(morphable, coeffs, sample["view_mask"][None])[0].double().numpy()

    samples = torch.utils.data.Subset(dataset, range(count))
    rows, distances, failed, reused = evaluate_samples(samples, scan_of, predict, face_model, cfg, args.out,
                                                       run_key(cfg, checkpoint))
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
