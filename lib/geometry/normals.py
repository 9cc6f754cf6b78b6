"""Per-vertex normals of triangle meshes."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from lib.jit import numba_suits


def face_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Unit normals [B, F, 3] of counter-clockwise triangles: cross(v1 - v0, v2 - v0).

    vertices [B, V, 3], faces long [F, 3]. Degenerate triangles give zero vectors.
    """
    v0, v1, v2 = (vertices[:, faces[:, k]] for k in range(3))
    return F.normalize(torch.cross(v1 - v0, v2 - v0, dim=-1), dim=-1, eps=1e-12)


def vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Unit vertex normals [B, V, 3]: the normalised sum of adjacent unit face normals.

    Same result as the seed's averaging over `point_buf`. On float CPU tensors the
    numba kernels of `normals_numba` compute it (5-6x faster forward + backward
    than the torch graph below, see bench/normals.py); elsewhere
    `vertex_normals_torch`.
    """
    if numba_suits(vertices):
        from lib.geometry.normals_numba import vertex_normals_numba

        return vertex_normals_numba(vertices, faces)
    return vertex_normals_torch(vertices, faces)


def vertex_normals_torch(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """`vertex_normals` in torch (any device): face normals scatter-added to their
    corners, so that no padded adjacency table is needed."""
    fn = face_normals(vertices, faces)
    summed = torch.zeros_like(vertices)
    for k in range(3):
        summed = summed.index_add(1, faces[:, k], fn)
    return F.normalize(summed, dim=-1, eps=1e-12)
