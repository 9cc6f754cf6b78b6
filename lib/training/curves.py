"""The training curve figure written at the end of a run (DIR/curves.png)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402


def plot_training_curves(history: list[dict], path: str) -> None:
    """Two panels from the per-epoch metrics: the training loss (weighted total), and
    the validation vertex error with the mean-face baseline (mm)."""
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(8, 3), dpi=100)
    train = [(h["epoch"], h["train/total"]) for h in history if "train/total" in h]
    if train:
        ax_loss.plot(*zip(*train), marker=".")
    ax_loss.set(xlabel="epoch", ylabel="training loss (weighted total)", title="training loss")
    val = [(h["epoch"], h["val/vertex_error_mm"], h["val/mean_face_error_mm"]) for h in history
           if "val/vertex_error_mm" in h]
    if val:
        epochs, errors, baseline = zip(*val)
        ax_val.plot(epochs, errors, marker=".", label="prediction")
        ax_val.plot(epochs, baseline, linestyle="--", color="gray", label="mean face")
        ax_val.legend()
    ax_val.set(xlabel="epoch", ylabel="aligned vertex error (mm)", title="validation")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
