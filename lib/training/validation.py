"""Validation metrics on data with ground-truth meshes in the face model's topology:
the mean vertex distance (mm) after the best similarity alignment of the prediction
to the ground truth (cheap, every validation), and the NoW-style scan-to-mesh mean
distance of `lib.evaluation` (at the end of training)."""
from __future__ import annotations

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


def now_style_error(
    pred: torch.Tensor, target: torch.Tensor, faces: torch.Tensor, now7: torch.Tensor, options: EvalConfig
) -> list[float]:
    """NoW-style mean scan-to-mesh distance (mm) per sample via `lib.evaluation`: the
    ground-truth mesh's vertices play the scan (cropped around its 7 NoW points), the
    prediction is aligned by its 7 points and the rigid + scale refinement.

    pred, target [S, V, 3] mm in the face model's topology; faces [F, 3]; now7 [7]
    vertex indices (face_model.extra_landmarks['now7']).
    """
    errors = []
    faces_np, idx = faces.cpu().numpy(), now7.cpu().numpy()
    for p, t in zip(pred.detach().cpu().double().numpy(), target.detach().cpu().double().numpy()):
        result = now_scan_to_mesh(t, t[idx], p, faces_np, p[idx], options)
        errors.append(float(result.distances.mean()))
    return errors
