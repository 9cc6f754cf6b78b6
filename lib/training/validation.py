"""Validation of a multi-view network during training: loss terms, the aligned vertex
error against ground-truth meshes, and the NoW-style error of `lib.evaluation.runner`
against the same scans test_pixel_face.py uses (synthetic: `synthetic_scan` of the
ground-truth mesh, seeded by the subject's index; Pixel-Face: the validation scan).
The mesh measured is `lib.evaluation.prediction.evaluated_shape`, so one checkpoint
gives one error here and in test_pixel_face.py (pooled over scan points, like its
summary's 'mean')."""
from __future__ import annotations

import numpy as np
import torch

from lib.config.schema import Config
from lib.errors import UserError
from lib.evaluation.pixel_face import pixel_face_scan
from lib.evaluation.prediction import evaluated_shape
from lib.evaluation.runner import Scan, measure, synthetic_scan
from lib.geometry import apply_similarity, similarity_transform
from lib.losses import multiview_losses
from lib.morphable import FaceCoefficients, MorphableModel


def aligned_vertex_error(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean per-vertex distance [S] (mm) between pred and target [S, V, 3] after the
    least-squares similarity taking pred onto target (ideal alignment)."""
    p, t = pred.double(), target.double()
    s, r, tr = similarity_transform(p, t)
    return (apply_similarity(p, s, r, tr) - t).norm(dim=-1).mean(-1).to(pred.dtype)


class Validator:
    """Accumulates the validation metrics of one rank's shard; scans are built once
    and kept (by sample name), and the mean face's NoW error is computed once."""

    def __init__(self, morphable: MorphableModel, cfg: Config):
        self.morphable, self.cfg = morphable, cfg
        self.face_model = morphable.face_model
        self.has_now7 = "now7" in self.face_model.extra_landmarks
        self.now_baseline: float | None = None  # the mean face's NoW-style error (mm), fixed
        self._scans: dict[str, Scan | None] = {}

    def scan(self, cpu_batch: dict, j: int, index: int) -> Scan | None:
        """Sample j's scan (index: its index in the validation split), or None when it
        has no ground truth (then it is measured by the loss terms only)."""
        name = cpu_batch["name"][j] if "name" in cpu_batch else str(index)
        if name not in self._scans:
            if "gt_shape" in cpu_batch:
                self._scans[name] = synthetic_scan(cpu_batch["gt_shape"][j].numpy(), self.face_model, self.cfg.eval,
                                                   index)
            elif "mesh_path" in cpu_batch and "landmarks3d" in cpu_batch:
                try:
                    self._scans[name] = pixel_face_scan(name, cpu_batch["mesh_path"][j],
                                                        cpu_batch["landmarks3d"][j].numpy())
                except UserError:  # no validation mesh for this sample
                    self._scans[name] = None
            else:
                self._scans[name] = None
        return self._scans[name]

    @staticmethod
    def new_sums() -> dict:
        """Empty accumulators; every rank starts with the same keys (all-reduced)."""
        return dict.fromkeys(("count", "now", "now_points", "now_mean_face", "now_mean_face_points"), 0.0)

    def batch(self, sums: dict, batch: dict, cpu_batch: dict, coeffs: FaceCoefficients, indices: list[int]):
        """Add one batch (on the device; cpu_batch: the same on the CPU, with names and
        paths) to `sums`; returns the loss result (for image grids)."""
        result = multiview_losses(self.morphable, coeffs, batch, self.cfg.loss, self.cfg.render, True)
        b = batch["rgb"].shape[0]
        sums["count"] += b
        for key, value in result.terms.items():
            sums[f"val/{key}"] = sums.get(f"val/{key}", 0.0) + value.item() * b
        pred = evaluated_shape(self.morphable, coeffs, batch["view_mask"])
        mean_face = self.morphable.mean_shape.reshape(-1, 3)
        if "gt_shape" in batch:
            gt = batch["gt_shape"].float()
            sums["vertex"] = sums.get("vertex", 0.0) + aligned_vertex_error(pred, gt).sum().item()
            sums["vertex_mean_face"] = (sums.get("vertex_mean_face", 0.0)
                                        + aligned_vertex_error(mean_face.expand_as(gt), gt).sum().item())
        for j in range(b if self.has_now7 else 0):
            scan = self.scan(cpu_batch, j, indices[j])
            if scan is None:
                continue
            verts = pred[j].detach().cpu().double().numpy()
            if np.isfinite(verts).all():
                distances = measure(verts, self.face_model, scan, self.cfg.eval).distances
                sums["now"] += float(distances.sum())
                sums["now_points"] += float(distances.size)
            else:  # a diverged prediction: a NaN metric, not an exception in the alignment
                sums["now"] += float("nan")
                sums["now_points"] += 1.0
            if self.now_baseline is None:
                base = measure(mean_face.detach().cpu().double().numpy(), self.face_model, scan, self.cfg.eval).distances
                sums["now_mean_face"] += float(base.sum())
                sums["now_mean_face_points"] += float(base.size)
        return result

    def metrics(self, totals: dict) -> dict:
        """The metrics from `sums` added over every rank:

        - val/<term>, val/total: the unweighted loss terms (parsing included) and the
          weighted total, mean over samples;
        - val/vertex_error_mm, val/mean_face_error_mm: mean vertex distance after the
          ideal similarity alignment, with ground-truth meshes (`gt_shape`);
        - val/now_error_mm, val/now_mean_face_error_mm: NoW-style mean distance (mm)
          pooled over all scan points, as test_pixel_face.py's summary."""
        n = max(totals["count"], 1.0)
        metrics = {k: v / n for k, v in totals.items() if k.startswith("val/")}
        if "vertex" in totals:
            metrics["val/vertex_error_mm"] = totals["vertex"] / n
            metrics["val/mean_face_error_mm"] = totals["vertex_mean_face"] / n
        if totals["now_points"] > 0:
            if self.now_baseline is None:
                self.now_baseline = totals["now_mean_face"] / totals["now_mean_face_points"]
            metrics["val/now_error_mm"] = totals["now"] / totals["now_points"]
            metrics["val/now_mean_face_error_mm"] = self.now_baseline
        return metrics


def validation_summary(m: dict) -> str:
    """The validation part of an epoch line: errors next to the mean face's."""
    parts = []
    for key, base, label in (("val/now_error_mm", "val/now_mean_face_error_mm", "NoW-style error"),
                             ("val/vertex_error_mm", "val/mean_face_error_mm", "aligned vertex error")):
        if key in m:
            gain = 100 * (1 - m[key] / m[base])
            direction = "lower" if gain >= 0 else "higher"
            parts.append(f"{label} {m[key]:.3f} mm (mean face {m[base]:.3f}: {abs(gain):.1f}% {direction})")
    if not parts and "val/total" in m:
        parts.append(f"loss {m['val/total']:.4g}")
    return " " + ", ".join(parts)
