"""Face parsing from landmarks, and the skin-attention weight map derived from it.

`parse_landmarks` paints a 10-class label map (lib.facemodel.schema.PARSING_CLASSES)
from the landmarks of one face: the face (skin) first, then brows, eyes, nose and
lips over it, so later classes win where polygons overlap (the nose covers the far eye
corner in side views, as it does in the photo). With mediapipe's dense mesh the skin
is the union of the mesh's triangles plus the face oval, which follows the visible
silhouette in side views and includes the forehead; with only 68 points (dlib) the
skin is the hull of the jaw and of the brows raised toward the hairline.

Limits: hair, glasses or hands over the face are labelled as the face part beneath;
ears and neck are background (the face model has neither).
"""
from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import cv2
import numpy as np

from lib.errors import UserError
from lib.facemodel.schema import PARSING_CLASSES
from lib.preprocess import mediapipe_68 as mp68

LABEL = {name: index for index, name in enumerate(PARSING_CLASSES)}
FEATURE_CLASSES = tuple(LABEL[name] for name in PARSING_CLASSES if name not in ("background", "skin"))
"""Class ids of brows, eyes, nose, lips and inner mouth (weighted highest)."""

_SUBPIXEL_BITS = 4


@lru_cache(maxsize=1)
def mesh_triangles() -> np.ndarray:
    """int64 [T, 3]: triangles of mediapipe's 468-point mesh (3-cliques of its edges)."""
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_TESSELATION

    neighbours: dict[int, set[int]] = {}
    for a, b in FACEMESH_TESSELATION:
        neighbours.setdefault(a, set()).add(b)
        neighbours.setdefault(b, set()).add(a)
    triangles = {
        tuple(sorted((a, b, c))) for a in neighbours for b in neighbours[a] for c in neighbours[a] & neighbours[b]
    }
    return np.array(sorted(triangles), dtype=np.int64)


def _cv_points(points: np.ndarray) -> np.ndarray:
    """Continuous px (centres at +0.5) -> cv2 fixed-point vertices (centres at integers)."""
    return np.round((np.asarray(points, dtype=np.float64) - 0.5) * (1 << _SUBPIXEL_BITS)).astype(np.int32)


def _fill(label_map: np.ndarray, polygon: np.ndarray, value: int) -> None:
    cv2.fillPoly(label_map, [_cv_points(polygon)], int(value), lineType=cv2.LINE_8, shift=_SUBPIXEL_BITS)


def _fill_hull(label_map: np.ndarray, points: np.ndarray, value: int) -> None:
    hull = cv2.convexHull(np.asarray(points, dtype=np.float32))[:, 0]
    _fill(label_map, hull, value)


def _paint_lips(label_map: np.ndarray, outer_upper, outer_lower, inner_upper, inner_lower) -> None:
    """Lips from four corner-to-corner contours ([K, 2] px each); upper/lower lip are the
    bands between the outer and inner contours, the inner mouth the inner polygon."""
    _fill(label_map, np.concatenate([outer_upper, outer_lower]), LABEL["lower_lip"])
    _fill(label_map, np.concatenate([outer_upper, inner_upper[::-1]]), LABEL["upper_lip"])
    _fill(label_map, np.concatenate([inner_upper, inner_lower]), LABEL["inner_mouth"])


def _parse_dense(label_map: np.ndarray, dense: np.ndarray) -> None:
    def points(indices) -> np.ndarray:
        return dense[list(indices)]

    for triangle in mesh_triangles():
        cv2.fillConvexPoly(label_map, _cv_points(dense[triangle]), LABEL["skin"], lineType=cv2.LINE_8, shift=_SUBPIXEL_BITS)
    _fill(label_map, points(mp68.FACE_OVAL), LABEL["skin"])
    _fill(label_map, points(mp68.RIGHT_BROW), LABEL["right_brow"])
    _fill(label_map, points(mp68.LEFT_BROW), LABEL["left_brow"])
    _fill(label_map, points(mp68.RIGHT_EYE), LABEL["right_eye"])
    _fill(label_map, points(mp68.LEFT_EYE), LABEL["left_eye"])
    _fill_hull(label_map, points(mp68.NOSE_POINTS), LABEL["nose"])
    _paint_lips(
        label_map,
        points(mp68.LIPS_OUTER_UPPER),
        points(mp68.LIPS_OUTER_LOWER),
        points(mp68.LIPS_INNER_UPPER),
        points(mp68.LIPS_INNER_LOWER),
    )


