"""What a training run writes besides checkpoints (rank 0 only): metrics.jsonl (one
line per epoch, rewritten whole so a resumed run never duplicates lines), train.log
(the console lines), tensorboard/ (scalars and image grids), vis/ (the validation
grids as PNG) and curves.png (loss and validation error per epoch)."""
from __future__ import annotations

import json
import os

import numpy as np
from PIL import Image
from tqdm import tqdm

from lib.training.curves import plot_training_curves


class RunLogger:
    """Files of one run under `out_dir`; every method is a no-op unless `is_main`."""

    def __init__(self, out_dir: str, is_main: bool):
        self.out_dir, self.is_main = out_dir, is_main
        self.writer = None

    @property
    def metrics_path(self) -> str:
        return os.path.join(self.out_dir, "metrics.jsonl")

    def read_history(self) -> list[dict]:
        """The per-epoch metrics already in metrics.jsonl (resume)."""
        if not os.path.isfile(self.metrics_path):
            return []
        with open(self.metrics_path) as f:
            return [json.loads(line) for line in f if line.strip()]

    def open(self) -> None:
        if self.is_main and self.writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(os.path.join(self.out_dir, "tensorboard"))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    def line(self, text: str) -> None:
        """One line to the console (through tqdm) and train.log."""
        if not self.is_main:
            return
        tqdm.write(text)
        with open(os.path.join(self.out_dir, "train.log"), "a") as f:
            f.write(text + "\n")

    def epoch(self, history: list[dict]) -> None:
        """After an epoch: metrics.jsonl, the last entry's scalars to TensorBoard."""
        if not self.is_main:
            return
        with open(self.metrics_path, "w") as f:
            for entry in history:
                f.write(json.dumps(entry) + "\n")
        metrics = history[-1]
        for key, value in metrics.items():
            if key != "epoch" and value is not None:
                self.writer.add_scalar(key, value, metrics["epoch"])
        self.writer.flush()

    def curves(self, history: list[dict]) -> None:
        if self.is_main:
            plot_training_curves(history, os.path.join(self.out_dir, "curves.png"))

    def grid(self, epoch: int, grid: np.ndarray) -> None:
        """A validation image grid uint8 [H, W, 3] to TensorBoard and vis/."""
        if not self.is_main:
            return
        self.writer.add_image("val/render_landmarks", grid, epoch, dataformats="HWC")
        os.makedirs(os.path.join(self.out_dir, "vis"), exist_ok=True)
        Image.fromarray(grid).save(os.path.join(self.out_dir, "vis", f"val_epoch_{epoch:04d}.png"))
