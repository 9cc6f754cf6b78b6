"""Scans from meshes: area-uniform random points on a triangle mesh.

Synthetic ground truth comes in the face model's own topology; measuring it at its
vertices would favour predictions in that same topology, so the scan is a fresh
random sampling of its surface instead.
"""
from __future__ import annotations

import numpy as np


def sample_surface(verts, faces, count: int, seed) -> np.ndarray:
    """count points [count, 3] uniformly distributed by area over the triangles.

    verts [V, 3], faces [F, 3]; seed: int or sequence of ints (e.g. [seed, sample
    index]) for `np.random.default_rng`; the same seed gives the same points.
    """
    v = np.asarray(verts, np.float64)
    f = np.asarray(faces, np.int64)
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    area = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)
    rng = np.random.default_rng(seed)
    tri = rng.choice(len(f), size=count, p=area / area.sum())
    # Folding the unit square onto the triangle keeps the density uniform.
    r = rng.random((count, 2))
    flip = r.sum(axis=1) > 1.0
    r[flip] = 1.0 - r[flip]
    return a[tri] + (b[tri] - a[tri]) * r[:, :1] + (c[tri] - a[tri]) * r[:, 1:]
