"""Pixel-Face validation scans for the NoW procedure, shared by test_pixel_face.py and
the training loop's validation."""
from __future__ import annotations

import numpy as np

from lib.errors import UserError
from lib.facemodel.schema import NOW7_IN_PIXEL_FACE101
from lib.meshio import read_obj
from lib.units import check_face_extent, to_mm

UNIT_KEY = "data.pixel_face_unit"


def pixel_face_scan(name: str, mesh_path: str, landmarks3d, unit: str) -> tuple[np.ndarray, tuple, np.ndarray]:
    """(scan points [N, 3], scan mesh (verts [N, 3], faces [K, 3]), 7 NoW landmarks
    [7, 3]), mm, float64, for one Pixel-Face validation sample: the scan is its mesh
    from <root>/val_obj/, stored in `unit` (the released meshes: dm) and converted to
    mm (the vertices are the scan points: NoW measures from scan vertices); the 7
    landmarks are its 101 3D points (landmarks3d [101, 3], already mm, same frame) at
    positions 47, 50, 53, 56, 41, 79, 85. UserError when the sample has no mesh or
    the mesh is not face-sized in `unit`."""
    if not mesh_path:
        raise UserError(f"{name}: no validation mesh in <data.root>/val_obj/ for this sample")
    mesh = read_obj(mesh_path)
    vertices = to_mm(mesh.vertices, unit, UNIT_KEY)
    check_face_extent(vertices, mesh_path, unit, UNIT_KEY)
    points = np.asarray(landmarks3d, dtype=np.float64)
    return vertices, (vertices, mesh.faces), points[list(NOW7_IN_PIXEL_FACE101)]
