"""Preprocess photos once: face detection, 68 landmarks, alignment, parsing -> cache.

Fills the preprocessing cache that training and testing read (data.cache_dir, default
OUT/cache), lists every photo that was skipped and why in OUT/skipped.txt, and with
--overlays writes a picture per photo (landmarks + parsing map) to check by eye.
Photos already prepared with the same settings are not redone.
"""
from __future__ import annotations

import os

import numpy as np
from PIL import Image
from tqdm import tqdm

from lib.cli import make_parser, parse_config, run
from lib.errors import UserError
from lib.facemodel import load_face_model


def _layout(root: str, layout: str) -> str:
    if layout != "auto":
        return layout
    return "pixel_face" if any(os.path.isdir(os.path.join(root, s)) for s in ("train", "val")) else "folders"


def main(argv=None) -> int:
    parser = make_parser(__doc__, "configs/synthetic.yaml", "runs/prepare", "prepare.py")
    parser.add_argument("--input", default="", help="photo folder (default: data.root)")
    parser.add_argument("--layout", default="auto", choices=("auto", "folders", "pixel_face"), help="input layout (auto: pixel_face when train/ or val/ exist)")
    parser.add_argument("--overlays", action="store_true", help="also write OUT/overlays/<n>.png per prepared photo")
    args, cfg = parse_config(parser, argv)
    root = args.input or cfg.data.root
    if not root:
        raise UserError("--input: give the photo folder (or set data.root)")
    if not os.path.isdir(root):
        raise UserError(f"{root}: input folder not found")
    from data.folders import FolderViews
    from data.pixel_face import PixelFace
    from lib.preprocess import Preprocessor
    from lib.visualize.preprocess import draw_overlay

    face_model = None if cfg.preprocess.aligned else load_face_model(cfg.face_model.source, cfg.face_model.path)
    preprocessor = Preprocessor(cfg.preprocess, cfg.loss.skin_weights, face_model, crop_size=cfg.data.image_size)
    cache_dir = cfg.data.cache_dir or os.path.join(args.out, "cache")
    layout = _layout(root, args.layout)
    if layout == "pixel_face":
        splits = [s for s in ("train", "val") if os.path.isdir(os.path.join(root, s))]
        datasets = {s: PixelFace(root, s, preprocessor, cache_dir) for s in splits}
    else:
        datasets = {"folders": FolderViews(root, preprocessor, cache_dir, cfg.model.num_views)}

    skipped = [line for ds in datasets.values() for line in ds.skipped_summary().splitlines()]
    with open(os.path.join(args.out, "skipped.txt"), "w") as handle:
        handle.write("".join(f"{line}\n" for line in skipped))
    if args.overlays:
        folder = os.path.join(args.out, "overlays")
        os.makedirs(folder, exist_ok=True)
        for split, ds in datasets.items():
            for group in tqdm(ds.groups, desc=f"overlays {split}", unit="sample"):
                for view, path in enumerate(group.paths):
                    if path is not None:
                        entry = ds.cache.get(path)
                        picture = draw_overlay(np.asarray(entry["crop"]), np.asarray(entry["landmarks"]), np.asarray(entry["parsing"]))
                        name = f"{split}_{group.name.replace('/', '_')}_{view}.png"
                        Image.fromarray(picture).save(os.path.join(folder, name))
    photos = sum(p is not None for ds in datasets.values() for g in ds.groups for p in g.paths)
    samples = sum(len(ds) for ds in datasets.values())
    print(f"prepared {photos} photos in {samples} samples ({layout}); cache: {cache_dir}")
    if skipped:
        print(f"skipped {len(skipped)} (listed in {os.path.join(args.out, 'skipped.txt')}):")
        for line in skipped[:20]:
            print(f"  {line}")
        if len(skipped) > 20:
            print(f"  ... and {len(skipped) - 20} more")
    return 0


if __name__ == "__main__":
    run(main)
