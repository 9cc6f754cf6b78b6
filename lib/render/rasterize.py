"""Deferred rasterization: a discrete face-index pass, then differentiable barycentrics.

Conventions (doc/renderer.md):

- screen_xyz [B, V, 3] = (u px, v px, depth), depth = camera distance (D - z mm),
  smaller is nearer; pixel (row i, col j) is sampled at (u, v) = (j + 0.5, i + 0.5).
- Coverage: a pixel centre is inside a triangle when its three edge functions have
  the triangle's sign; centres exactly on an edge follow the top-left rule, and each
  edge function is evaluated from the edge's endpoints in vertex-index order, so two
  triangles sharing an edge get exactly opposite values there: no pixel is drawn
  twice or dropped along a shared edge (watertight).
- Barycentrics are perspective-corrected (interpolation is linear in 3D, not on
  screen) from the screen-space ones with the per-vertex depth; the z-test compares
  the true depth at the pixel centre, 1 / sum(lambda_k / depth_k). Exact depth ties
  go to the lower face index.
- Discarded triangles: any vertex with depth <= NEAR_DEPTH or non-finite
  coordinates, twice-area |area2| <= MIN_AREA2 px^2 (degenerate), no pixel centre in
  the bounding box (off-screen), and with `cull_backfaces` those facing away.

Only the face-index pass is discrete (no gradient); the barycentrics of covered
pixels are a differentiable function of their triangle's corners, so gradients flow
to screen_xyz (u, v and depth) through them, as in nvdiffrast. The torch backend
recomputes them in torch from the gathered corners (autograd); the numba backend
computes them in its pass and has the analytic backward. There is no gradient for a
pixel changing triangle (no silhouette/antialiasing gradient).
"""
from __future__ import annotations

import torch

from lib.errors import UserError
from lib.jit import numba_suits
from lib.render.constants import BACKENDS, MIN_AREA2, edge_function

def rasterize(
    screen_xyz: torch.Tensor,
    faces: torch.Tensor,
    image_size: tuple[int, int],
    cull_backfaces: bool = False,
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rasterize B meshes sharing one topology.

    screen_xyz: float [B, V, 3] (u px, v px, depth, smaller is nearer).
    faces: long [F, 3]. image_size: (H, W) pixels.
    cull_backfaces: drop triangles that appear clockwise in the image, i.e. with
        area2 = (u1-u0)(v2-v0) - (v1-v0)(u2-u0) > 0 (v points down); with the
        project's faces, counter-clockwise seen from outside, those face away.
    backend: 'auto' (numba for CPU tensors when installed, else torch), 'torch' or
        'numba'; both follow the same rules with the same floating-point operations
        for coverage and the z-test, so they give the same face index.

    Returns face_index long [B, H, W] (-1 = background) and barycentrics
    [B, H, W, 3] (perspective-corrected, dtype of screen_xyz, 0 on background),
    differentiable w.r.t. screen_xyz.
    """
    if screen_xyz.dim() != 3 or screen_xyz.shape[-1] != 3:
        raise ValueError(f"screen_xyz must be [B, V, 3], got {tuple(screen_xyz.shape)}")
    if faces.dim() != 2 or faces.shape[-1] != 3:
        raise ValueError(f"faces must be [F, 3], got {tuple(faces.shape)}")
    height, width = int(image_size[0]), int(image_size[1])
    faces = faces.to(device=screen_xyz.device, dtype=torch.long)
    if faces.numel() and (int(faces.min()) < 0 or int(faces.max()) >= screen_xyz.shape[1]):
        raise ValueError(f"faces index vertices outside [0, {screen_xyz.shape[1]})")
    if resolve_backend(backend, screen_xyz) == "numba":
        from lib.render.numba_backend import rasterize_numba

        return rasterize_numba(screen_xyz, faces, (height, width), cull_backfaces)
    from lib.render.torch_backend import face_index_torch

    with torch.no_grad():
        face_index = face_index_torch(screen_xyz.detach(), faces, (height, width), cull_backfaces)
    return face_index, barycentrics_from_face_index(screen_xyz, faces, face_index)


def resolve_backend(backend: str, tensor: torch.Tensor) -> str:
    """'auto' -> 'numba' for float32/float64 CPU tensors when numba is installed,
    else 'torch'; an explicit choice is checked against the tensor."""
    if backend not in BACKENDS:
        raise UserError(f"render.backend '{backend}' is not one of {', '.join(BACKENDS)}")
    if backend == "auto":
        return "numba" if numba_suits(tensor) else "torch"
    if backend == "numba" and not numba_suits(tensor):
        raise UserError(
            "render.backend 'numba' needs float32/float64 CPU tensors and the numba package; use 'auto' or 'torch'"
        )
    return backend


def barycentrics_from_face_index(
    screen_xyz: torch.Tensor, faces: torch.Tensor, face_index: torch.Tensor
) -> torch.Tensor:
    """Perspective-correct barycentrics [B, H, W, 3] of the pixel centres in their
    triangle, recomputed differentiably from screen_xyz [B, V, 3]; 0 on background."""
    batch, height, width = face_index.shape
    num_vertices = screen_xyz.shape[1]
    flat = face_index.reshape(-1)
    pixel = torch.nonzero(flat >= 0).squeeze(1)
    face = flat[pixel]
    image = torch.div(pixel, height * width, rounding_mode="floor")
    within = pixel - image * (height * width)
    py = torch.div(within, width, rounding_mode="floor").to(screen_xyz.dtype) + 0.5
    px = (within % width).to(screen_xyz.dtype) + 0.5
    corners = screen_xyz.reshape(-1, 3)[faces[face] + (image * num_vertices)[:, None]]  # [N, 3 corners, 3]
    x, y, depth = corners.unbind(-1)
    x0, x1, x2 = x.unbind(-1)
    y0, y1, y2 = y.unbind(-1)
    area2 = edge_function(x0, y0, x1, y1, x2, y2)
    # Covered pixels never belong to degenerate triangles; the guard only keeps the
    # division finite for the float32 round-off of near-slivers.
    area2 = torch.where(area2.abs() > MIN_AREA2, area2, torch.full_like(area2, MIN_AREA2))
    screen_bary = torch.stack(
        [
            edge_function(x1, y1, x2, y2, px, py),
            edge_function(x2, y2, x0, y0, px, py),
            edge_function(x0, y0, x1, y1, px, py),
        ],
        dim=-1,
    ) / area2[:, None]
    weighted = screen_bary / depth
    total = weighted.sum(-1, keepdim=True)
    total = torch.where(total.abs() > 1e-30, total, torch.full_like(total, 1e-30))
    bary = weighted / total
    out = torch.zeros(batch * height * width, 3, dtype=screen_xyz.dtype, device=screen_xyz.device)
    return out.index_copy(0, pixel, bary).reshape(batch, height, width, 3)
