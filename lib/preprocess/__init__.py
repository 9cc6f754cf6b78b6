"""Photos -> aligned face crops with 68 landmarks, parsing maps and skin weights.

Steps (one module each): image_io (robust reading), landmarks (detection + 68 points,
mediapipe or dlib backend), align (five-point POS alignment to a square crop),
parsing (10-class label map from landmarks, skin-attention weights), bisenet
(optional face-parsing network), pipeline (all of them for one photo).
See doc/preprocess.md.
"""
from lib.preprocess.align import Alignment, align_face, estimate_alignment, five_points, identity_alignment, model_five_points, warp_to_crop
from lib.preprocess.image_io import read_image, to_rgb
from lib.preprocess.landmarks import FaceLandmarks, LandmarkBackend, detect_face, detect_landmarks, get_backend
from lib.preprocess.parsing import parse_landmarks, skin_attention_weights
from lib.preprocess.pipeline import PreprocessedFace, Preprocessor

__all__ = [
    "Alignment",
    "FaceLandmarks",
    "LandmarkBackend",
    "PreprocessedFace",
    "Preprocessor",
    "align_face",
    "detect_face",
    "detect_landmarks",
    "estimate_alignment",
    "five_points",
    "get_backend",
    "identity_alignment",
    "model_five_points",
    "parse_landmarks",
    "read_image",
    "skin_attention_weights",
    "to_rgb",
    "warp_to_crop",
]
