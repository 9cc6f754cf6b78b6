"""Train DF-MVR. With no arguments: the CPU-sized synthetic preset (configs/synthetic.yaml).

Data (data.dataset): synthetic (rendered from the face model, the default), pixel_face
(data.root holding train/, val/, val_obj/) or folders (data.root: folders of views,
no ground truth; data.val_root: views to validate on).

Single process on CPU or one GPU: `python train.py [--config FILE] [--out DIR] [k=v ...]`;
with train.processes=N on a CPU it starts N local processes itself (DDP over gloo).
Several GPUs or nodes: `torchrun --nproc_per_node=N train.py ...` (DDP; nccl on GPU,
gloo on CPU). Rerunning with the same --out resumes from DIR/checkpoints/last.pt.
"""
from __future__ import annotations

import os
import sys

import torch

from lib.cli import make_parser, parse_config, run
from lib.errors import UserError
from lib.facemodel import load_face_model
from lib.training import Trainer, init_distributed, seed_everything, shutdown_distributed
from lib.training.distributed import barrier, resolve_device, spawn_local, under_launcher
from lib.training.loop import check_batch_split
from lib.training.resume import check_resume
from lib.training.validation import validation_summary

DATASETS = ("synthetic", "pixel_face", "folders")


def _photo_datasets(cfg, face_model, cache_dir: str, progress: bool):
    """(train, val) of photos: Pixel-Face's train / val splits (val: NoW-style error
    against its scans), or folders of views (val: data.val_root, else the training
    folders themselves; loss terms only)."""
    from lib.preprocess import Preprocessor

    preprocessor = Preprocessor(cfg.preprocess, cfg.loss.skin_weights, face_model, crop_size=cfg.data.image_size)
    if cfg.data.dataset == "pixel_face":
        from data.pixel_face import PixelFace

        if cfg.loss.landmark3d > 0 and "pixel_face101" not in face_model.extra_landmarks:
            raise UserError(
                f"loss.landmark3d={cfg.loss.landmark3d}: face model '{face_model.name}' has no 'pixel_face101' "
                "landmarks to match Pixel-Face's 101 3D points; use face_model.source=bfm or set loss.landmark3d=0"
            )
        return (PixelFace(cfg.data.root, "train", preprocessor, cache_dir, progress),
                PixelFace(cfg.data.root, "val", preprocessor, cache_dir, progress))
    from data.folders import FolderViews

    views = cfg.model.num_views
    train = FolderViews(cfg.data.root, preprocessor, cache_dir, views, progress=progress)
    val = FolderViews(cfg.data.val_root, preprocessor, cache_dir, views, progress=progress) if cfg.data.val_root else train
    return train, val


def build_datasets(cfg, face_model, out_dir: str, info):
    """(train, val) datasets for cfg.data.dataset; rank 0 fills the caches first (data
    generation, photo preprocessing), the other ranks then read them."""
    if cfg.data.dataset not in DATASETS:
        raise UserError(f"data.dataset={cfg.data.dataset}: not one of {', '.join(DATASETS)}")
    if cfg.data.dataset != "synthetic" and not os.path.isdir(cfg.data.root):
        raise UserError(f"data.root={cfg.data.root!r}: folder not found (data.dataset={cfg.data.dataset} reads it)")
    cache_dir = cfg.data.cache_dir or os.path.join(out_dir, "cache")

    def build(progress: bool):
        if cfg.data.dataset == "synthetic":
            from data.synthetic import build_synthetic

            return build_synthetic(face_model, cfg, cache_dir, progress)
        return _photo_datasets(cfg, face_model, cache_dir, progress)

    sets = build(cfg.train.progress) if info.is_main else None
    barrier(info)
    if not info.is_main:
        sets = build(False)
    for dataset in dict.fromkeys(sets):
        if info.is_main and getattr(dataset, "skipped", None):
            print(f"skipped while preparing photos:\n{dataset.skipped_summary()}")
    return sets


def main(argv=None) -> int:
    from models.checkpoint import build_model, checkpoint_config, load_checkpoint, save_checkpoint

    parser = make_parser(__doc__, "configs/synthetic.yaml", "runs/train", "train.py")
    # The resume check runs before config.yaml is rewritten: a refused rerun leaves the folder as it was.
    args, cfg = parse_config(parser, argv, before_write=lambda out, cfg: check_resume(out, cfg, checkpoint_config))
    if cfg.train.processes > 1 and not under_launcher():
        if resolve_device(cfg.train.device).type == "cpu":
            check_batch_split(cfg.train, cfg.train.processes)
            return spawn_local(cfg.train.processes, run, main, list(sys.argv[1:] if argv is None else argv))
        print(f"train.processes={cfg.train.processes} is for CPU training: one process on the GPU "
              "(use torchrun for several GPUs)")
    if cfg.train.num_threads > 0:
        torch.set_num_threads(cfg.train.num_threads)
    info, device = init_distributed(cfg.train.device)
    try:
        seed_everything(cfg.train.seed)
        face_model = load_face_model(cfg.face_model.source, cfg.face_model.path)
        train_set, val_set = build_datasets(cfg, face_model, args.out, info)
        seed_everything(cfg.train.seed)
        model = build_model(cfg, face_model)
        trainer = Trainer(model, face_model, train_set, val_set, cfg, args.out, save_checkpoint, load_checkpoint,
                          info, device)
        if info.is_main:
            group = f"; DDP over {torch.distributed.get_backend()}" if info.enabled else ""
            print(f"training on {device} x {info.world_size}: {len(train_set)} train / {len(val_set)} val subjects, "
                  f"{sum(p.numel() for p in model.parameters()):,} parameters, output in {args.out}{group}")
        history = trainer.fit()
    finally:
        shutdown_distributed()
    final = next((h for h in reversed(history) if any(k.startswith("val/") for k in h)), None)
    if info.is_main and final is not None:
        print(f"final validation (epoch {final['epoch']}):{validation_summary(final)}; checkpoints in "
              f"{os.path.join(args.out, 'checkpoints')}")
    return 0


if __name__ == "__main__":
    run(main)
