"""Least-squares similarity transforms (Umeyama) between corresponding point sets,
batched torch: the 3D-landmark loss and the validation's ideal alignment use them."""
from __future__ import annotations

import torch


def similarity_transform(source: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Least-squares similarity (Umeyama) taking source points onto target points.

    source, target [N, P, 3]. Returns (scale [N], rotation [N, 3, 3], translation
    [N, 3]) with target ~ scale * source @ R^T + t. Needs P >= 3 non-collinear points.
    Rows with a non-finite point get NaN outputs (the SVD would raise): a diverged
    prediction then gives a NaN loss that the training's NaN guard handles.
    """
    mu_s, mu_t = source.mean(1, keepdim=True), target.mean(1, keepdim=True)
    xs, xt = source - mu_s, target - mu_t
    cov = xt.transpose(1, 2) @ xs / source.shape[1]
    finite = torch.isfinite(cov).all(-1).all(-1)  # [N]
    eye = torch.eye(3, dtype=cov.dtype, device=cov.device).expand_as(cov)
    cov = torch.where(finite[:, None, None], cov, eye)
    u, sig, vh = torch.linalg.svd(cov)
    det = torch.det(u @ vh)
    d = torch.ones_like(sig)
    d[:, 2] = torch.sign(det) + (det == 0).to(det.dtype)
    rotation = u @ torch.diag_embed(d) @ vh
    var_s = (xs**2).sum((1, 2)) / source.shape[1]
    scale = (sig * d).sum(-1) / var_s.clamp_min(1e-12)
    translation = mu_t[:, 0] - scale[:, None] * torch.einsum("nij,nj->ni", rotation, mu_s[:, 0])
    nan = torch.tensor(float("nan"), dtype=cov.dtype, device=cov.device)
    return (torch.where(finite, scale, nan), torch.where(finite[:, None, None], rotation, nan),
            torch.where(finite[:, None], translation, nan))


def apply_similarity(points: torch.Tensor, scale: torch.Tensor, rotation: torch.Tensor, translation: torch.Tensor) -> torch.Tensor:
    """points [N, P, 3] -> scale * R p + t."""
    return scale[:, None, None] * points @ rotation.transpose(1, 2) + translation[:, None, :]
