"""Reconstruct faces from folders of views: textured meshes and overlay pictures out.

Modes: --checkpoint FILE (network), --fit (fitting only), both (network, then
fitting refines it). Without --checkpoint the fit is used. --video FILE takes its
views from a head-turn video (doc/video.md). Without --input or --video it runs on
demo subjects rendered from the face model and prints their error against the ground
truth. Per subject it writes OUT/<subject>/ (see doc/fitting.md) and skips subjects
already complete for the same request (mode, checkpoint, face model, settings,
photos) unless --overwrite; a changed request redoes the subject. Exit status 1 when
a subject failed (the others are still done).
"""
from __future__ import annotations

import dataclasses
import os
import sys

import numpy as np
import torch
from tqdm import tqdm

from lib.cli import describe_os_error, make_parser, parse_config, run
from lib.config.schema import Config
from lib.errors import UserError
from lib.facemodel import load_face_model, photo_face_model
from lib.fitting.inputs import discover_subjects, safe_name
from lib.fitting.request import changed_keys, clear_outputs, demo_request, photo_request, run_request
from lib.fitting.pipeline import (
    PreparedSubject,
    prepare_subject,
    read_result,
    reconstruct,
    write_subject,
)
from lib.morphable import MorphableModel

COLUMNS = (
    ("name", "subject", "{}"),
    ("views", "views", "{}"),
    ("mode", "mode", "{}"),
    ("landmark_median_px", "fit-vs-detected px", "{:.2f}"),
    ("detector_error_px_estimate", "detector err px (est.)", "{:.1f}"),
    ("landmark_worst_view_px", "worst view px", "{:.2f}"),
    ("seconds_fit", "fit s", "{:.1f}"),
    ("identity_sd", "id SD", "{:.1f}"),
    ("view_agreement", "views agree", "{:.2f}"),
    ("fit_start", "from", "{}"),
    ("shape_error_mm", "error mm", "{:.3f}"),
    ("mean_face_error_mm", "mean face mm", "{:.3f}"),
    ("status", "status", "{}"),
)


SYNTHETIC_ON_PHOTOS = (
    "{path} was trained on synthetic faces (data.dataset=synthetic); on photos its prediction is a rough start, "
    "not a reconstruction: add --fit to refine it (the better of refining it and fitting from scratch is kept)"
)


def demo_subjects(face_model, cfg: Config) -> list[PreparedSubject]:
    """fit.demo_subjects synthetic subjects (validation split) with their ground truth."""
    from data.synthetic import generate_split

    data_cfg = dataclasses.replace(cfg.data, image_size=cfg.fit.crop_size)
    arrays = generate_split(face_model, data_cfg, cfg.loss, "val", cfg.fit.demo_subjects, progress=False,
                            feature_dilation_px=cfg.preprocess.feature_dilation_px, render=cfg.render)
    return [
        PreparedSubject(
            name=f"demo-{i:03d}",
            view_names=[f"yaw{y:+.0f}" for y in cfg.data.synthetic.yaw_deg],
            images=arrays["rgb"][i],
            landmarks=arrays["landmarks"][i],
            parsing=arrays["parsing"][i],
            skin_weight=arrays["skin_weight"][i],
            gt_shape=arrays["gt_shape"][i],
            index=i,
        )
        for i in range(arrays["rgb"].shape[0])
    ]


def print_table(rows: list[dict]) -> None:
    cells = [[title for _, title, _ in COLUMNS]]
    for row in rows:
        cells.append([fmt.format(row[key]) if row.get(key) is not None else "-" for key, _, fmt in COLUMNS])
    widths = [max(len(r[i]) for r in cells) for i in range(len(COLUMNS))]
    for i, r in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))


