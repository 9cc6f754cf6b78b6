"""The straightforward vectorized face-index pass in plain torch (any device).

Every kept triangle expands into the pixel centres of its bounding box (candidate
pairs), each pair is tested with the edge functions, and the z-test is two
scatter-reduce passes: the largest inverse depth (nearest surface) per pixel, then
the lowest face index among the candidates at that depth. Memory and time grow with the summed bounding-box
area, which is small for dense meshes (a face mesh at 224 px has ~1-2 pixels per box).
"""
from __future__ import annotations

import torch

from lib.render.constants import MIN_AREA2, NEAR_DEPTH, edge_function


def triangle_setup(screen_xyz: torch.Tensor, faces: torch.Tensor, cull_backfaces: bool):
    """Per-triangle data of B meshes: screen_xyz [B, V, 3], faces long [F, 3].

    Returns corners [B, F, 3, 3] (u, v, depth of each corner), area2 [B, F] (twice
    the signed screen area, positive = clockwise on screen since v points down) and
    keep bool [B, F] (finite, in front of the near plane, not degenerate, not culled).
    """
    corners = screen_xyz[:, faces]
    x, y, depth = corners.unbind(-1)
    area2 = edge_function(x[..., 0], y[..., 0], x[..., 1], y[..., 1], x[..., 2], y[..., 2])
    keep = torch.isfinite(corners).all(-1).all(-1) & (depth > NEAR_DEPTH).all(-1) & (area2.abs() > MIN_AREA2)
    if cull_backfaces:
        keep &= area2 < 0
    return corners, area2, keep


def face_index_torch(
    screen_xyz: torch.Tensor, faces: torch.Tensor, image_size: tuple[int, int], cull_backfaces: bool
) -> torch.Tensor:
    """Nearest face per pixel, long [B, H, W] (-1 background); see rasterize()."""
    height, width = image_size
    batch = screen_xyz.shape[0]
    device = screen_xyz.device
    corners, area2, keep = triangle_setup(screen_xyz, faces, cull_backfaces)
    x, y = corners[..., 0], corners[..., 1]
    # Pixel columns j with j + 0.5 in [min u, max u], clipped to the image.
    col0 = torch.ceil(x.amin(-1) - 0.5).clamp(0, width)
    col1 = torch.floor(x.amax(-1) - 0.5).clamp(-1, width - 1)
    row0 = torch.ceil(y.amin(-1) - 0.5).clamp(0, height)
    row1 = torch.floor(y.amax(-1) - 0.5).clamp(-1, height - 1)
    ncol = (col1 - col0 + 1).clamp(min=0).long()
    nrow = (row1 - row0 + 1).clamp(min=0).long()
    keep &= (ncol > 0) & (nrow > 0)
    tri = torch.nonzero(keep.reshape(-1)).squeeze(1)  # flat (image, face) ids
    counts = (ncol * nrow).reshape(-1)[tri]
    owner = torch.repeat_interleave(torch.arange(tri.numel(), device=device), counts)
    start = torch.cumsum(counts, 0) - counts
    offset = torch.arange(owner.numel(), device=device) - start[owner]
    tri_owner = tri[owner]
    ncol_o = ncol.reshape(-1)[tri_owner]
    col = col0.reshape(-1)[tri_owner].long() + offset % ncol_o
    row = row0.reshape(-1)[tri_owner].long() + torch.div(offset, ncol_o, rounding_mode="floor")
    px = col.to(x.dtype) + 0.5
    py = row.to(x.dtype) + 0.5

    num_faces = faces.shape[0]
    face = tri_owner % num_faces
    image = torch.div(tri_owner, num_faces, rounding_mode="floor")
    c = corners.reshape(-1, 3, 3)[tri_owner]  # [N, corner, (u, v, depth)]
    sign = torch.sign(area2.reshape(-1)[tri_owner])
    inside = torch.ones_like(px, dtype=torch.bool)
    screen_bary = []
    for k in range(3):
        a, b = (k + 1) % 3, (k + 2) % 3
        # The edge function from the endpoints in vertex-index order (watertight).
        swap = faces[face, a] > faces[face, b]
        lo, hi = torch.where(swap, b, a), torch.where(swap, a, b)
        lo_c = c.gather(1, lo[:, None, None].expand(-1, 1, 3)).squeeze(1)
        hi_c = c.gather(1, hi[:, None, None].expand(-1, 1, 3)).squeeze(1)
        e = edge_function(lo_c[:, 0], lo_c[:, 1], hi_c[:, 0], hi_c[:, 1], px, py)
        e = torch.where(swap, -e, e) * sign
        # Top-left rule for the edge a -> b of the positively oriented triangle.
        dx = (c[:, b, 0] - c[:, a, 0]) * sign
        dy = (c[:, b, 1] - c[:, a, 1]) * sign
        top_left = (dy < 0) | ((dy == 0) & (dx > 0))
        inside &= (e > 0) | ((e == 0) & top_left)
        screen_bary.append(e)
    # q_k = lambda_k / z_k up to the factor area2: the true inverse depth at the pixel
    # centre is sum(q) / |area2| (the numba backend uses the same operations).
    q = torch.stack(screen_bary, -1) * (1 / c[:, :, 2])
    inv_depth = (q[:, 0] + q[:, 1] + q[:, 2]) * (1 / (area2.reshape(-1)[tri_owner] * sign))
    pixel = (image * height + row) * width + col
    pixel, face, inv_depth = pixel[inside], face[inside], inv_depth[inside]

    size = batch * height * width
    best = torch.zeros(size, dtype=inv_depth.dtype, device=device)
    best = best.scatter_reduce(0, pixel, inv_depth, reduce="amax", include_self=True)
    winner = inv_depth == best[pixel]
    result = torch.full((size,), num_faces, dtype=torch.long, device=device)
    result = result.scatter_reduce(0, pixel[winner], face[winner], reduce="amin", include_self=True)
    result = torch.where(result == num_faces, torch.full_like(result, -1), result)
    return result.reshape(batch, height, width)
