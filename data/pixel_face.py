"""The Pixel-Face dataset in the layout the seed reads.

    <root>/{train,val}/<subject>/<expression>/<...>/<view 0|1|2>/t.jpg
    <root>/{train,val}/<subject>/<expression>/<...>/fusion/nicp_106_pts.txt
    <root>/val_obj/<subject>/<expression>.obj  (or <subject><expression>.obj,
                                                <subject>_<expression>.obj)

`<...>` is any number of folders (`Images/` in the released data): a sample is every
folder that holds view folders `0/`, `1/`, `2/` with a `t.jpg`. Raw photos are stored
sideways; like the seed, each is rotated 90 degrees clockwise and then flipped
horizontally (together: a transpose) before detection. The 106 3D landmarks (one
"x y z" line each, mm) lose points 3, 15, 17, 25 and 27 as in the seed, leaving
the 101 that `FaceModel.extra_landmarks['pixel_face101']` indexes.
"""
from __future__ import annotations

import os

import numpy as np
import torch

from data.cache import PreprocessCache
from data.samples import PreparedViews, ViewGroup
from lib.errors import UserError
from lib.preprocess import Preprocessor, read_image

DROPPED_106 = (3, 15, 17, 25, 27)
"""Indices of the 106 Pixel-Face points the seed ignores (ignore_index_5)."""

PHOTO_NAME = "t.jpg"
LANDMARKS_FILE = os.path.join("fusion", "nicp_106_pts.txt")
LOADER_TAG = "pixel_face:rot90cw+hflip"


def read_pixel_face_photo(path: str) -> np.ndarray:
    """A raw Pixel-Face photo upright: uint8 [W0, H0, 3] (rotated 90 deg clockwise, then
    flipped left-right, i.e. transposed)."""
    image = read_image(path)
    return np.ascontiguousarray(np.fliplr(np.rot90(image, k=-1)))


def read_landmarks106(path: str) -> np.ndarray:
    """float32 [101, 3] mm from a nicp_106_pts.txt (UserError when malformed)."""
    try:
        points = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: not a readable list of 'x y z' lines ({err})") from None
    if points.shape != (106, 3) or not np.isfinite(points).all():
        raise UserError(f"{path}: expected 106 finite 'x y z' lines, got shape {points.shape}")
    return np.delete(points, DROPPED_106, axis=0).astype(np.float32)


def _val_mesh(root: str, subject: str, expression: str) -> str:
    for candidate in (
        os.path.join(root, "val_obj", subject, f"{expression}.obj"),
        os.path.join(root, "val_obj", f"{subject}{expression}.obj"),
        os.path.join(root, "val_obj", f"{subject}_{expression}.obj"),
    ):
        if os.path.isfile(candidate):
            return candidate
    return ""


def discover_pixel_face(root: str, split: str) -> tuple[list[ViewGroup], list[tuple[str, str]]]:
    """(groups, problems) of one split. Extras per group: landmarks3d float32 [101, 3]
    (mm), mesh_path str (validation mesh or '')."""
    split_dir = os.path.join(root, split)
    if not os.path.isdir(split_dir):
        raise UserError(f"{split_dir}: Pixel-Face split folder not found (data.root should hold train/ and val/)")
    groups, problems = [], []
    for folder, dirs, _ in os.walk(split_dir):
        dirs.sort()
        views = [os.path.join(folder, str(v), PHOTO_NAME) for v in range(3)]
        present = [p if os.path.isfile(p) else None for p in views]
        if not any(present):
            continue
        dirs[:] = [d for d in dirs if d not in ("0", "1", "2", "fusion")]
        parts = os.path.relpath(folder, split_dir).split(os.sep)
        if len(parts) < 2:
            problems.append((folder, "views must sit under <subject>/<expression>/"))
            continue
        subject, expression = parts[0], parts[1]
        name = f"{subject}/{expression}"
        try:
            landmarks3d = read_landmarks106(os.path.join(folder, LANDMARKS_FILE))
        except UserError as err:
            problems.append((folder, f"{err}; sample left out"))
            continue
        extras = {"landmarks3d": torch.from_numpy(landmarks3d), "mesh_path": _val_mesh(root, subject, expression) if split == "val" else ""}
        groups.append(ViewGroup(name, tuple(present), extras))
    if not groups:
        raise UserError(f"{split_dir}: no samples (<subject>/<expression>/.../0|1|2/{PHOTO_NAME} with fusion/nicp_106_pts.txt)")
    return groups, problems


class PixelFace(PreparedViews):
    """Pixel-Face split ('train' | 'val') as sample dicts (data/samples.py) with
    landmarks3d [101, 3] mm and mesh_path."""

    def __init__(self, root: str, split: str, preprocessor: Preprocessor, cache_dir: str, progress: bool = True):
        groups, problems = discover_pixel_face(root, split)
        cache = PreprocessCache(cache_dir, preprocessor, tag=LOADER_TAG, loader=read_pixel_face_photo)
        super().__init__(groups, cache, problems, progress)
