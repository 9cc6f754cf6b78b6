"""Rasterizer constants and the edge function shared by the rasterizer and its
backends; they import this module, never each other, so there is no import cycle."""
from __future__ import annotations

NEAR_DEPTH = 1e-3
"""Triangles with a vertex at depth <= this (mm, behind or at the camera) are dropped."""

MIN_AREA2 = 1e-12
"""Triangles whose twice signed screen area has |area2| <= this (px^2) are degenerate."""

BACKENDS = ("auto", "torch", "numba")


def edge_function(ax, ay, bx, by, px, py):
    """Twice the signed area of (a, b, p): positive when p lies left of a->b in a
    y-up frame. Broadcasts over tensors or floats."""
    return (bx - ax) * (py - ay) - (by - ay) * (px - ax)
