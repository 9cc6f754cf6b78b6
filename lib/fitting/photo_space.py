"""A fitted view back in the original photo's pixels: crop transform, landmarks, an
overlay on the full photo, and rendered depth and normal maps (doc/fitting.md lists
the files).

Coordinates are continuous pixels (pixel centres at +0.5) as everywhere in
lib.preprocess; `Alignment.matrix` maps photo px to crop px. Depth is the distance
along the camera axis (mm, DESIGN.md camera: D - z, smaller is nearer) of the fitted
mesh as posed in the view; normals are unit camera-space normals (+x right, +y up, +z
towards the camera). Background is NaN in the arrays and black in the pictures.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from PIL import Image

from lib.config.schema import RenderConfig
from lib.geometry import CAMERA_DISTANCE_MM
from lib.preprocess.align import Alignment
from lib.render import render_mesh
from lib.visualize.draw import DETECTED_COLOUR, PREDICTED_COLOUR, draw_landmarks, overlay


@dataclass
class SurfaceMaps:
    """Rendered maps of one view in crop space (S = crop size): depth float32 [S, S] mm,
    normal float32 [S, S, 3], colour float32 [S, S, 3] in [0, 1]; NaN / 0 on the
    background; mask bool [S, S]."""

    depth: np.ndarray
    normal: np.ndarray
    colour: np.ndarray
    mask: np.ndarray


def surface_maps(vertices: torch.Tensor, normals: torch.Tensor, colours: torch.Tensor, faces: torch.Tensor,
                 size: tuple[int, int], render_cfg: RenderConfig) -> list[SurfaceMaps]:
    """One SurfaceMaps per view. vertices, normals, colours [Vw, V, 3] (camera mm, unit,
    [0, 1]); faces long [F, 3]; size (H, W) of the crops; render_cfg: `render.*`."""
    with torch.no_grad():
        depth = CAMERA_DISTANCE_MM - vertices[..., 2:]
        attributes = {"depth": depth, "normal": normals, "colour": colours.clamp(0, 1)}
        render = render_mesh(vertices, faces, attributes, size, cull_backfaces=render_cfg.cull_backfaces,
                             backend=render_cfg.backend)
    result = []
    for k in range(vertices.shape[0]):
        mask = render.mask[k, ..., 0].numpy() > 0.5
        normal = render.images["normal"][k].numpy()
        normal = normal / np.maximum(np.linalg.norm(normal, axis=-1, keepdims=True), 1e-8)
        result.append(SurfaceMaps(
            depth=np.where(mask, render.images["depth"][k, ..., 0].numpy(), np.nan).astype(np.float32),
            normal=np.where(mask[..., None], normal, np.nan).astype(np.float32),
            colour=render.images["colour"][k].numpy().astype(np.float32),
            mask=mask,
        ))
    return result


def crop_to_photo(array: np.ndarray, alignment: Alignment, nearest: bool = False) -> np.ndarray:
    """Resample a crop-space array [S, S(, C)] float32 into the photo's pixels
    [H, W(, C)] (alignment.source_size). Outside the crop is NaN; bilinear lets a NaN
    background eat half a pixel of the silhouette rather than mixing in a fake value."""
    height, width = alignment.source_size
    linear = alignment.matrix[:, :2]
    # cv2 puts pixel centres at integers, we at +0.5 (as lib.preprocess.align.warp_to_crop).
    offset = alignment.matrix[:, 2] + linear @ np.array([0.5, 0.5]) - 0.5
    matrix = np.concatenate([linear, offset[:, None]], axis=1)
    flags = (cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR) | cv2.WARP_INVERSE_MAP
    return cv2.warpAffine(np.asarray(array, np.float32), matrix, (width, height), flags=flags,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(float("nan"),) * 4)


def depth_picture(depth: np.ndarray) -> np.ndarray:
    """uint8 [H, W] grey: nearest surface white, farthest 40, background black."""
    valid = np.isfinite(depth)
    picture = np.zeros(depth.shape, np.uint8)
    if valid.any():
        near, far = float(depth[valid].min()), float(depth[valid].max())
        scaled = 1.0 - (depth[valid] - near) / max(far - near, 1e-6)
        picture[valid] = np.round(40 + 215 * scaled).astype(np.uint8)
    return picture


def normal_picture(normal: np.ndarray) -> np.ndarray:
    """uint8 [H, W, 3]: (n + 1) / 2 as RGB, background black."""
    valid = np.isfinite(normal).all(-1)
    picture = np.zeros(normal.shape, np.uint8)
    picture[valid] = np.round((normal[valid] + 1) * 127.5).astype(np.uint8)
    return picture


def write_view_maps(folder: str, k: int, maps: SurfaceMaps, alignment: Alignment | None) -> None:
    """view<k>_{depth,normal}_crop.{npy,png} and, with an alignment, the same in photo
    space as view<k>_{depth,normal}_photo.{npy,png}."""
    spaces = {"crop": (maps.depth, maps.normal)}
    if alignment is not None:
        spaces["photo"] = (crop_to_photo(maps.depth, alignment), crop_to_photo(maps.normal, alignment))
    for space, (depth, normal) in spaces.items():
        np.save(os.path.join(folder, f"view{k}_depth_{space}.npy"), depth)
        np.save(os.path.join(folder, f"view{k}_normal_{space}.npy"), normal)
        Image.fromarray(depth_picture(depth)).save(os.path.join(folder, f"view{k}_depth_{space}.png"))
        Image.fromarray(normal_picture(normal)).save(os.path.join(folder, f"view{k}_normal_{space}.png"))


def write_photo_view(folder: str, k: int, photo_path: str, photo: np.ndarray, alignment: Alignment,
                     maps: SurfaceMaps, detected_crop: np.ndarray, model_crop: np.ndarray) -> dict:
    """view<k>_photo.json (crop transform, landmarks in photo and crop px) and
    view<k>_photo_overlay.png (the render and landmarks on the full photo).

    photo uint8 [H, W, 3] as read (EXIF-upright); detected_crop, model_crop [68, 2]
    crop px. Returns the JSON document.
    """
    detected = alignment.to_image(detected_crop)
    model = alignment.to_image(model_crop)
    inverse = np.linalg.inv(np.vstack([alignment.matrix, [0.0, 0.0, 1.0]]))[:2]
    doc = {
        "photo": photo_path,
        "photo_size_hw": list(alignment.source_size),
        "crop_size": alignment.crop_size,
        "units": "px, continuous (pixel centres at +0.5), photo as read upright (EXIF applied)",
        "crop_from_photo": alignment.matrix.tolist(),
        "photo_from_crop": inverse.tolist(),
        "landmarks_detected_photo": detected.tolist(),
        "landmarks_model_photo": model.tolist(),
        "landmarks_detected_crop": np.asarray(detected_crop, np.float64).tolist(),
        "landmarks_model_crop": np.asarray(model_crop, np.float64).tolist(),
        "landmark_median_px_photo": float(np.median(np.linalg.norm(model - detected, axis=-1))),
    }
    with open(os.path.join(folder, f"view{k}_photo.json"), "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1, ensure_ascii=False)
    mask = crop_to_photo(maps.mask.astype(np.float32), alignment, nearest=True)
    colour = crop_to_photo(maps.colour, alignment)
    covered = np.isfinite(mask) & (np.nan_to_num(mask) > 0.5) & np.isfinite(colour).all(-1)
    picture = overlay(photo, np.nan_to_num(colour), covered.astype(np.float32), opacity=0.6)
    radius = max(1.5, min(photo.shape[:2]) / 250)
    picture = draw_landmarks(picture, detected, DETECTED_COLOUR, radius)
    picture = draw_landmarks(picture, model, PREDICTED_COLOUR, radius)
    Image.fromarray(picture).save(os.path.join(folder, f"view{k}_photo_overlay.png"))
    return doc
