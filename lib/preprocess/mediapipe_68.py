"""Which of mediapipe's 468 face-mesh points stand for the 68 iBUG / Multi-PIE landmarks,
and the dense contours the landmark-based face parser fills.

Mesh indices follow mediapipe's canonical face mesh (`solutions.face_mesh`, 468 points;
the refined model has the same first 468). "Right" is the subject's right, i.e. image
left in a frontal photo, exactly as in the iBUG order (points 36-41 are the subject's
right eye).

`mesh_to_68` makes the 68 points in two steps:
1. MESH_TO_68 picks the mesh vertex at each iBUG definition (eye and mouth corners,
   lid and lip midpoints, brow ends, nose tip and wings); where several vertices were
   plausible (inner lips, lip thirds) the left/right-symmetric pair closest to dlib's
   68-point predictor on the frontal Pixel-Face photos was taken.
2. Contours are re-spaced as 300-W annotates them (bench/landmarks.py measured each
   change against ICT renders with known landmarks and against dlib on real photos;
   both agreed, doc/preprocess.md): brows evenly along their upper edge, the nose
   bridge evenly from its top (27) to the tip (30), and (jaw="outline") the jaw contour
   on the visible outline of the face, evenly from ear level to the chin
   (`jaw_on_outline`). The fixed mesh picks put the middle brow points and the upper
   jaw points too far out, the inner brow ends on the brow's lower edge, the bridge
   points too low, and in a turned face the far-side jaw where the hidden 3D surface
   projects (inside the face) instead of on the silhouette.
"""
from __future__ import annotations

import numpy as np

MESH_TO_68 = np.array(
    [
        # jaw 0-16: subject's right ear level -> chin (8) -> subject's left ear level
        127, 234, 132, 58, 172, 150, 149, 148, 152, 377, 378, 379, 397, 288, 361, 454, 356,
        # right brow 17-21 (outer -> inner), left brow 22-26 (inner -> outer), upper edge
        70, 63, 105, 66, 107, 336, 296, 334, 293, 300,
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
"""int64 [68]: mediapipe mesh index of each iBUG landmark (before `mesh_to_68` re-spaces
the contours)."""

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


JAW_CHAINS = (
    (127, 234, 93, 132, 58, 172, 136, 150, 149, 176, 148, 152),
    (356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152),
)
"""The face-oval vertices from ear level (jaw 0, resp. 16) down to the chin (8), every
one of them (not only the 9 that MESH_TO_68 picks), so the contour is followed closely."""


def _slide_outward(points: np.ndarray, directions: np.ndarray, hull: np.ndarray) -> np.ndarray:
    """Each point [P, 2] moved along its direction [P, 2] to where that ray leaves the
    convex polygon `hull` [H, 2]; points with no exit ahead (on or outside it) stay."""
    edge = (np.roll(hull, -1, axis=0) - hull)[None]  # [1, H, 2]
    rhs = hull[None] - points[:, None]  # [P, H, 2]
    d = directions[:, None]  # [P, 1, 2]
    # start + t d = a + s e  <=>  [d, -e] [t, s] = a - start (Cramer's rule), per point and edge.
    det = -d[..., 0] * edge[..., 1] + edge[..., 0] * d[..., 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (-rhs[..., 0] * edge[..., 1] + edge[..., 0] * rhs[..., 1]) / det
        s = (d[..., 0] * rhs[..., 1] - d[..., 1] * rhs[..., 0]) / det
    valid = (np.abs(det) > 1e-12) & (s >= 0) & (s <= 1) & (t > 0)
    exit_t = np.where(valid, t, 0.0).max(axis=1)  # 0 where the ray never leaves: stay
    return points + exit_t[:, None] * directions


def _resample(polyline: np.ndarray, count: int) -> np.ndarray:
    """`count` points [count, 2] at equal arc length along polyline [P, 2], ends included."""
    lengths = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(polyline, axis=0), axis=1))])
    targets = np.linspace(0.0, lengths[-1], count)
    return np.stack([np.interp(targets, lengths, polyline[:, k]) for k in range(2)], axis=1)


def jaw_on_outline(points68: np.ndarray, mesh: np.ndarray) -> np.ndarray:
    """The 68 points with the jaw contour (0-16) put where 300-W annotates it: on the
    visible outline of the face, evenly spaced from ear level to the chin.

    points68 float [68, 2] px from MESH_TO_68; mesh float [468, 2] px, the dense mesh.
    1. Outline: in a turned face the mesh's far-side cheek points form the silhouette
       while the face-oval vertices lie behind it, inside the convex hull of the
       projected mesh. Every face-oval vertex of JAW_CHAINS but the chin moves outward
       along the face's horizontal axis (the outer eye corners' direction, so roll does
       not matter) to the hull; vertices already on it (frontal faces, the near side)
       stay.
    2. Spacing: 300-W's jaw points (and ICT's landmark vertices) are about evenly spaced
       along the contour (measured arc-length fractions of points 0-8: 0, .13-.15,
       .26, .39, .51-.53, .63-.69, .75-.78, .88-.89, 1), the mesh's picks are not
       (0, .10, .31-.32, .43-.44, ...). So points 0-8 and 16-8 are resampled at equal
       arc length along each slid chain.
    Returns a new float [68, 2] array.
    """
    from scipy.spatial import ConvexHull

    mesh = np.asarray(mesh, dtype=np.float64)
    hull = mesh[ConvexHull(mesh).vertices]
    axis = points68[45] - points68[36]
    axis = axis / max(float(np.linalg.norm(axis)), 1e-9)
    out = points68.astype(np.float64).copy()
    for chain, sign, targets in ((JAW_CHAINS[0], -1.0, range(0, 9)), (JAW_CHAINS[1], 1.0, range(16, 7, -1))):
        chain_points = mesh[list(chain)]
        chain_points[:-1] = _slide_outward(chain_points[:-1], np.tile(sign * axis, (len(chain) - 1, 1)), hull)
        out[list(targets)] = _resample(chain_points, len(targets))
    return out.astype(points68.dtype)


RIGHT_BROW_UPPER = (70, 63, 105, 66, 107)
LEFT_BROW_UPPER = (336, 296, 334, 293, 300)
"""The brows' upper edges in iBUG order (17-21 outer -> inner, 22-26 inner -> outer)."""


def mesh_to_68(mesh: np.ndarray, jaw: str) -> np.ndarray:
    """The 68 iBUG points float32 [68, 2] px of one dense mesh [468, 2] px (module
    docstring). jaw: "outline" (`jaw_on_outline`) or "mesh" (the fixed picks)."""
    mesh = np.asarray(mesh, dtype=np.float64)
    points = mesh[MESH_TO_68].copy()
    points[17:22] = _resample(mesh[list(RIGHT_BROW_UPPER)], 5)
    points[22:27] = _resample(mesh[list(LEFT_BROW_UPPER)], 5)
    points[28] = points[27] + (points[30] - points[27]) / 3
    points[29] = points[27] + 2 * (points[30] - points[27]) / 3
    if jaw == "outline":
        points = jaw_on_outline(points, mesh)
    return points.astype(np.float32)
