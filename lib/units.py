"""Length units of files read from outside, converted to the project's millimetres.

Datasets store lengths in whatever unit their makers chose (Pixel-Face's files are in
BFM decimetres, ICT-FaceKit's OBJs in centimetres). Loaders name the file's unit,
convert with `to_mm`, and check with `check_face_extent` that the result has the size
of a face, so a wrong unit stops with one line instead of silently scaling a loss or
an error by 10 or 100.
"""
from __future__ import annotations

import math

import numpy as np

from lib.errors import UserError

UNITS_MM = {"mm": 1.0, "cm": 10.0, "dm": 100.0, "m": 1000.0}
"""Millimetres per unit."""

FACE_WIDTH_MM = 150.0
"""About the width of an adult face: the yardstick of `check_face_extent`."""

FACE_EXTENT_RANGE_MM = (30.0, 1000.0)
"""Largest bounding-box side (mm) accepted for face points or a face scan: a factor of
10 off the ~150 mm of a face (a wrong unit) falls outside on either side."""


class UnitError(UserError):
    """Lengths that do not fit their stated unit: a property of the whole dataset, so
    callers stop rather than skip the file."""


def unit_factor(unit: str, key: str) -> float:
    """Millimetres per `unit`; UserError naming the config `key` for an unknown unit."""
    if unit not in UNITS_MM:
        raise UserError(f"{key}={unit!r}: not a length unit (one of {', '.join(UNITS_MM)})")
    return UNITS_MM[unit]


def to_mm(values: np.ndarray, unit: str, key: str) -> np.ndarray:
    """float64 copy of `values` (any shape, lengths in `unit`) in mm."""
    return np.asarray(values, np.float64) * unit_factor(unit, key)


def check_face_extent(points_mm: np.ndarray, source: str, unit: str, key: str) -> None:
    """UserError unless points [N, 3] (mm, read as `unit`) span a face-sized box.

    The message names the file (`source`), the size found, the config `key` and the
    unit under which the points would be about a face wide.
    """
    pts = np.asarray(points_mm, np.float64)
    extent = float(np.ptp(pts, axis=0).max()) if len(pts) else 0.0
    low, high = FACE_EXTENT_RANGE_MM
    if low <= extent <= high:
        return
    hint = ""
    if extent > 0:
        factor = UNITS_MM[unit]
        best = min(UNITS_MM, key=lambda u: abs(math.log(extent / factor * UNITS_MM[u] / FACE_WIDTH_MM)))
        if best != unit:
            hint = f"; it looks like {best}: set {key}={best}"
    raise UnitError(
        f"{source}: spans {extent:.4g} mm when read as {unit} ({key}); a face is about "
        f"{FACE_WIDTH_MM:.0f} mm wide{hint}"
    )
