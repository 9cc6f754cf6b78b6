"""Pixel-Face validation scans for the NoW procedure, shared by test_pixel_face.py and
the training loop's validation."""
from __future__ import annotations

import numpy as np

from lib.errors import UserError
from lib.evaluation.runner import Scan
from lib.facemodel.schema import NOW7_IN_PIXEL_FACE101
from lib.meshio import read_obj


def pixel_face_scan(name: str, mesh_path: str, landmarks3d) -> Scan:
    """The `Scan` (mm, float64) of one Pixel-Face validation sample: the scan is its mesh
    from <root>/val_obj/ (the vertices are the scan points: NoW measures from scan
    vertices) and the 7 landmarks are its 101 3D points (same frame, mm) at positions
    47, 50, 53, 56, 41, 79, 85. UserError when the sample has no mesh."""
    if not mesh_path:
        raise UserError(f"{name}: no validation mesh in <data.root>/val_obj/ for this sample")
    mesh = read_obj(mesh_path)
    points = np.asarray(landmarks3d, dtype=np.float64)
    verts = np.asarray(mesh.vertices, np.float64)
    return Scan(verts, verts, mesh.faces, points[list(NOW7_IN_PIXEL_FACE101)])
