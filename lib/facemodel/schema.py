"""The one in-memory type for 3D Morphable Models, and its `.npz` file format.

Every source (BFM09, ICT-FaceKit, the built-in synthetic model) is converted into a
`FaceModel`. Arrays are numpy; geometry in millimetres in the model space of
DESIGN.md (+x image right, +y up, +z toward the camera, face centred near the origin).

Schema (`.npz` keys; V vertices, F triangles, K* basis sizes):

    name            str
    mean_shape      float32 [V, 3]      mm
    id_basis        float32 [V, 3, Kid] mm per unit coefficient (coefficients ~ N(0, 1))
    exp_basis       float32 [V, 3, Kexp] mm per unit coefficient
    albedo_mean     float32 [V, 3]      linear RGB in [0, 1]
    albedo_basis    float32 [V, 3, Ktex] per unit coefficient (coefficients ~ N(0, 1))
    faces           int64   [F, 3]      counter-clockwise seen from outside, so
                                        cross(v1 - v0, v2 - v0) points out of the face
    landmarks68     int64   [68]        vertex of each iBUG/Multi-PIE landmark
    region_labels   uint8   [V]         parsing class of each vertex (PARSING_CLASSES)
    skin_mask       bool    [V]         vertices used by the skin-uniformity regulariser
    extra_landmarks dict[str, int64 [N]] e.g. 'now7' (NoW alignment points),
                                        'pixel_face101' (the Pixel-Face 3D points);
                                        stored as keys 'extra_landmarks/<name>'
    uv_coords       float32 [T, 2]      optional texture coordinates in [0, 1]
    uv_faces        int64   [F, 3]      optional, index into uv_coords per corner
    exp_range       float32 [2]         optional (low, high): expression coefficients
                                        are blendshape weights bounded to this range
                                        (ICT: 0, 1); absent: ~ N(0, 1) like identity
    description     str                 where the model came from, licence notes

The vertex-to-triangle adjacency is derived from `faces` (`vertex_faces`), never
stored, so the two cannot disagree.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from lib.errors import UserError

PARSING_CLASSES = (
    "background",
    "skin",
    "left_brow",
    "right_brow",
    "left_eye",
    "right_eye",
    "nose",
    "upper_lip",
    "inner_mouth",
    "lower_lip",
)
"""The 10 face-parsing classes (DESIGN.md). 'left' is the subject's left, which is
image right in a frontal photo (landmarks 42-47 are the subject's left eye)."""

NUM_PARSING_CLASSES = len(PARSING_CLASSES)

NOW7_FROM_68 = (36, 39, 42, 45, 30, 48, 54)
"""The 7 NoW alignment points as 68-landmark positions, in the order of the seed's BFM
vertices 2215, 5828, 10455, 14065, 8192, 5522, 10795: subject's right eye outer (36)
and inner (39) corner, left eye inner (42) and outer (45) corner, nose tip (30),
right (48) and left (54) mouth corner. Every model's extra_landmarks['now7']."""

NOW7_IN_PIXEL_FACE101 = (47, 50, 53, 56, 41, 79, 85)
"""The same 7 points as positions in the seed's 101 Pixel-Face 3D points
(extra_landmarks['pixel_face101'], a sample's landmarks3d)."""

_ARRAY_FIELDS = {
    "mean_shape": (np.float32, 2),
    "id_basis": (np.float32, 3),
    "exp_basis": (np.float32, 3),
    "albedo_mean": (np.float32, 2),
    "albedo_basis": (np.float32, 3),
    "faces": (np.int64, 2),
    "landmarks68": (np.int64, 1),
    "region_labels": (np.uint8, 1),
    "skin_mask": (np.bool_, 1),
}


@dataclass(frozen=True, eq=False)
class FaceModel:
    """A linear 3D Morphable Model in millimetres; see the module docstring."""

    name: str
    mean_shape: np.ndarray
    id_basis: np.ndarray
    exp_basis: np.ndarray
    albedo_mean: np.ndarray
    albedo_basis: np.ndarray
    faces: np.ndarray
    landmarks68: np.ndarray
    region_labels: np.ndarray
    skin_mask: np.ndarray
    extra_landmarks: dict = field(default_factory=dict)
    uv_coords: np.ndarray | None = None
    uv_faces: np.ndarray | None = None
    exp_range: np.ndarray | None = None
    description: str = ""

    def __post_init__(self):
        for key, (dtype, ndim) in _ARRAY_FIELDS.items():
            value = np.asarray(getattr(self, key))
            if value.ndim != ndim:
                raise UserError(f"face model '{self.name}': {key} must have {ndim} dims, got shape {value.shape}")
            object.__setattr__(self, key, value.astype(dtype, copy=False))
        extra = {k: np.asarray(v, dtype=np.int64) for k, v in self.extra_landmarks.items()}
        object.__setattr__(self, "extra_landmarks", extra)
        if self.uv_coords is not None:
            object.__setattr__(self, "uv_coords", np.asarray(self.uv_coords, np.float32))
            object.__setattr__(self, "uv_faces", np.asarray(self.uv_faces, np.int64))
        if self.exp_range is not None:
            object.__setattr__(self, "exp_range", np.asarray(self.exp_range, np.float32).reshape(2))
        self.validate()

    @property
    def num_vertices(self) -> int:
        return self.mean_shape.shape[0]

    @property
    def num_id(self) -> int:
        return self.id_basis.shape[2]

    @property
    def num_exp(self) -> int:
        return self.exp_basis.shape[2]

    @property
    def num_tex(self) -> int:
        return self.albedo_basis.shape[2]

    @property
    def has_uv(self) -> bool:
        return self.uv_coords is not None

    @cached_property
    def vertex_faces(self) -> np.ndarray:
        """int64 [V, M]: triangles around each vertex, padded with -1 (BFM's point_buf)."""
        v = self.num_vertices
        corner_vertex = self.faces.reshape(-1)
        corner_face = np.repeat(np.arange(len(self.faces)), 3)
        order = np.argsort(corner_vertex, kind="stable")
        counts = np.bincount(corner_vertex, minlength=v)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        slot = np.arange(len(order)) - np.repeat(starts, counts)
        table = np.full((v, max(int(counts.max()), 1)), -1, dtype=np.int64)
        table[corner_vertex[order], slot] = corner_face[order]
        return table

    def validate(self) -> None:
        """Raise UserError naming the first inconsistent array."""
        v = self.num_vertices
        expect = {
            "mean_shape": (v, 3),
            "albedo_mean": (v, 3),
            "region_labels": (v,),
            "skin_mask": (v,),
            "landmarks68": (68,),
        }
        for key, shape in expect.items():
            if getattr(self, key).shape != shape:
                raise UserError(f"face model '{self.name}': {key} has shape {getattr(self, key).shape}, expected {shape}")
        for key in ("id_basis", "exp_basis", "albedo_basis"):
            if getattr(self, key).shape[:2] != (v, 3):
                raise UserError(f"face model '{self.name}': {key} must be [{v}, 3, K], got {getattr(self, key).shape}")
        if self.faces.shape[1:] != (3,) or self.faces.min() < 0 or self.faces.max() >= v:
            raise UserError(f"face model '{self.name}': faces must be [F, 3] indices below {v}")
        for key, idx in [("landmarks68", self.landmarks68), *self.extra_landmarks.items()]:
            if idx.size and (idx.min() < 0 or idx.max() >= v):
                raise UserError(f"face model '{self.name}': landmark set '{key}' indexes past {v} vertices")
        if self.region_labels.max() >= NUM_PARSING_CLASSES:
            raise UserError(f"face model '{self.name}': region_labels must be below {NUM_PARSING_CLASSES}")
        if self.exp_range is not None and (self.exp_range.shape != (2,) or not self.exp_range[0] < self.exp_range[1]):
            raise UserError(f"face model '{self.name}': exp_range must be (low, high) with low < high, got {self.exp_range}")
        if self.uv_coords is not None and self.uv_faces.shape != self.faces.shape:
            raise UserError(f"face model '{self.name}': uv_faces must match faces' shape {self.faces.shape}")

    def save(self, path: str) -> None:
        """Write the documented `.npz` (uncompressed, so loading is fast)."""
        arrays = {key: getattr(self, key) for key in _ARRAY_FIELDS}
        arrays["name"] = np.array(self.name)
        arrays["description"] = np.array(self.description)
        for key, idx in self.extra_landmarks.items():
            arrays[f"extra_landmarks/{key}"] = idx
        if self.uv_coords is not None:
            arrays["uv_coords"] = self.uv_coords
            arrays["uv_faces"] = self.uv_faces
        if self.exp_range is not None:
            arrays["exp_range"] = self.exp_range
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        tmp = path + ".tmp.npz"
        np.savez(tmp, **arrays)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str) -> "FaceModel":
        """Read a `.npz` written by `save` (or by hand in the same schema)."""
        if not os.path.isfile(path):
            raise UserError(f"{path}: face model file not found")
        try:
            data = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise UserError(f"{path}: not a readable .npz face model ({err})") from None
        missing = [k for k in _ARRAY_FIELDS if k not in data.files]
        if missing:
            raise UserError(f"{path}: missing face model keys {', '.join(missing)}")
        kwargs = {key: data[key] for key in _ARRAY_FIELDS}
        extra = {k.split("/", 1)[1]: data[k] for k in data.files if k.startswith("extra_landmarks/")}
        uv = (data["uv_coords"], data["uv_faces"]) if "uv_coords" in data.files else (None, None)
        return cls(
            name=str(data["name"]) if "name" in data.files else os.path.basename(path),
            description=str(data["description"]) if "description" in data.files else "",
            extra_landmarks=extra,
            uv_coords=uv[0],
            uv_faces=uv[1],
            exp_range=data["exp_range"] if "exp_range" in data.files else None,
            **kwargs,
        )

    def replace(self, **changes) -> "FaceModel":
        """A copy with some fields changed (the model itself is immutable)."""
        return dataclasses.replace(self, **changes)
