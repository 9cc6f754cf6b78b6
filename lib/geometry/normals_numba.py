"""Vertex normals on the CPU with numba: forward and the analytic backward.

The same function as `lib.geometry.normals.vertex_normals_torch` (normalised sum of
the adjacent unit face normals, F.normalize's eps) without the autograd graph of a
dozen gathers, crosses and scatters over every triangle: one pass over the
triangles and one over the vertices each way. `vertex_normals` picks it for CPU
tensors; the torch version is the reference in the tests and the path on GPUs.

Backward, per mesh, for out = s / max(|s|, eps), s = sum over adjacent faces of
u = c / max(|c|, eps), c = (v1 - v0) x (v2 - v0):
    g_s = (g - out (out . g)) / |s|     (g / eps where |s| <= eps)
    g_u = g_s[i0] + g_s[i1] + g_s[i2]
    g_c = (g_u - u (u . g_u)) / |c|     (g_u / eps where |c| <= eps)
    g_v1 += e2 x g_c,  g_v2 += g_c x e1,  g_v0 -= both   (e1 = v1 - v0, e2 = v2 - v0)
"""
from __future__ import annotations

import math

import numpy as np
import torch
from numba import njit

from lib.jit import as_numpy, split_run

EPS = 1e-12  # F.normalize's default, as in the torch version


@njit(cache=True, inline="always")
def _face_cross(vertices, faces, n, f):
    """Edges e1, e2 and c = e1 x e2 of face f of mesh n, as 9 scalars."""
    i0, i1, i2 = faces[f, 0], faces[f, 1], faces[f, 2]
    ax = vertices[n, i1, 0] - vertices[n, i0, 0]
    ay = vertices[n, i1, 1] - vertices[n, i0, 1]
    az = vertices[n, i1, 2] - vertices[n, i0, 2]
    bx = vertices[n, i2, 0] - vertices[n, i0, 0]
    by = vertices[n, i2, 1] - vertices[n, i0, 1]
    bz = vertices[n, i2, 2] - vertices[n, i0, 2]
    return ax, ay, az, bx, by, bz, ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx


@njit(nogil=True, cache=True)
def _normals_forward_kernel(vertices, faces, eps, summed, out, start, stop):
    for n in range(start, stop):
        for f in range(faces.shape[0]):
            _, _, _, _, _, _, cx, cy, cz = _face_cross(vertices, faces, n, f)
            inv = 1.0 / max(math.sqrt(cx * cx + cy * cy + cz * cz), eps)
            for k in range(3):
                i = faces[f, k]
                summed[n, i, 0] += cx * inv
                summed[n, i, 1] += cy * inv
                summed[n, i, 2] += cz * inv
        for i in range(vertices.shape[1]):
            sx, sy, sz = summed[n, i, 0], summed[n, i, 1], summed[n, i, 2]
            inv = 1.0 / max(math.sqrt(sx * sx + sy * sy + sz * sz), eps)
            out[n, i, 0], out[n, i, 1], out[n, i, 2] = sx * inv, sy * inv, sz * inv


@njit(nogil=True, cache=True)
def _normals_backward_kernel(vertices, faces, summed, out, grad_out, eps, grad_sum, grad_vertices, start, stop):
    for n in range(start, stop):
        for i in range(vertices.shape[1]):
            sx, sy, sz = summed[n, i, 0], summed[n, i, 1], summed[n, i, 2]
            length = math.sqrt(sx * sx + sy * sy + sz * sz)
            gx, gy, gz = grad_out[n, i, 0], grad_out[n, i, 1], grad_out[n, i, 2]
            if length > eps:
                ox, oy, oz = out[n, i, 0], out[n, i, 1], out[n, i, 2]
                dot = ox * gx + oy * gy + oz * gz
                gx, gy, gz = (gx - ox * dot) / length, (gy - oy * dot) / length, (gz - oz * dot) / length
            else:
                gx, gy, gz = gx / eps, gy / eps, gz / eps
            grad_sum[n, i, 0], grad_sum[n, i, 1], grad_sum[n, i, 2] = gx, gy, gz
        for f in range(faces.shape[0]):
            i0, i1, i2 = faces[f, 0], faces[f, 1], faces[f, 2]
            ax, ay, az, bx, by, bz, cx, cy, cz = _face_cross(vertices, faces, n, f)
            ux = grad_sum[n, i0, 0] + grad_sum[n, i1, 0] + grad_sum[n, i2, 0]
            uy = grad_sum[n, i0, 1] + grad_sum[n, i1, 1] + grad_sum[n, i2, 1]
            uz = grad_sum[n, i0, 2] + grad_sum[n, i1, 2] + grad_sum[n, i2, 2]
            length = math.sqrt(cx * cx + cy * cy + cz * cz)
            if length > eps:
                px, py, pz = cx / length, cy / length, cz / length
                dot = px * ux + py * uy + pz * uz
                ux, uy, uz = (ux - px * dot) / length, (uy - py * dot) / length, (uz - pz * dot) / length
            else:
                ux, uy, uz = ux / eps, uy / eps, uz / eps
            # c = a x b: dL/da = b x g_c, dL/db = g_c x a
            dax, day, daz = by * uz - bz * uy, bz * ux - bx * uz, bx * uy - by * ux
            dbx, dby, dbz = uy * az - uz * ay, uz * ax - ux * az, ux * ay - uy * ax
            grad_vertices[n, i1, 0] += dax
            grad_vertices[n, i1, 1] += day
            grad_vertices[n, i1, 2] += daz
            grad_vertices[n, i2, 0] += dbx
            grad_vertices[n, i2, 1] += dby
            grad_vertices[n, i2, 2] += dbz
            grad_vertices[n, i0, 0] -= dax + dbx
            grad_vertices[n, i0, 1] -= day + dby
            grad_vertices[n, i0, 2] -= daz + dbz


class _VertexNormals(torch.autograd.Function):
    @staticmethod
    def forward(ctx, vertices, faces):
        verts = as_numpy(vertices)
        summed = np.zeros_like(verts)
        out = np.empty_like(verts)
        split_run(_normals_forward_kernel, verts.shape[0], verts, as_numpy(faces), EPS, summed, out)
        normals = torch.from_numpy(out)
        ctx.save_for_backward(vertices, faces, normals)
        ctx.summed = summed
        return normals

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        vertices, faces, normals = ctx.saved_tensors
        verts = as_numpy(vertices)
        grad_vertices = np.zeros_like(verts)
        grad = as_numpy(grad_out.to(vertices.dtype))
        grad_sum = np.empty_like(verts)  # per-vertex scratch: dL/d(summed) of each mesh
        split_run(_normals_backward_kernel, verts.shape[0], verts, as_numpy(faces), ctx.summed, as_numpy(normals),
                  grad, EPS, grad_sum, grad_vertices)
        return torch.from_numpy(grad_vertices), None


def vertex_normals_numba(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """`lib.geometry.vertex_normals` for float32/float64 CPU tensors [B, V, 3]."""
    return _VertexNormals.apply(vertices, faces)