def _parse_68(label_map: np.ndarray, lm: np.ndarray) -> None:
    eye_distance = float(np.linalg.norm(lm[36:42].mean(0) - lm[42:48].mean(0)))
    # The forehead is not annotated: raise the brows along the face's up direction
    # (chin -> nose bridge) by ~0.6 eye distances, about the hairline on most faces.
    up = lm[27] - lm[8]
    up = up / max(float(np.linalg.norm(up)), 1e-6)
    forehead = lm[17:27] + 0.6 * eye_distance * up
    _fill_hull(label_map, np.concatenate([lm[0:17], lm[17:27], forehead]), LABEL["skin"])
    brow_width = max(int(round(0.12 * eye_distance)), 1)
    for sl, name in ((slice(17, 22), "right_brow"), (slice(22, 27), "left_brow")):
        cv2.polylines(label_map, [_cv_points(lm[sl])], False, LABEL[name], brow_width, cv2.LINE_8, _SUBPIXEL_BITS)
    _fill(label_map, lm[36:42], LABEL["right_eye"])
    _fill(label_map, lm[42:48], LABEL["left_eye"])
    _fill_hull(label_map, np.concatenate([lm[27:36], lm[[39, 42]] * 0.6 + lm[[27, 27]] * 0.4]), LABEL["nose"])
    _paint_lips(label_map, lm[48:55], lm[[54, 55, 56, 57, 58, 59, 48]], lm[60:65], lm[[64, 65, 66, 67, 60]])


def parse_landmarks(landmarks68: np.ndarray, size: tuple[int, int], dense: np.ndarray | None = None) -> np.ndarray:
    """10-class label map uint8 [H, W] for one face.

    landmarks68: [68, 2] px in the target image; size: (H, W); dense: optional [468, 2]
    mediapipe mesh points in the same pixels (better skin, forehead and lip shapes).
    """
    lm = np.asarray(landmarks68, dtype=np.float64)
    if lm.shape != (68, 2):
        raise UserError(f"landmarks: expected [68, 2], got {lm.shape}")
    label_map = np.zeros(tuple(int(s) for s in size), dtype=np.uint8)
    if dense is not None:
        _parse_dense(label_map, np.asarray(dense, dtype=np.float64))
    else:
        _parse_68(label_map, np.asarray(lm))
    return label_map


def skin_attention_weights(parsing: np.ndarray, weights: Sequence[float], dilation_px: int) -> np.ndarray:
    """The seed's per-pixel photometric weight: float32 [H, W] from a label map [H, W].

    weights: (background, skin, features), `loss.skin_weights`. Features (brows, eyes,
    nose, lips, inner mouth) are dilated by dilation_px pixels (at the map's size:
    callers scale `preprocess.feature_dilation_px`, given at 224 px) so their borders
    count as features too, but only over face
    pixels (the seed dilates with a 10x10 kernel and then resets the background).
    """
    labels = np.asarray(parsing)
    if labels.ndim != 2:
        raise UserError(f"parsing: expected a label map [H, W], got shape {labels.shape}")
    bg, skin, feature = weights
    out = np.full(labels.shape, bg, dtype=np.float32)
    out[labels == LABEL["skin"]] = skin
    features = np.isin(labels, FEATURE_CLASSES).astype(np.uint8)
    if dilation_px > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilation_px + 1, 2 * dilation_px + 1))
        features = cv2.dilate(features, kernel)
    # As in the seed, the grown border stays on the face: background keeps its weight.
    out[(features > 0) & (labels != LABEL["background"])] = feature
    return out
