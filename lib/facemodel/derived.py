"""Arrays derived from a FaceModel that the losses, the synthetic data and the
morphable model share (`lib.morphable.MorphableModel` keeps them as buffers)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from lib.facemodel.schema import NOW7_FROM_68, NOW7_IN_PIXEL_FACE101, NUM_PARSING_CLASSES, FaceModel


def landmark3d_vertices(face_model: FaceModel) -> tuple[torch.Tensor, tuple[int, ...]]:
    """The vertices that carry the 3D landmarks, and the positions (in that list) of the
    7 similarity-alignment points: Pixel-Face's 101 points where the model has them
    ('pixel_face101'), else its 68 landmark vertices."""
    if "pixel_face101" in face_model.extra_landmarks:
        return torch.as_tensor(face_model.extra_landmarks["pixel_face101"]), NOW7_IN_PIXEL_FACE101
    return torch.as_tensor(face_model.landmarks68), NOW7_FROM_68


def region_one_hot(face_model: FaceModel) -> torch.Tensor:
    """[V, C] float one-hot parsing label of each vertex (C = 10 classes)."""
    labels = torch.as_tensor(face_model.region_labels.astype("int64"))
    return F.one_hot(labels, NUM_PARSING_CLASSES).float()
