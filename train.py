"""Train DF-MVR. With no arguments: the CPU-sized synthetic preset (configs/synthetic.yaml).

Single process on CPU or one GPU: `python train.py [--config FILE] [--out DIR] [k=v ...]`.
Several GPUs or nodes: `torchrun --nproc_per_node=N train.py ...` (DDP; nccl on GPU,
gloo on CPU). Rerunning with the same --out resumes from DIR/checkpoints/last.pt.
"""
from __future__ import annotations

import os

import torch

from lib.cli import make_parser, parse_config, run
from lib.errors import UserError
from lib.facemodel import load_face_model
from lib.training import Trainer, init_distributed, seed_everything, shutdown_distributed
from lib.training.distributed import barrier


def build_datasets(cfg, face_model, out_dir: str, info):
    """(train, val) datasets for cfg.data.dataset; rank 0 generates caches first."""
    if cfg.data.dataset != "synthetic":
        raise UserError(f"data.dataset={cfg.data.dataset}: only 'synthetic' can be trained on in this version")
    from data.synthetic import build_synthetic

    cache_dir = cfg.data.cache_dir or os.path.join(out_dir, "cache")
    if info.is_main:
        sets = build_synthetic(face_model, cfg.data, cfg.loss, cache_dir, progress=cfg.train.progress)
    barrier(info)
    if not info.is_main:
        sets = build_synthetic(face_model, cfg.data, cfg.loss, cache_dir, progress=False)
    return sets


def main(argv=None) -> int:
    from models.checkpoint import build_model, load_checkpoint, save_checkpoint

    parser = make_parser(__doc__, "configs/synthetic.yaml", "runs/train")
    args, cfg = parse_config(parser, argv)
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
            print(f"training on {device} x {info.world_size}: {len(train_set)} train / {len(val_set)} val subjects, "
                  f"{sum(p.numel() for p in model.parameters()):,} parameters, output in {args.out}")
        history = trainer.fit()
    finally:
        shutdown_distributed()
    final = next((h for h in reversed(history) if "val/vertex_error_mm" in h), None)
    if info.is_main and final is not None:
        gain = 1 - final["val/vertex_error_mm"] / final["val/mean_face_error_mm"]
        print(f"final val vertex error {final['val/vertex_error_mm']:.3f} mm vs mean face "
              f"{final['val/mean_face_error_mm']:.3f} mm ({100 * gain:.1f}% lower); checkpoints in "
              f"{os.path.join(args.out, 'checkpoints')}")
        if "val/now_error_mm" in final:
            now_gain = 1 - final["val/now_error_mm"] / final["val/now_mean_face_error_mm"]
            print(f"NoW-style scan-to-mesh: {final['val/now_error_mm']:.3f} mm vs mean face "
                  f"{final['val/now_mean_face_error_mm']:.3f} mm ({100 * now_gain:.1f}% lower)")
    return 0


if __name__ == "__main__":
    run(main)
