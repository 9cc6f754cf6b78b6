"""Which of mediapipe's 468 face-mesh points stand for the 68 iBUG / Multi-PIE landmarks,
and the dense contours the landmark-based face parser fills.

Mesh indices follow mediapipe's canonical face mesh (`solutions.face_mesh`, 468 points,
no iris refinement). "Right" is the subject's right, i.e. image left in a frontal photo,
exactly as in the iBUG order (points 36-41 are the subject's right eye).

Each point is the mesh vertex at the iBUG definition (eye and mouth corners, lid and
lip midpoints, brow ends, nose tip and wings); where several vertices were plausible
(jaw contour, inner brow ends, lip thirds, inner lips) we took the left/right-symmetric
pair closest on average to dlib's 68-point predictor (trained on iBUG 300-W) on the
six frontal Pixel-Face sample photos (doc/preprocess.md has the numbers). The jaw
uses face-oval vertices only. In side views the far-side jaw points are self-occluded; mediapipe still
places them where the 3D surface would project (like 3D-FAN, unlike 2D annotations
that slide them onto the visible silhouette). We keep those positions: they agree
with the face model's fixed landmark vertices projected through the same camera,
which is what the landmark loss compares them with.
"""
from __future__ import annotations

import numpy as np

MESH_TO_68 = np.array(
    [
        # jaw 0-16: subject's right ear level -> chin (8) -> subject's left ear level
        127, 234, 132, 58, 172, 150, 149, 148, 152, 377, 378, 379, 397, 288, 361, 454, 356,
        # right brow 17-21 (outer -> inner), left brow 22-26 (inner -> outer)
        70, 63, 105, 66, 55, 285, 296, 334, 293, 300,
        # nose bridge 27-30 (top -> tip), nose bottom 31-35 (right wing -> left wing)
        168, 197, 5, 4, 98, 97, 2, 326, 327,
        # right eye 36-41: outer corner, upper lid x2, inner corner, lower lid x2
        33, 160, 158, 133, 153, 144,
        # left eye 42-47: inner corner, upper lid x2, outer corner, lower lid x2
        362, 385, 387, 263, 373, 380,
        # outer lips 48-59: right corner, upper lip -> left corner, lower lip back
        61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,
        # inner lips 60-67: right corner, upper -> left corner, lower back
        78, 82, 13, 312, 308, 317, 14, 87,
    ],
    dtype=np.int64,
)
"""int64 [68]: mediapipe mesh index of each iBUG landmark."""

FACE_OVAL = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400,
    377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)
"""Closed outline of the face (forehead included), clockwise in the image."""

RIGHT_BROW = (70, 63, 105, 66, 107, 55, 65, 52, 53, 46)
LEFT_BROW = (300, 293, 334, 296, 336, 285, 295, 282, 283, 276)
RIGHT_EYE = (33, 246, 161, 160, 159, 158, 157, 173, 133, 155, 154, 153, 145, 144, 163, 7)
LEFT_EYE = (263, 466, 388, 387, 386, 385, 384, 398, 362, 382, 381, 380, 374, 373, 390, 249)

NOSE_POINTS = (
    168, 122, 351, 196, 419, 3, 248, 51, 281, 45, 275, 220, 440, 115, 344,
    49, 279, 64, 294, 98, 327, 97, 326, 2, 19, 1, 4, 5,
)
"""Bridge, sides, wings and base of the nose; the parser fills their convex hull."""

LIPS_OUTER_UPPER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
LIPS_OUTER_LOWER = (291, 375, 321, 405, 314, 17, 84, 181, 91, 146, 61)
LIPS_INNER_UPPER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LIPS_INNER_LOWER = (308, 324, 318, 402, 317, 14, 87, 178, 88, 95, 78)
"""Lip contours, each running between the two mouth corners (61/291 outer, 78/308 inner)."""


def slide_jaw_to_outline(points68: np.ndarray, mesh: np.ndarray) -> np.ndarray:
    """The 68 points with the jaw contour (0-7, 9-16; the chin 8 stays) moved onto the
    visible outline of the face, as 300-W annotates it.

    points68 float [68, 2] px from MESH_TO_68; mesh float [N, 2] px, the dense mesh.
    The outline is the convex hull of the projected mesh (in a turned face the mesh's
    far-side cheek points form the silhouette, while the fixed face-oval vertices lie
    behind it, inside the hull). Each jaw point moves outward along the face's
    horizontal axis (the outer eye corners' direction, so roll does not matter) to
    where that line leaves the hull; points already on the hull (frontal faces, the
    near side) stay. Returns a new float [68, 2] array.
    """
    from scipy.spatial import ConvexHull

    hull = mesh[ConvexHull(mesh).vertices].astype(np.float64)  # counter-clockwise polygon
    edges_from, edges_to = hull, np.roll(hull, -1, axis=0)
    axis = points68[45] - points68[36]
    axis = axis / max(np.linalg.norm(axis), 1e-9)
    out = points68.astype(np.float64).copy()
    for j in list(range(8)) + list(range(9, 17)):
        direction = -axis if j < 8 else axis
        start = out[j]
        # Ray start + t d against every edge a + s (b - a): solve [d, a - b] [t, s] = a - start.
        edge = edges_to - edges_from
        det = direction[0] * -edge[:, 1] + edge[:, 0] * direction[1]
        rhs = edges_from - start
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (rhs[:, 0] * -edge[:, 1] + edge[:, 0] * rhs[:, 1]) / det
            s = (direction[0] * rhs[:, 1] - direction[1] * rhs[:, 0]) / det
        hits = t[(np.abs(det) > 1e-12) & (s >= 0) & (s <= 1) & (t > 0)]
        if hits.size:
            out[j] = start + hits.max() * direction
    return out.astype(points68.dtype)
