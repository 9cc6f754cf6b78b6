"""Per-vertex face-parsing labels derived from the 68 landmarks of a face mesh.

Used by every face-model source that has no region labels of its own (the built-in
synthetic model, ICT-FaceKit, BFM09). The 68 landmark vertices are projected on the
frontal (x, y) plane of the model space (DESIGN.md: +x image right, +y up, +z toward
the camera) and turned into 2D polygons and bands; each front-facing vertex gets the
class of the polygon it falls in. Every size is a fraction of the outer eye-corner
distance (landmarks 36-45, about 90-100 mm on an adult), so the function works in any
unit and on any topology: a 6k-vertex synthetic grid, ICT's 26k-vertex scan topology
or BFM's 35,709-vertex front.

Class precedence, later wins: skin (face oval) < nose < brows < eyes < lips < inner
mouth. Landmark conventions (iBUG / Multi-PIE 68): 17-21 subject's right brow, 22-26
left brow, 36-41 right eye, 42-47 left eye, 27-35 nose, 48-59 outer lips, 60-67 inner
lips, 0-16 jaw from the subject's right ear to the left one.
"""
from __future__ import annotations

import numpy as np

from lib.facemodel.albedo import generic_albedo
from lib.facemodel.schema import NOW7_FROM_68, PARSING_CLASSES

_CLASS = {name: i for i, name in enumerate(PARSING_CLASSES)}

# Sizes as fractions of the outer eye-corner distance (EYE_SPAN, ~95 mm on an adult).
FOREHEAD_HEIGHT = 0.55  # brows to hairline, ~50 mm
BROW_HALF_WIDTH = 0.05  # brow band: +-4.7 mm around the landmark polyline
EYE_DILATION = 0.012  # eye polygon grown by ~1 mm so coarse meshes keep eye vertices
NOSE_ROOT_HALF_WIDTH = 0.09  # nasal bridge between the eyes, +-8.5 mm
ALA_MARGIN = 0.045  # alae extend ~4 mm beyond landmarks 31 / 35
EAR_DEPTH_MARGIN = 0.15  # vertices more than ~14 mm behind the jaw ends are not face
MIN_NORMAL_Z = -0.1  # vertices facing away from the camera are never face


def point_in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Even-odd test: bool [N] for 2D points [N, 2] inside a closed polygon [P, 2].

    The polygon may be given in either winding and need not repeat its first point.
    """
    x, y = points[:, 0:1], points[:, 1:2]
    x0, y0 = polygon[:, 0][None], polygon[:, 1][None]
    x1, y1 = np.roll(polygon[:, 0], -1)[None], np.roll(polygon[:, 1], -1)[None]
    straddles = (y0 > y) != (y1 > y)
    # x where the edge crosses the horizontal line through the point (edges that do
    # not straddle it are masked, so their division result is never used).
    with np.errstate(divide="ignore", invalid="ignore"):
        x_cross = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
    crossings = straddles & (x < x_cross)
    return (crossings.sum(axis=1) % 2) == 1


def distance_to_polyline(points: np.ndarray, polyline: np.ndarray) -> np.ndarray:
    """Euclidean distance [N] from 2D points [N, 2] to an open polyline [P, 2]."""
    a, b = polyline[:-1][None], polyline[1:][None]
    ab = b - a
    t = ((points[:, None] - a) * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-12)
    closest = a + np.clip(t, 0.0, 1.0)[..., None] * ab
    return np.linalg.norm(points[:, None] - closest, axis=-1).min(axis=1)


def mesh_vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit area-weighted vertex normals [V, 3] (numpy) of counter-clockwise triangles."""
    v0, v1, v2 = (vertices[faces[:, k]] for k in range(3))
    face_n = np.cross(v1 - v0, v2 - v0)
    summed = np.zeros_like(vertices, dtype=np.float64)
    for k in range(3):
        np.add.at(summed, faces[:, k], face_n)
    return summed / np.maximum(np.linalg.norm(summed, axis=1, keepdims=True), 1e-12)


def face_oval(lm: np.ndarray) -> np.ndarray:
    """2D polygon [P, 2]: jaw 0..16 closed by an elliptic forehead arc above the brows.

    lm: [68, 2] frontal landmark positions.
    """
    span = np.linalg.norm(lm[45] - lm[36])
    left, right = lm[0], lm[16]
    centre_x = 0.5 * (left[0] + right[0])
    half_width = 0.5 * abs(right[0] - left[0])
    base_y = 0.5 * (left[1] + right[1])
    top_y = lm[17:27, 1].max() + FOREHEAD_HEIGHT * span
    # The arc runs from landmark 16's side over the forehead to landmark 0's side,
    # so the polygon continues the jaw's order without crossing itself.
    side = np.sign(right[0] - left[0]) or 1.0
    angles = np.linspace(0.0, np.pi, 25)[1:-1]
    arc = np.stack([centre_x + side * half_width * np.cos(angles), base_y + (top_y - base_y) * np.sin(angles)], 1)
    return np.concatenate([lm[0:17], arc], 0)


def nose_polygon(lm: np.ndarray) -> np.ndarray:
    """2D polygon [P, 2] of the nose: bridge from landmark 27, widened to the alae."""
    span = np.linalg.norm(lm[45] - lm[36])
    right_dir = np.sign(lm[31, 0] - lm[35, 0]) or -1.0  # direction of the subject's right
    root, tip = lm[27], lm[30]
    bridge = NOSE_ROOT_HALF_WIDTH * span
    ala = ALA_MARGIN * span
    right_ala = lm[31] + np.array([right_dir * ala, 0.0])
    left_ala = lm[35] - np.array([right_dir * ala, 0.0])
    # Ala tops sit at the tip's height, as wide as the nostrils plus the margin.
    right_top = np.array([right_ala[0], tip[1]])
    left_top = np.array([left_ala[0], tip[1]])
    return np.stack(
        [
            root + [right_dir * bridge, 0.0],
            right_top,
            right_ala,
            *lm[31:36],
            left_ala,
            left_top,
            root - [right_dir * bridge, 0.0],
        ]
    )


