"""One photo in, one aligned face out: detection, 68 landmarks, crop, parsing, weights.

`Preprocessor(cfg.preprocess)(image)` is what the datasets, the prepare command and
test_sample.py call; the steps are also usable one by one (landmarks.py, align.py,
parsing.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from lib.config.schema import PreprocessConfig
from lib.errors import UserError
from lib.preprocess.align import Alignment, align_face, identity_alignment, model_five_points
from lib.preprocess.image_io import to_rgb
from lib.preprocess.landmarks import detect_face, get_backend
from lib.preprocess.parsing import parse_landmarks, skin_attention_weights


@dataclass(frozen=True)
class PreprocessedFace:
    """An aligned face crop and everything derived from it (S = crop size).

    crop:        uint8 [S, S, 3] RGB
    landmarks:   float32 [68, 2] (x, y) px in the crop, iBUG order
    parsing:     uint8 [S, S] class ids (PARSING_CLASSES)
    skin_weight: float32 [S, S] 0.25 background / 0.5 skin / 0.99 features
    alignment:   photo -> crop transform (Alignment.to_image draws results back)
    dense:       float32 [468, 2] crop px (mediapipe) or None
    """

    crop: np.ndarray
    landmarks: np.ndarray
    parsing: np.ndarray
    skin_weight: np.ndarray
    alignment: Alignment
    dense: np.ndarray | None = None


class Preprocessor:
    """Callable turning photos into `PreprocessedFace`s with fixed settings.

    cfg: PreprocessConfig. skin_weights: `loss.skin_weights` (background, skin,
    features) of the skin-attention maps. face_model: the FaceModel whose mean shape
    defines the alignment template (None only when cfg.aligned: nothing is aligned).
    crop_size: side of the crops (data.image_size, or fit.crop_size for test_sample.py).
    """

    def __init__(self, cfg: PreprocessConfig, skin_weights, face_model, *, crop_size: int):
        if face_model is None and not cfg.aligned:
            raise ValueError("Preprocessor: a face model is needed to align photos (preprocess.aligned=false)")
        self.cfg = cfg
        self.skin_weights = tuple(float(w) for w in skin_weights)
        self.crop_size = int(crop_size)
        self._face_model = face_model
        self._model_points: np.ndarray | None = None
        self._bisenet = None
        # Built now so a bad backend name or a missing package fails before any photo.
        get_backend(self.cfg.landmarks)
        if self.cfg.parser not in ("landmarks", "bisenet"):
            raise UserError(f"preprocess.parser='{self.cfg.parser}' is not one of landmarks, bisenet")
        if self.cfg.parser == "bisenet":
            from lib.preprocess.bisenet import BiSeNetParser

            self._bisenet = BiSeNetParser.from_file(self.cfg.bisenet_weights)

    @property
    def model_points(self) -> np.ndarray:
        """[5, 3] mm alignment points of the face model (built on first use)."""
        if self._model_points is None:
            self._model_points = model_five_points(self._face_model)
        return self._model_points

    def __call__(self, image: np.ndarray, name: str = "image") -> PreprocessedFace:
        """image: [H, W, 3] RGB photo (any size; gray / RGBA accepted). Raises UserError
        naming `name` when no face is found or an aligned input has the wrong size."""
        rgb = to_rgb(image, name)
        size = self.crop_size
        if self.cfg.aligned:
            side = rgb.shape[0]
            if side != rgb.shape[1]:
                raise UserError(f"{name}: preprocess.aligned=true needs square crops, got {rgb.shape[1]}x{side}")
            passthrough = identity_alignment(size)
            if side != size:
                # An aligned crop of another resolution: only rescaled.
                rgb = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA if side > size else cv2.INTER_LINEAR)
                passthrough = Alignment(np.array([[size / side, 0.0, 0.0], [0.0, size / side, 0.0]]), size, (side, side))
        face = detect_face(rgb, self.cfg.landmarks, name)
        if face is None:
            raise UserError(f"{name}: no face found (needs a visible face, not too small, roughly upright)")
        if self.cfg.aligned:
            crop, landmarks, alignment = rgb, face.points68, passthrough
            dense = face.dense
        else:
            crop, landmarks, alignment = align_face(rgb, face.points68, self.model_points, size)
            dense = None if face.dense is None else alignment.to_crop(face.dense)
        if self._bisenet is not None:
            parsing = self._bisenet.parse(crop, landmarks)
        else:
            parsing = parse_landmarks(landmarks, (size, size), dense)
        weights = skin_attention_weights(parsing, self.skin_weights, int(round(self.cfg.feature_dilation_px * size / 224)))
        return PreprocessedFace(crop, landmarks.astype(np.float32), parsing, weights, alignment, dense)
