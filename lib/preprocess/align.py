"""Five-point alignment to a square crop, as the seed and Deep3DFaceRecon do it.

Five points are taken from the 68 landmarks (subject's right eye centre, left eye
centre, nose tip, right and left mouth corners). POS ("pose from orthography and
scaling", an affine camera fitted by least squares) relates them to the same five
points on the face model's mean shape (mm); its scale s (px per mm) and the image
position t of the model origin define the crop: the model origin goes to the crop
centre and one millimetre becomes focal / 1000 px, i.e. what DESIGN.md's camera does
to a face at the canonical distance. A frontal mean face rendered with our camera is
therefore already aligned (the transform is the identity up to perspective).

Only scale and translation are normalised (no rotation), so the network still sees
the head's roll, as in Deep3DFaceRecon.

Coordinates are continuous pixels (pixel centres at +0.5), see landmarks.py.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from lib.errors import UserError
from lib.geometry.camera import CAMERA_DISTANCE_MM, focal_length


def five_points(landmarks68: np.ndarray) -> np.ndarray:
    """[68, D] landmarks -> [5, D]: right eye centre, left eye centre, nose tip, right and
    left mouth corners (eye centres are the mean of the two eye corners)."""
    lm = np.asarray(landmarks68, dtype=np.float64)
    if lm.shape[0] != 68:
        raise UserError(f"landmarks: expected 68 points, got shape {lm.shape}")
    return np.stack([(lm[36] + lm[39]) / 2, (lm[42] + lm[45]) / 2, lm[30], lm[48], lm[54]])


def model_five_points(face_model) -> np.ndarray:
    """float64 [5, 3] mm: the five alignment points on a FaceModel's mean shape."""
    return five_points(np.asarray(face_model.mean_shape)[np.asarray(face_model.landmarks68)])


def pos(points2d: np.ndarray, points3d: np.ndarray) -> tuple[float, np.ndarray]:
    """Least-squares affine camera [u, v] = A X + t for [N, 2] image points and [N, 3]
    model points (N >= 4). Returns (scale = mean norm of A's rows, px per model unit;
    t [2] = image position of the model origin)."""
    p2 = np.asarray(points2d, dtype=np.float64)
    p3 = np.asarray(points3d, dtype=np.float64)
    n = len(p2)
    design = np.concatenate([p3, np.ones((n, 1))], axis=1)  # [N, 4]
    solution, *_ = np.linalg.lstsq(design, p2, rcond=None)  # [4, 2]: both rows at once
    rows = solution[:3].T
    scale = float(np.linalg.norm(rows, axis=1).mean())
    return scale, solution[3].copy()


@dataclass(frozen=True)
class Alignment:
    """Similarity (scale + translation) from the source photo to the crop.

    matrix:      float64 [2, 3], crop_xy = matrix[:, :2] @ image_xy + matrix[:, 2]
    crop_size:   side of the square crop (px)
    source_size: (H, W) of the source photo (px)
    """

    matrix: np.ndarray
    crop_size: int
    source_size: tuple[int, int]

    @property
    def scale(self) -> float:
        """Crop pixels per source pixel."""
        return float(self.matrix[0, 0])

    def to_crop(self, points: np.ndarray) -> np.ndarray:
        """[N, 2] (x, y) source px -> float32 [N, 2] crop px."""
        pts = np.asarray(points, dtype=np.float64)
        return (pts @ self.matrix[:, :2].T + self.matrix[:, 2]).astype(np.float32)

    def to_image(self, points: np.ndarray) -> np.ndarray:
        """[N, 2] (x, y) crop px -> float32 [N, 2] source px (draw results on the photo)."""
        pts = np.asarray(points, dtype=np.float64)
        linear = self.matrix[:, :2]
        return ((pts - self.matrix[:, 2]) @ np.linalg.inv(linear).T).astype(np.float32)


def identity_alignment(size: int) -> Alignment:
    """The transform of an already-aligned size x size crop (PreprocessConfig.aligned)."""
    return Alignment(np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), size, (size, size))


def estimate_alignment(landmarks68: np.ndarray, model_points: np.ndarray, source_size: tuple[int, int], crop_size: int) -> Alignment:
    """The crop transform for a face with [68, 2] landmarks (source px).

    model_points: [5, 3] mm from `model_five_points`. source_size: (H, W) of the photo.
    """
    scale_img, origin_img = pos(five_points(landmarks68), model_points)
    if not np.isfinite(scale_img) or scale_img <= 1e-6:
        raise UserError("landmarks: degenerate five points (all in one spot); the face cannot be aligned")
    crop_scale = focal_length((crop_size, crop_size)) / CAMERA_DISTANCE_MM  # px per mm in the crop
    s = crop_scale / scale_img
    centre = crop_size / 2.0
    matrix = np.array([[s, 0.0, centre - s * origin_img[0]], [0.0, s, centre - s * origin_img[1]]])
    return Alignment(matrix, crop_size, (int(source_size[0]), int(source_size[1])))


def warp_to_crop(image: np.ndarray, alignment: Alignment) -> np.ndarray:
    """Resample `image` ([H, W, C] or [H, W], any dtype cv2 takes) into the crop
    [S, S(, C)]; outside the photo is 0. Large downscales are area-averaged first so
    the crop does not alias."""
    matrix = alignment.matrix.copy()
    source = image
    if alignment.scale < 0.5:
        height, width = image.shape[:2]
        new_w = max(int(round(width * alignment.scale * 2)), 1)
        new_h = max(int(round(height * alignment.scale * 2)), 1)
        source = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
        matrix[:, :2] = matrix[:, :2] @ np.diag([width / new_w, height / new_h])
    # cv2 puts pixel centres at integers, we at +0.5: shift in and out.
    linear = matrix[:, :2]
    offset = matrix[:, 2] + linear @ np.array([0.5, 0.5]) - 0.5
    cv_matrix = np.concatenate([linear, offset[:, None]], axis=1)
    size = alignment.crop_size
    return cv2.warpAffine(source, cv_matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def align_face(image: np.ndarray, landmarks68: np.ndarray, model_points: np.ndarray, crop_size: int) -> tuple[np.ndarray, np.ndarray, Alignment]:
    """Crop a photo around its face.

    image: uint8 [H, W, 3]; landmarks68: [68, 2] px in `image`; model_points: [5, 3] mm.
    Returns (crop uint8 [S, S, 3], landmarks float32 [68, 2] in crop px, Alignment).
    """
    alignment = estimate_alignment(landmarks68, model_points, image.shape[:2], crop_size)
    return warp_to_crop(image, alignment), alignment.to_crop(landmarks68), alignment