def main(argv=None) -> int:
    parser = make_parser(__doc__.splitlines()[0], "configs/synthetic.yaml", "runs/test_sample", "test_sample.py")
    parser.add_argument("--input", default="", help="folder of views (samples/ layout or one folder per subject); "
                        "default: demo subjects rendered from the face model")
    parser.add_argument("--video", default="", help="a head-turn video: the sharpest frames nearest "
                        "video.target_yaw_deg become one subject's views (instead of --input)")
    parser.add_argument("--checkpoint", default="", help="trained network checkpoint (network prediction)")
    parser.add_argument("--fit", action="store_true", help="fit by analysis-by-synthesis (refines --checkpoint)")
    parser.add_argument("--overwrite", action="store_true", help="redo subjects whose results already exist")
    args, cfg = parse_config(parser, argv)
    # A bad --input / --video is reported before anything else is loaded or printed.
    if args.input and args.video:
        raise UserError("give --input or --video, not both")
    if args.video and not os.path.isfile(args.video):
        raise UserError(f"--video {args.video}: file not found")
    subjects = discover_subjects(args.input) if args.input else None
    photos = bool(args.input or args.video)
    torch.manual_seed(cfg.train.seed)
    if cfg.fit.num_threads > 0:
        torch.set_num_threads(cfg.fit.num_threads)

    predictor = None
    if args.checkpoint:
        from models.predictor import load_predictor

        network = load_predictor(args.checkpoint, cfg, "cpu")
        if network.seed:
            from models.seed_port import seed_notice

            print(seed_notice(args.checkpoint, cfg))
        face_model = network.face_model
        morphable = MorphableModel(face_model)
        predictor = lambda prepared: network.predict_views(prepared.target(), morphable)  # noqa: E731
        if photos and network.cfg.data.dataset == "synthetic":
            print(f"note: {SYNTHETIC_ON_PHOTOS.format(path=args.checkpoint)}", file=sys.stderr)
    elif photos:
        face_model, notice = photo_face_model(cfg.face_model)
        morphable = MorphableModel(face_model)
        if notice:
            print(f"note: {notice}", file=sys.stderr)
    else:
        face_model = load_face_model(cfg.face_model.source, cfg.face_model.path)
        morphable = MorphableModel(face_model)
    fit = args.fit or not args.checkpoint
    mode = "network+fit" if predictor and fit else "network" if predictor else "fit"
    shared = run_request(cfg, mode, args.checkpoint, face_model)

    if photos:
        from lib.preprocess.pipeline import Preprocessor

        preprocessor = Preprocessor(cfg.preprocess, cfg.loss.skin_weights, face_model, crop_size=cfg.fit.crop_size)
    if args.video:
        from lib.video import video_subject

        name = safe_name(os.path.splitext(os.path.basename(args.video))[0])
        folder = os.path.join(args.out, name)
        jobs = [(name, lambda f=folder: prepare_subject(video_subject(args.video, f, morphable, cfg), preprocessor),
                 lambda: {**photo_request(shared, [args.video]), "video": dataclasses.asdict(cfg.video)})]
    elif args.input:
        jobs = [(s.name, lambda s=s: prepare_subject(s, preprocessor), lambda s=s: photo_request(shared, s.views))
                for s in subjects]
    else:
        jobs = [(p.name, lambda p=p: p, lambda i=i: demo_request(shared, cfg, i))
                for i, p in enumerate(demo_subjects(face_model, cfg))]

    rows = []
    for name, load, request_of in tqdm(jobs, desc="subjects", unit="subject"):
        folder = os.path.join(args.out, name)
        try:
            request = request_of()
            done = None if args.overwrite else read_result(folder)
            if done is not None:
                changed = changed_keys(done.get("request"), request)
                if not changed:
                    rows.append({**done, "status": "done before"})
                    continue
                tqdm.write(f"{name}: redone: the request changed ({', '.join(changed[:6])})", file=sys.stderr)
            clear_outputs(folder)
            prepared = load()
            result = reconstruct(prepared, morphable, cfg, predictor, fit, progress=True)
            rows.append({**write_subject(folder, prepared, morphable, result, cfg, mode, request), "status": "ok"})
        except UserError as err:
            tqdm.write(f"{name}: skipped: {err}", file=sys.stderr)
            rows.append({"name": name, "status": f"failed: {err}"})
        except OSError as err:  # disk full, permission denied: the next subjects would fail alike
            raise UserError(f"{name}: stopped while writing its results ({describe_os_error(err)}); "
                            f"the subjects before it are complete in {args.out}") from None

    print_table(rows)
    for row in rows:
        for warning in row.get("warnings") or ():
            print(f"warning: {row['name']}: {warning}")
    errors = [r["shape_error_mm"] for r in rows if r.get("shape_error_mm") is not None]
    if errors:
        means = [r["mean_face_error_mm"] for r in rows if r.get("mean_face_error_mm") is not None]
        print(f"scan-to-mesh error (mean over subjects): fit {np.mean(errors):.3f} mm, mean face {np.mean(means):.3f} mm")
    print(f"results in {args.out}")
    return 1 if any(r["status"].startswith("failed") for r in rows) else 0


if __name__ == "__main__":
    run(main)
