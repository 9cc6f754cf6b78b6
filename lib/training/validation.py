"""Validation metrics: the mean vertex distance (mm) after the best similarity
alignment of the prediction to a ground-truth mesh in the face model's topology
(synthetic data), and the NoW-style scan-to-mesh mean distance of `lib.evaluation`
against either such a mesh (its vertices as the scan) or a Pixel-Face validation
scan."""
from __future__ import annotations

import numpy as np
import torch

from lib.config.schema import EvalConfig
from lib.evaluation import now_scan_to_mesh
from lib.losses.terms import apply_similarity, similarity_transform


def aligned_vertex_error(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean per-vertex distance [S] (mm) between pred and target [S, V, 3] after the
    least-squares similarity taking pred onto target (ideal alignment)."""
    p, t = pred.double(), target.double()
    s, r, tr = similarity_transform(p, t)
    return (apply_similarity(p, s, r, tr) - t).norm(dim=-1).mean(-1).to(pred.dtype)


def scan_error(
    pred: torch.Tensor, scan: np.ndarray, scan_now7: np.ndarray, faces: torch.Tensor, now7: torch.Tensor,
    options: EvalConfig,
) -> float:
    """NoW-style mean distance (mm) from the scan points [N, 3] (cropped around their 7
    NoW landmarks scan_now7 [7, 3]) to the predicted mesh pred [V, 3] (faces [F, 3];
    its 7 points are the vertices now7 [7]) after the NoW alignment; NaN for a
    non-finite prediction (the alignment's SVD would raise)."""
    verts = pred.detach().cpu().double().numpy()
    if not np.isfinite(verts).all():
        return float("nan")
    result = now_scan_to_mesh(scan, scan_now7, verts, faces.cpu().numpy(), verts[now7.cpu().numpy()], options)
    return float(result.distances.mean())
