"""The fast CPU backend: scanline-free bounding-box rasterization and the analytic
gradients of the barycentrics and of interpolation, JIT-compiled with numba.

Same rules as `lib.render.rasterize` and the torch backend (pixel centres, top-left
rule with edge functions from the endpoints in vertex-index order, z-test on the true
depth, ties to the lower face index), computed with the same floating-point
operations, so the face index is the same. The work is split over Python threads
(up to torch.get_num_threads(); the kernels release the GIL): image rows in the
forward kernels, whole views in the backward ones (see `lib.jit.split_run`). The kernels
are compiled once per dtype (float32 / float64) and cached on disk (numba's cache,
next to this file).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from numba import njit

from lib.jit import as_numpy, split_run
from lib.render.constants import MIN_AREA2, NEAR_DEPTH


@njit(cache=True, inline="always")
def _edge(ax, ay, bx, by, px, py):
    return (bx - ax) * (py - ay) - (by - ay) * (px - ax)


@njit(cache=True, inline="always")
def _edge_setup(ia, ib, ax, ay, bx, by, flip):
    """Edge a -> b of a triangle (flip: its area2 is negative) as the edge function
    e(p) = dx (py - oy) - dy (px - ox), negated when `neg`, positive inside.

    Taken from the endpoint with the lower vertex index, so that the two triangles of
    a shared edge get exactly opposite values (watertight). Returns (ox, oy, dx, dy,
    neg, top_left); top_left: the edge, oriented with the inside on its positive
    side, is a top edge (horizontal, going +u) or a left edge (going up, -v).
    """
    if ia < ib:
        ox, oy, dx, dy, neg = ax, ay, bx - ax, by - ay, flip
    else:
        ox, oy, dx, dy, neg = bx, by, ax - bx, ay - by, not flip
    tx, ty = (-dx, -dy) if neg else (dx, dy)
    return ox, oy, dx, dy, neg, ty < 0 or (ty == 0 and tx > 0)


@njit(cache=True, inline="always")
def _edge_value(ox, oy, dx, dy, neg, px, py):
    e = dx * (py - oy) - dy * (px - ox)
    return -e if neg else e


@njit(cache=True, inline="always")
def _inside(e, top_left):
    return e > 0 or (e == 0 and top_left)


@njit(nogil=True, cache=True)
def _rasterize_kernel(screen, faces, cols, rows, cull, near, min_area2, face_index, bary, start, stop):
    """screen [B, V, 3], faces [F, 3], pixel-centre coordinates cols [W], rows [H]
    (screen's dtype, so every product is taken in that precision as in the torch
    backend) -> fills face_index [B, H, W] and bary [B, H, W, 3] on the image rows
    start <= n * H + row < stop (rows of all views numbered one after the other)."""
    height, width = rows.shape[0], cols.shape[0]
    num_faces = faces.shape[0]
    one = screen.dtype.type(1)  # a plain 1 would promote float32 arithmetic to float64
    for n in range(start // height, (stop - 1) // height + 1):
        row_lo, row_hi = max(start - n * height, 0), min(stop - n * height, height)
        inv_depth = np.zeros((height, width), dtype=screen.dtype)
        fi = face_index[n]
        out = bary[n]
        fi[row_lo:row_hi, :] = -1
        out[row_lo:row_hi, :, :] = 0
        for f in range(num_faces):
            i0, i1, i2 = faces[f, 0], faces[f, 1], faces[f, 2]
            x0, y0, z0 = screen[n, i0, 0], screen[n, i0, 1], screen[n, i0, 2]
            x1, y1, z1 = screen[n, i1, 0], screen[n, i1, 1], screen[n, i1, 2]
            x2, y2, z2 = screen[n, i2, 0], screen[n, i2, 1], screen[n, i2, 2]
            # Written as 'not (ok)' so that NaN depths are discarded too.
            if not (near < z0 < math.inf and near < z1 < math.inf and near < z2 < math.inf):
                continue
            # Pixel rows / columns whose centres lie in the bounding box, clipped in
            # floating point before the integer conversion (huge u, v). Most
            # triangles of a dense mesh contain no pixel centre: tested first.
            col0 = max(0.0, np.ceil(min(x0, x1, x2) - 0.5))
            col1 = min(width - 1.0, np.floor(max(x0, x1, x2) - 0.5))
            if not (col0 <= col1):
                continue
            row0 = max(float(row_lo), np.ceil(min(y0, y1, y2) - 0.5))
            row1 = min(row_hi - 1.0, np.floor(max(y0, y1, y2) - 0.5))
            if not (row0 <= row1):
                continue
            area2 = _edge(x0, y0, x1, y1, x2, y2)
            # Also false for NaN / infinite area, i.e. for any non-finite u or v.
            if not (min_area2 < abs(area2) < math.inf):
                continue
            if cull and area2 > 0:
                continue
            flip = area2 < 0
            ox0, oy0, dx0, dy0, neg0, tl0 = _edge_setup(i1, i2, x1, y1, x2, y2, flip)
            ox1, oy1, dx1, dy1, neg1, tl1 = _edge_setup(i2, i0, x2, y2, x0, y0, flip)
            ox2, oy2, dx2, dy2, neg2, tl2 = _edge_setup(i0, i1, x0, y0, x1, y1, flip)
            inv_area = one / (-area2 if flip else area2)
            iz0, iz1, iz2 = one / z0, one / z1, one / z2
            for row in range(int(row0), int(row1) + 1):
                py = rows[row]
                for col in range(int(col0), int(col1) + 1):
                    px = cols[col]
                    e0 = _edge_value(ox0, oy0, dx0, dy0, neg0, px, py)
                    if not _inside(e0, tl0):
                        continue
                    e1 = _edge_value(ox1, oy1, dx1, dy1, neg1, px, py)
                    if not _inside(e1, tl1):
                        continue
                    e2 = _edge_value(ox2, oy2, dx2, dy2, neg2, px, py)
                    if not _inside(e2, tl2):
                        continue
                    # q_k = lambda_k / z_k up to the factor area2; the true inverse
                    # depth is sum(q) / |area2| (same operations as the torch backend).
                    q0, q1, q2 = e0 * iz0, e1 * iz1, e2 * iz2
                    total = q0 + q1 + q2
                    inv_depth_here = total * inv_area
                    if inv_depth_here > inv_depth[row, col]:
                        inv_depth[row, col] = inv_depth_here
                        fi[row, col] = f
                        inv_total = one / total
                        out[row, col, 0] = q0 * inv_total
                        out[row, col, 1] = q1 * inv_total
                        out[row, col, 2] = q2 * inv_total


@njit(nogil=True, cache=True)
def _barycentrics_backward_kernel(screen, faces, cols, rows, face_index, grad_bary, grad_screen, start, stop):
    """Accumulates d loss / d screen [B, V, 3] from d loss / d barycentrics [B, H, W, 3]."""
    height, width = face_index.shape[1], face_index.shape[2]
    one = screen.dtype.type(1)
    for n in range(start, stop):
        for row in range(height):
            py = rows[row]
            for col in range(width):
                f = face_index[n, row, col]
                if f < 0:
                    continue
                g0, g1, g2 = grad_bary[n, row, col, 0], grad_bary[n, row, col, 1], grad_bary[n, row, col, 2]
                if g0 == 0 and g1 == 0 and g2 == 0:
                    continue
                px = cols[col]
                i0, i1, i2 = faces[f, 0], faces[f, 1], faces[f, 2]
                x0, y0, z0 = screen[n, i0, 0], screen[n, i0, 1], screen[n, i0, 2]
                x1, y1, z1 = screen[n, i1, 0], screen[n, i1, 1], screen[n, i1, 2]
                x2, y2, z2 = screen[n, i2, 0], screen[n, i2, 1], screen[n, i2, 2]
                inv_area = one / _edge(x0, y0, x1, y1, x2, y2)
                inv_z0, inv_z1, inv_z2 = one / z0, one / z1, one / z2
                l0 = _edge(x1, y1, x2, y2, px, py) * inv_area
                l1 = _edge(x2, y2, x0, y0, px, py) * inv_area
                l2 = _edge(x0, y0, x1, y1, px, py) * inv_area
                q0, q1, q2 = l0 * inv_z0, l1 * inv_z1, l2 * inv_z2
                inv_total = one / (q0 + q1 + q2)
                b0, b1, b2 = q0 * inv_total, q1 * inv_total, q2 * inv_total
                # b = q / sum(q), q = lambda / z, lambda = E / area2 (chain rule).
                mean = g0 * b0 + g1 * b1 + g2 * b2
                gq0, gq1, gq2 = (g0 - mean) * inv_total, (g1 - mean) * inv_total, (g2 - mean) * inv_total
                gl0, gl1, gl2 = gq0 * inv_z0, gq1 * inv_z1, gq2 * inv_z2
                grad_screen[n, i0, 2] -= gl0 * q0
                grad_screen[n, i1, 2] -= gl1 * q1
                grad_screen[n, i2, 2] -= gl2 * q2
                ge0, ge1, ge2 = gl0 * inv_area, gl1 * inv_area, gl2 * inv_area
                garea = -(gl0 * l0 + gl1 * l1 + gl2 * l2) * inv_area
                # d E(a, b, p) / d (ax, ay, bx, by) = (by - py, px - bx, py - ay, ax - px);
                # area2 = E(p0, p1, p2).
                gx0 = ge1 * (py - y2) + ge2 * (y1 - py) + garea * (y1 - y2)
                gy0 = ge1 * (x2 - px) + ge2 * (px - x1) + garea * (x2 - x1)
                gx1 = ge0 * (y2 - py) + ge2 * (py - y0) + garea * (y2 - y0)
                gy1 = ge0 * (px - x2) + ge2 * (x0 - px) + garea * (x0 - x2)
                gx2 = ge0 * (py - y1) + ge1 * (y0 - py) + garea * (y0 - y1)
                gy2 = ge0 * (x1 - px) + ge1 * (px - x0) + garea * (x1 - x0)
                grad_screen[n, i0, 0] += gx0
                grad_screen[n, i0, 1] += gy0
                grad_screen[n, i1, 0] += gx1
                grad_screen[n, i1, 1] += gy1
                grad_screen[n, i2, 0] += gx2
                grad_screen[n, i2, 1] += gy2


@njit(nogil=True, cache=True)
def _interpolate_kernel(attributes, faces, face_index, bary, out, start, stop):
    """Fills out [B, H, W, C] on the image rows start <= n * H + row < stop."""
    height, width = face_index.shape[1], face_index.shape[2]
    channels = attributes.shape[2]
    for flat_row in range(start, stop):
        n, row = flat_row // height, flat_row % height
        for col in range(width):
            f = face_index[n, row, col]
            if f < 0:
                for c in range(channels):
                    out[n, row, col, c] = 0
                continue
            i0, i1, i2 = faces[f, 0], faces[f, 1], faces[f, 2]
            b0, b1, b2 = bary[n, row, col, 0], bary[n, row, col, 1], bary[n, row, col, 2]
            for c in range(channels):
                out[n, row, col, c] = b0 * attributes[n, i0, c] + b1 * attributes[n, i1, c] + b2 * attributes[n, i2, c]


@njit(nogil=True, cache=True)
def _interpolate_backward_kernel(
    attributes, faces, face_index, bary, grad_out, want_attr, want_bary, grad_attr, grad_bary, start, stop
):
    height, width = face_index.shape[1], face_index.shape[2]
    channels = attributes.shape[2]
    for n in range(start, stop):
        for row in range(height):
            for col in range(width):
                f = face_index[n, row, col]
                if f < 0:
                    if want_bary:
                        grad_bary[n, row, col, 0] = grad_bary[n, row, col, 1] = grad_bary[n, row, col, 2] = 0
                    continue
                i0, i1, i2 = faces[f, 0], faces[f, 1], faces[f, 2]
                b0, b1, b2 = bary[n, row, col, 0], bary[n, row, col, 1], bary[n, row, col, 2]
                s0 = s1 = s2 = 0.0
                for c in range(channels):
                    g = grad_out[n, row, col, c]
                    if want_attr:
                        grad_attr[n, i0, c] += b0 * g
                        grad_attr[n, i1, c] += b1 * g
                        grad_attr[n, i2, c] += b2 * g
                    s0 += g * attributes[n, i0, c]
                    s1 += g * attributes[n, i1, c]
                    s2 += g * attributes[n, i2, c]
                if want_bary:
                    grad_bary[n, row, col, 0] = s0
                    grad_bary[n, row, col, 1] = s1
                    grad_bary[n, row, col, 2] = s2


def _centres(count: int, dtype) -> np.ndarray:
    """Pixel-centre coordinates 0.5, 1.5, ... [count] in dtype."""
    return np.arange(count, dtype=dtype) + dtype.type(0.5)


class _Rasterize(torch.autograd.Function):
    @staticmethod
    def forward(ctx, screen_xyz, faces, height, width, cull_backfaces):
        screen = as_numpy(screen_xyz)
        batch = screen.shape[0]
        face_index = np.empty((batch, height, width), dtype=np.int64)
        bary = np.empty((batch, height, width, 3), dtype=screen.dtype)
        cols, rows = _centres(width, screen.dtype), _centres(height, screen.dtype)
        args = (screen, as_numpy(faces), cols, rows, bool(cull_backfaces), NEAR_DEPTH, MIN_AREA2, face_index, bary)
        split_run(_rasterize_kernel, batch * height, *args)
        face_index = torch.from_numpy(face_index)
        ctx.save_for_backward(screen_xyz, faces, face_index)
        ctx.mark_non_differentiable(face_index)
        return face_index, torch.from_numpy(bary)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, _grad_face_index, grad_bary):
        screen_xyz, faces, face_index = ctx.saved_tensors
        screen = as_numpy(screen_xyz)
        grad_screen = np.zeros_like(screen)
        batch, height, width = face_index.shape
        cols, rows = _centres(width, screen.dtype), _centres(height, screen.dtype)
        grad = as_numpy(grad_bary.to(screen_xyz.dtype))
        split_run(
            _barycentrics_backward_kernel, batch, screen, as_numpy(faces), cols, rows, as_numpy(face_index), grad,
            grad_screen,
        )
        return torch.from_numpy(grad_screen), None, None, None, None


class _Interpolate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, attributes, faces, face_index, barycentrics):
        attr = as_numpy(attributes)
        batch, height, width = face_index.shape
        out = np.empty((batch, height, width, attr.shape[2]), dtype=attr.dtype)
        split_run(
            _interpolate_kernel, batch * height, attr, as_numpy(faces), as_numpy(face_index), as_numpy(barycentrics), out
        )
        ctx.save_for_backward(attributes, faces, face_index, barycentrics)
        return torch.from_numpy(out)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        attributes, faces, face_index, barycentrics = ctx.saved_tensors
        want_attr, want_bary = ctx.needs_input_grad[0], ctx.needs_input_grad[3]
        attr = as_numpy(attributes)
        bary = as_numpy(barycentrics)
        # Unwanted gradients get an empty stand-in of the same type (no allocation);
        # grad_bary is written at every pixel, so it needs no zero fill.
        grad_attr = np.zeros_like(attr) if want_attr else np.empty((0, 0, 0), dtype=attr.dtype)
        grad_bary = np.empty_like(bary) if want_bary else np.empty((0, 0, 0, 3), dtype=bary.dtype)
        grad = as_numpy(grad_out.to(attributes.dtype))
        batch = attr.shape[0]
        split_run(
            _interpolate_backward_kernel, batch, attr, as_numpy(faces), as_numpy(face_index), bary, grad,
            want_attr, want_bary, grad_attr, grad_bary,
        )
        return (
            torch.from_numpy(grad_attr) if want_attr else None,
            None,
            None,
            torch.from_numpy(grad_bary) if want_bary else None,
        )


def rasterize_numba(
    screen_xyz: torch.Tensor, faces: torch.Tensor, image_size: tuple[int, int], cull_backfaces: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Face index [B, H, W] and perspective-correct barycentrics [B, H, W, 3] of CPU
    screen_xyz [B, V, 3] (float32 or float64), differentiable w.r.t. screen_xyz."""
    return _Rasterize.apply(screen_xyz, faces, int(image_size[0]), int(image_size[1]), bool(cull_backfaces))


def interpolate_numba(
    attributes: torch.Tensor, faces: torch.Tensor, face_index: torch.Tensor, barycentrics: torch.Tensor
) -> torch.Tensor:
    """`lib.render.interpolate` for CPU tensors; barycentrics take attributes' dtype."""
    return _Interpolate.apply(attributes, faces, face_index, barycentrics.to(attributes.dtype))
