"""What a training run writes besides checkpoints (rank 0 only): metrics.jsonl (one
line per epoch, replaced whole through a temporary file and a rename, so a resumed
run never duplicates lines and a kill or a full disk mid-write never loses the
history; a torn line from elsewhere is dropped with a warning on reading), train.log
(the console lines), tensorboard/ (scalars and image grids), vis/ (the validation
grids as PNG) and curves.png (loss and validation error per epoch)."""
from __future__ import annotations

import json
import os

import numpy as np
from PIL import Image
from tqdm import tqdm

from lib.runfolder import atomic_write_text
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
        """The per-epoch metrics already in metrics.jsonl (resume); a torn or
        unreadable line (a kill or a full disk while an older version wrote it) is
        dropped with a warning."""
        if not os.path.isfile(self.metrics_path):
            return []
        history = []
        with open(self.metrics_path, encoding="utf-8", errors="replace") as f:
            for number, line in enumerate(f, 1):
                try:
                    entry = json.loads(line) if line.strip() else None
                except ValueError:
                    entry = None
                if isinstance(entry, dict) and isinstance(entry.get("epoch"), int):
                    history.append(entry)
                elif line.strip():
                    self.line(f"warning: {self.metrics_path} line {number} is unreadable (torn write?); dropped")
        return history

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
        atomic_write_text(self.metrics_path, "".join(json.dumps(entry) + "\n" for entry in history))
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
