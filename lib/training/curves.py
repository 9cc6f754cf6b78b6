"""The training curve figure written after every epoch (DIR/curves.png)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

VAL_ERRORS = (  # (metric, its mean-face baseline, label)
    ("val/vertex_error_mm", "val/mean_face_error_mm", "aligned vertex error"),
    ("val/now_error_mm", "val/now_mean_face_error_mm", "NoW-style error"),
)


def plot_training_curves(history: list[dict], path: str) -> None:
    """Two panels from the per-epoch metrics: the training (and validation) loss
    (weighted total), and the validation errors (mm) with their mean-face baselines
    (dashed) where the data have ground truth."""
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(8, 3), dpi=100)
    for key, label in (("train/total", "train"), ("val/total", "validation")):
        points = [(h["epoch"], h[key]) for h in history if key in h]
        if points:
            ax_loss.plot(*zip(*points), marker=".", label=label)
    ax_loss.legend()
    ax_loss.set(xlabel="epoch", ylabel="loss (weighted total)", title="loss")
    for key, base, label in VAL_ERRORS:
        points = [(h["epoch"], h[key], h[base]) for h in history if key in h]
        if points:
            epochs, errors, baseline = zip(*points)
            line = ax_val.plot(epochs, errors, marker=".", label=label)[0]
            ax_val.plot(epochs, baseline, linestyle="--", color=line.get_color(), label=f"mean face ({label})")
    if ax_val.lines:
        ax_val.legend(fontsize=7)
    ax_val.set(xlabel="epoch", ylabel="error (mm)", title="validation")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
