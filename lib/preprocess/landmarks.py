"""Face detection and 68 landmarks behind one small backend interface.

Backends (PreprocessConfig.landmarks):
- "mediapipe" (default): mediapipe's face mesh (BlazeFace detector + 468-point mesh,
  models bundled in the wheel, Apache-2.0); the 68 points are picked from the mesh
  (lib/preprocess/mediapipe_68.py). The dense mesh also drives the face parser.
- "dlib": dlib's HOG frontal-face detector + the 68-point shape predictor shipped in
  the `face_recognition_models` package (see doc/preprocess.md for its licence).

Coordinates are continuous pixels: (x, y) with the centre of pixel (row i, col j) at
(j + 0.5, i + 0.5), the convention of DESIGN.md's camera.

A new backend subclasses `LandmarkBackend`, implements `detect_all`, and is added to
`BACKENDS`.
"""
from __future__ import annotations

import importlib.util
import logging
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from lib.errors import UserError
from lib.preprocess.image_io import to_rgb
from lib.preprocess.mediapipe_68 import MESH_TO_68
from lib.preprocess.native_logs import quiet_native_logs

log = logging.getLogger(__name__)

MAX_FACES = 4
"""Faces looked for per photo; the largest is kept and the others reported."""


@dataclass(frozen=True)
class FaceLandmarks:
    """One detected face.

    points68: float32 [68, 2] (x, y) px, iBUG order.
    box:      float32 [4] (x0, y0, x1, y1) px, the face's extent.
    dense:    float32 [N, 2] px, the backend's dense points (mediapipe: N = 468), or None.
    backend:  name of the backend that found it.
    """

    points68: np.ndarray
    box: np.ndarray
    dense: np.ndarray | None = None
    backend: str = ""

    @property
    def area(self) -> float:
        """Box area in px^2 (how prominent the face is)."""
        return float(max(self.box[2] - self.box[0], 0.0) * max(self.box[3] - self.box[1], 0.0))


class LandmarkBackend(ABC):
    """Finds faces and their 68 landmarks in uint8 [H, W, 3] RGB images."""

    name = ""

    @abstractmethod
    def detect_all(self, image: np.ndarray) -> list[FaceLandmarks]:
        """Every face found in `image` (uint8 [H, W, 3] RGB), in any order."""


class MediapipeBackend(LandmarkBackend):
    """mediapipe face mesh in static-image mode.

    Its built-in detector (BlazeFace short range) was made for selfies and misses faces
    smaller than roughly a fifth of the frame, and sometimes faces that fill the whole
    frame. So when the mesh finds nothing it retries on a padded copy, then looks for
    faces with the full-range detector (also bundled) and runs the mesh on a square
    crop around each.
    """

    name = "mediapipe"
    pad_fraction = 0.25  # border added, per side, relative to the longer side
    crop_factor = 2.2  # side of the square crop around a full-range detection / box side

    def __init__(self, min_confidence: float = 0.5):
        quiet_native_logs()  # before the graphs start logging
        try:
            from mediapipe.python.solutions import face_detection, face_mesh
        except ImportError as err:
            raise UserError(f"preprocess.landmarks=mediapipe: mediapipe is not installed ({err}); pip install -r requirements.txt") from None
        self._mesh = face_mesh.FaceMesh(
            static_image_mode=True, max_num_faces=MAX_FACES, refine_landmarks=False, min_detection_confidence=min_confidence
        )
        self._detector = face_detection.FaceDetection(model_selection=1, min_detection_confidence=min_confidence)

    def _run(self, image: np.ndarray) -> list[np.ndarray]:
        result = self._mesh.process(image)
        if not result.multi_face_landmarks:
            return []
        height, width = image.shape[:2]
        scale = np.array([width, height], dtype=np.float32)
        return [np.array([(p.x, p.y) for p in face.landmark], dtype=np.float32) * scale for face in result.multi_face_landmarks]

    def _run_padded(self, image: np.ndarray) -> list[np.ndarray]:
        pad = int(round(self.pad_fraction * max(image.shape[:2])))
        padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
        return [mesh - pad for mesh in self._run(padded)]

    def _run_full_range(self, image: np.ndarray) -> list[np.ndarray]:
        result = self._detector.process(image)
        height, width = image.shape[:2]
        meshes = []
        for detection in result.detections or []:
            box = detection.location_data.relative_bounding_box
            cx, cy = (box.xmin + box.width / 2) * width, (box.ymin + box.height / 2) * height
            half = self.crop_factor * max(box.width * width, box.height * height) / 2
            x0, y0 = int(max(cx - half, 0)), int(max(cy - half, 0))
            x1, y1 = int(min(cx + half, width)), int(min(cy + half, height))
            if x1 - x0 < 8 or y1 - y0 < 8:
                continue
            crop = np.ascontiguousarray(image[y0:y1, x0:x1])
            found = self._run(crop) or self._run_padded(crop)
            meshes.extend(mesh + np.array([x0, y0], dtype=np.float32) for mesh in found)
        return meshes

    def detect_all(self, image: np.ndarray) -> list[FaceLandmarks]:
        meshes = self._run(image) or self._run_padded(image) or self._run_full_range(image)
        faces = []
        for mesh in meshes:
            box = np.concatenate([mesh.min(axis=0), mesh.max(axis=0)]).astype(np.float32)
            faces.append(FaceLandmarks(points68=mesh[MESH_TO_68].copy(), box=box, dense=mesh, backend=self.name))
        return faces


