"""Pixel-Face validation scans for the NoW procedure, shared by test_pixel_face.py and
the training loop's validation."""
from __future__ import annotations

import numpy as np

from lib.errors import UserError
from lib.evaluation.runner import Scan
from lib.facemodel.bfm import BFM_FRONT_VERTICES, NOW7_BFM
from lib.facemodel.schema import NOW7_IN_PIXEL_FACE101
from lib.meshio import read_obj
from lib.units import check_face_extent, to_mm

UNIT_KEY = "data.pixel_face_unit"
LANDMARK_SOURCES = ("points101", "mesh")
"""eval.pixel_face_landmarks: the 101-point file, or the mesh's vertices at NOW7_BFM."""


def pixel_face_scan(name: str, mesh_path: str, landmarks3d, unit: str, landmarks_from: str) -> Scan:
    """The `Scan` (mm, float64) of one Pixel-Face validation sample.

    The scan is its mesh from <root>/val_obj/, stored in `unit` (data.pixel_face_unit;
    the released meshes: dm) and converted to mm; its vertices are the scan points (NoW
    measures from scan vertices). The 7 landmarks come from `landmarks_from`
    (eval.pixel_face_landmarks): "points101": landmarks3d [101, 3] (mm, the mesh's frame)
    at positions 47, 50, 53, 56, 41, 79, 85; "mesh": the mesh's vertices 2215, 5828,
    10455, 14065, 8192, 5522, 10795 (the seed's gt_al_index.npy,
    lib/now_evaluation/compute_error.py:104-106), which needs the BFM09-front topology.
    UserError when the sample has no mesh, the mesh is not face-sized in `unit`
    (UnitError), or it lacks those vertices."""
    if landmarks_from not in LANDMARK_SOURCES:
        raise UserError(f"eval.pixel_face_landmarks must be one of {', '.join(LANDMARK_SOURCES)}, got {landmarks_from!r}")
    if not mesh_path:
        raise UserError(f"{name}: no validation mesh in <data.root>/val_obj/ for this sample")
    mesh = read_obj(mesh_path)
    verts = to_mm(mesh.vertices, unit, UNIT_KEY)
    check_face_extent(verts, mesh_path, unit, UNIT_KEY)
    if landmarks_from == "mesh":
        if len(verts) != BFM_FRONT_VERTICES:
            raise UserError(
                f"{mesh_path}: {len(verts)} vertices; eval.pixel_face_landmarks=mesh takes the 7 points at fixed "
                f"vertices of the BFM09-front topology ({BFM_FRONT_VERTICES} vertices): use points101"
            )
        return Scan(verts, verts, mesh.faces, verts[NOW7_BFM])
    points = np.asarray(landmarks3d, dtype=np.float64)
    return Scan(verts, verts, mesh.faces, points[list(NOW7_IN_PIXEL_FACE101)])