def grow_polygon(polygon: np.ndarray, margin: float) -> np.ndarray:
    """Scale a polygon [P, 2] about its centroid so it grows by about `margin`."""
    centre = polygon.mean(0)
    radius = np.linalg.norm(polygon - centre, axis=1).mean()
    return centre + (polygon - centre) * (1.0 + margin / max(radius, 1e-12))


def front_facing(vertices: np.ndarray, faces: np.ndarray, landmarks68: np.ndarray) -> np.ndarray:
    """bool [V]: vertices that can be part of the face in a frontal view.

    vertices [V, 3], faces [F, 3], landmarks68 [68] vertex indices. A vertex
    qualifies when its normal does not point away from the camera and it lies in
    front of the ears (not deeper than the jaw ends, landmarks 0 and 16, by more
    than a margin): this excludes the back of the head and inner surfaces of
    scanned topologies that would otherwise project into the face oval. Either
    triangle winding is accepted (the nose tip's normal decides).
    """
    landmark_xyz = vertices[landmarks68]
    nose_tip = landmarks68[30]
    span = np.linalg.norm(landmark_xyz[45] - landmark_xyz[36])
    normal_z = mesh_vertex_normals(vertices, faces)[:, 2]
    # The nose tip faces the camera on any face mesh: if its normal does not, the
    # triangles are wound clockwise, and every normal is flipped.
    if normal_z[nose_tip] < 0:
        normal_z = -normal_z
    ear_z = min(landmark_xyz[0, 2], landmark_xyz[16, 2]) - EAR_DEPTH_MARGIN * span
    return (normal_z > MIN_NORMAL_Z) & (vertices[:, 2] > ear_z)


def regions_from_landmarks(vertices: np.ndarray, landmarks68: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Label each vertex with a parsing class (index into PARSING_CLASSES).

    vertices [V, 3] model space (any unit; mm in this project), landmarks68 [68]
    vertex indices in iBUG order, faces [F, 3] triangles (for the normals; either
    winding). The face must be roughly frontal (looking along +z, +y up), as the
    model spaces of all our sources are. Returns uint8 [V]; vertices outside the
    face oval or facing away from the camera are 'background'.
    """
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    landmarks68 = np.asarray(landmarks68, dtype=np.int64)
    lm = vertices[landmarks68, :2]
    xy = vertices[:, :2]
    span = np.linalg.norm(lm[45] - lm[36])
    labels = np.full(len(vertices), _CLASS["background"], dtype=np.uint8)
    candidate = front_facing(vertices, faces, landmarks68)

    def paint(name: str, inside: np.ndarray) -> None:
        labels[candidate & inside] = _CLASS[name]

    paint("skin", point_in_polygon(xy, face_oval(lm)))
    paint("nose", point_in_polygon(xy, nose_polygon(lm)))
    paint("right_brow", distance_to_polyline(xy, lm[17:22]) < BROW_HALF_WIDTH * span)
    paint("left_brow", distance_to_polyline(xy, lm[22:27]) < BROW_HALF_WIDTH * span)
    paint("right_eye", point_in_polygon(xy, grow_polygon(lm[36:42], EYE_DILATION * span)))
    paint("left_eye", point_in_polygon(xy, grow_polygon(lm[42:48], EYE_DILATION * span)))
    upper_lip = np.concatenate([lm[48:55], lm[[64, 63, 62, 61, 60]]])
    lower_lip = np.concatenate([lm[54:60], lm[[48, 60, 67, 66, 65, 64]]])
    paint("upper_lip", point_in_polygon(xy, upper_lip))
    paint("lower_lip", point_in_polygon(xy, lower_lip))
    paint("inner_mouth", point_in_polygon(xy, lm[60:68]))
    return labels


SKIN_MASK_CLASSES = ("skin", "nose")


def skin_mask_from_regions(labels: np.ndarray) -> np.ndarray:
    """bool [V]: vertices of bare facial skin (classes skin and nose).

    These are the vertices whose albedo should be uniform (the skin-uniformity
    regulariser); brows, eyes, lips and the inner mouth have their own colours.
    """
    labels = np.asarray(labels)
    return np.isin(labels, [_CLASS[name] for name in SKIN_MASK_CLASSES])


def landmark_derived_fields(mean_shape: np.ndarray, faces: np.ndarray, landmarks68: np.ndarray,
                            albedo_modes: int) -> dict:
    """The FaceModel fields of a mesh that has 68 landmarks but no parsing labels or
    albedo model of its own (built-in, ICT-FaceKit): region_labels (from the
    landmarks), skin_mask, the generic albedo_mean / albedo_basis (`albedo_modes`
    modes) and extra_landmarks {'now7'}. mean_shape [V, 3] mm, faces [F, 3],
    landmarks68 int [68]."""
    labels = regions_from_landmarks(mean_shape, landmarks68, faces)
    albedo_mean, albedo_basis = generic_albedo(mean_shape, faces, labels, albedo_modes)
    return {
        "region_labels": labels,
        "skin_mask": skin_mask_from_regions(labels),
        "albedo_mean": albedo_mean,
        "albedo_basis": albedo_basis,
        "extra_landmarks": {"now7": np.asarray(landmarks68)[list(NOW7_FROM_68)]},
    }
