"""The Pixel-Face dataset in the layout the seed reads.

    <root>/{train,val}/<subject>/<expression>/<...>/<view 0|1|2>/t.jpg
    <root>/{train,val}/<subject>/<expression>/<...>/fusion/nicp_106_pts.txt
    <root>/val_obj/<subject>/<expression>.obj  (or <subject><expression>.obj,
                                                <subject>_<expression>.obj)

`<...>` is any number of folders (`Images/` in the released data): a sample is every
folder that holds view folders `0/`, `1/`, `2/` with a `t.jpg`. Raw photos are stored
sideways; like the seed, each is rotated 90 degrees clockwise and then flipped
horizontally (together: a transpose) before detection. The 106 3D landmarks (one
"x y z" line each) lose points 3, 15, 17, 25 and 27 as in the seed, leaving the 101
that `FaceModel.extra_landmarks['pixel_face101']` indexes.

Units: the released landmark files and validation meshes are in BFM decimetres (the
seed multiplies both by 100: network/MVRnet.py:148, lib/now_evaluation/
compute_error.py:111). `data.pixel_face_unit` names the unit (default dm); loaders
convert to mm and stop with one line when the result is not face-sized.

Split lists: the seed fixes its split with `list_txt/shallow_path_{train,val}.npy`
(arrays of 'dataset/pixel_face/<split>/<subject>/<expression>/<folder>' strings,
419 / 105 identities). With `data.pixel_face_lists` naming that folder only the
listed samples are used, and listed samples missing from the tree are reported.
"""
from __future__ import annotations

import os

import numpy as np
import torch

from data.cache import PreprocessCache
from data.samples import PreparedViews, ViewGroup
from lib.config.schema import DataConfig
from lib.errors import UserError
from lib.preprocess import Preprocessor, read_image
from lib.units import UnitError, check_face_extent, to_mm

DROPPED_106 = (3, 15, 17, 25, 27)
"""Indices of the 106 Pixel-Face points the seed ignores (ignore_index_5)."""

PHOTO_NAME = "t.jpg"
LANDMARKS_FILE = os.path.join("fusion", "nicp_106_pts.txt")
LOADER_TAG = "pixel_face:rot90cw+hflip"
SEED_UNIT = "dm"
"""The unit of the released files (BFM decimetres); `data.pixel_face_unit`'s default."""
UNIT_KEY = "data.pixel_face_unit"
LIST_FILES = {"train": "shallow_path_train.npy", "val": "shallow_path_val.npy"}
LIST_DEPTH = 3  # <subject>/<expression>/<folder> below the split in the seed's lists


def read_pixel_face_photo(path: str) -> np.ndarray:
    """A raw Pixel-Face photo upright: uint8 [W0, H0, 3] (rotated 90 deg clockwise, then
    flipped left-right, i.e. transposed)."""
    image = read_image(path)
    return np.ascontiguousarray(np.fliplr(np.rot90(image, k=-1)))


def read_landmarks106(path: str, unit: str = SEED_UNIT) -> np.ndarray:
    """float32 [101, 3] mm from a nicp_106_pts.txt whose lengths are in `unit` (the
    released files': dm). UserError when malformed or not face-sized in that unit."""
    try:
        points = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: not a readable list of 'x y z' lines ({err})") from None
    if points.shape != (106, 3) or not np.isfinite(points).all():
        raise UserError(f"{path}: expected 106 finite 'x y z' lines, got shape {points.shape}")
    kept = to_mm(np.delete(points, DROPPED_106, axis=0), unit, UNIT_KEY)
    check_face_extent(kept, path, unit, UNIT_KEY)
    return kept.astype(np.float32)


def read_split_list(folder: str, split: str) -> list[str]:
    """The seed's list of `split`'s samples as '<subject>/<expression>/<folder>' paths
    (from list_txt/shallow_path_<split>.npy; read without unpickling)."""
    path = os.path.join(folder, LIST_FILES[split])
    try:
        entries = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise UserError(f"{path}: split list not found (data.pixel_face_lists names the seed's list_txt/ folder)") from None
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: not a numpy array of path strings ({str(err).splitlines()[0]})") from None
    if entries.dtype.kind != "U" or entries.ndim != 1:
        raise UserError(f"{path}: expected a 1-D array of path strings, got {entries.dtype} {entries.shape}")
    out = []
    for entry in entries.tolist():
        parts = [p for p in entry.replace("\\", "/").split("/") if p]
        if len(parts) < LIST_DEPTH:
            raise UserError(f"{path}: entry {entry!r} is not '<...>/<subject>/<expression>/<folder>'")
        out.append("/".join(parts[-LIST_DEPTH:]))
    return out


def _val_mesh(root: str, subject: str, expression: str) -> str:
    for candidate in (
        os.path.join(root, "val_obj", subject, f"{expression}.obj"),
        os.path.join(root, "val_obj", f"{subject}{expression}.obj"),
        os.path.join(root, "val_obj", f"{subject}_{expression}.obj"),
    ):
        if os.path.isfile(candidate):
            return candidate
    return ""


def discover_pixel_face(data: DataConfig, split: str) -> tuple[list[ViewGroup], list[tuple[str, str]]]:
    """(groups, problems) of one split under data.root (unit data.pixel_face_unit, only
    the samples of data.pixel_face_lists when set). Extras per group: landmarks3d
    float32 [101, 3] (mm), mesh_path str (validation mesh or '')."""
    root = data.root
    split_dir = os.path.join(root, split)
    listed = set(read_split_list(data.pixel_face_lists, split)) if data.pixel_face_lists else None
    found = set()
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
        relative = "/".join(parts)
        if listed is not None:
            if relative not in listed:
                continue
            found.add(relative)
        try:
            landmarks3d = read_landmarks106(os.path.join(folder, LANDMARKS_FILE), data.pixel_face_unit)
        except UnitError:  # the whole dataset's unit, not this file's fault: stop
            raise
        except UserError as err:
            problems.append((folder, f"{err}; sample left out"))
            continue
        extras = {"landmarks3d": torch.from_numpy(landmarks3d), "mesh_path": _val_mesh(root, subject, expression) if split == "val" else ""}
        groups.append(ViewGroup(name, tuple(present), extras))
    for missing in sorted(set(listed or ()) - found):
        problems.append((os.path.join(split_dir, missing), f"listed in {LIST_FILES[split]} but not found"))
    if not groups:
        raise UserError(f"{split_dir}: no samples (<subject>/<expression>/.../0|1|2/{PHOTO_NAME} with fusion/nicp_106_pts.txt)")
    return groups, problems


class PixelFace(PreparedViews):
    """Pixel-Face split ('train' | 'val') of data.root as sample dicts (data/samples.py)
    with landmarks3d [101, 3] mm and mesh_path."""

    def __init__(self, data: DataConfig, split: str, preprocessor: Preprocessor, cache_dir: str, progress: bool = True):
        groups, problems = discover_pixel_face(data, split)
        cache = PreprocessCache(cache_dir, preprocessor, tag=LOADER_TAG, loader=read_pixel_face_photo)
        super().__init__(groups, cache, problems, progress)