class DlibBackend(LandmarkBackend):
    """dlib HOG detector (image upsampled once, so faces down to ~40 px are found) and the
    68-point predictor from `face_recognition_models`."""

    name = "dlib"
    upsample = 1

    def __init__(self):
        hint = "preprocess.landmarks=dlib needs: pip install dlib-bin==20.0.1.post1 face_recognition_models==0.3.0"
        try:
            import dlib
        except ImportError:
            raise UserError(f"{hint} (dlib is missing)") from None
        # Located without importing the package, whose __init__ needs pkg_resources.
        spec = importlib.util.find_spec("face_recognition_models")
        if spec is None or not spec.submodule_search_locations:
            raise UserError(f"{hint} (face_recognition_models is missing)")
        model = os.path.join(list(spec.submodule_search_locations)[0], "models", "shape_predictor_68_face_landmarks.dat")
        if not os.path.isfile(model):
            raise UserError(f"{model}: dlib's 68-point model is missing; reinstall face_recognition_models")
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(model)

    def detect_all(self, image: np.ndarray) -> list[FaceLandmarks]:
        faces = []
        for rect in self._detector(image, self.upsample):
            shape = self._predictor(image, rect)
            # dlib counts pixel centres at integers; ours sit at +0.5.
            points = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32) + 0.5
            box = np.array([rect.left(), rect.top(), rect.right() + 1, rect.bottom() + 1], dtype=np.float32)
            faces.append(FaceLandmarks(points68=points, box=box, backend=self.name))
        return faces


BACKENDS = {"mediapipe": MediapipeBackend, "dlib": DlibBackend}

_instances: dict[tuple[str, int], LandmarkBackend] = {}


def get_backend(name: str = "mediapipe") -> LandmarkBackend:
    """The backend called `name`, built once per process (the models take ~0.1-1 s to load;
    keyed by process id because data-loader workers must not share a forked graph)."""
    if name not in BACKENDS:
        raise UserError(f"preprocess.landmarks='{name}' is not one of {', '.join(BACKENDS)}")
    key = (name, os.getpid())
    if key not in _instances:
        _instances[key] = BACKENDS[name]()
    return _instances[key]


def detect_face(image: np.ndarray, backend: str, name: str = "image") -> FaceLandmarks | None:
    """The most prominent (largest) face in `image`, or None when there is none.

    image: [H, W, 3] (or gray / RGBA, see `to_rgb`) of any size. Several faces: the
    largest is returned and a warning naming `name` is logged.
    """
    rgb = to_rgb(image, name)
    faces = get_backend(backend).detect_all(rgb)
    if not faces:
        return None
    faces.sort(key=lambda face: face.area, reverse=True)
    if len(faces) > 1:
        log.warning("%s: %d faces found, using the largest (%.0f px wide)", name, len(faces), faces[0].box[2] - faces[0].box[0])
    return faces[0]


def detect_landmarks(image: np.ndarray, backend: str = "mediapipe") -> np.ndarray | None:
    """DESIGN contract: image uint8 [H, W, 3] RGB of any size -> float32 [68, 2] (x, y)
    pixel coordinates of the most prominent face in iBUG order, or None without a face.
    The default backend is the contract's (`detect_landmarks(image)`); the library's
    own path (`Preprocessor`) passes `preprocess.landmarks` to `detect_face`."""
    face = detect_face(image, backend)
    return None if face is None else face.points68.copy()
