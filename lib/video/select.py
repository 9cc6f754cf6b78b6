"""Choosing a subject's views from a head-turn video: per examined frame the 68
landmarks, the yaw they imply and the sharpness of the face; per wanted yaw the
sharpest frame close to it (doc/video.md)."""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import asdict, dataclass

import cv2
import numpy as np
import torch
from PIL import Image

from lib.config.schema import Config, VideoConfig
from lib.errors import UserError
from lib.fitting.fit import FitTarget, fit_views
from lib.fitting.inputs import Subject
from lib.morphable import MorphableModel
from lib.preprocess.landmarks import detect_face
from lib.video.reader import read_frames

log = logging.getLogger(__name__)

FRAMES_FILE = "video_frames.json"
"""Written beside a video subject's results: every examined frame and the chosen ones."""


@dataclass
class FrameInfo:
    """One examined frame: index in the stream, time (s), yaw (deg, the Euler y angle
    of `lib.geometry`: negative turns the face to the image's left like
    data.synthetic's first view) and sharpness (variance of the Laplacian of the
    face box rescaled to `video.sharpness_size`, grey levels^2); yaw and sharpness are
    None without a face."""

    index: int
    time_s: float
    yaw_deg: float | None
    sharpness: float | None


def frame_sharpness(image: np.ndarray, landmarks: np.ndarray, size: int) -> float:
    """Variance of the Laplacian inside the landmarks' box (10 % margin), after
    rescaling the box to size x size: blur from motion or focus lowers it, and the
    rescale makes near and far faces comparable. image uint8 [H, W, 3]; landmarks
    [68, 2] px."""
    low, high = landmarks.min(0), landmarks.max(0)
    margin = 0.1 * (high - low)
    x0, y0 = np.maximum(np.floor(low - margin), 0).astype(int)
    x1, y1 = np.minimum(np.ceil(high + margin), [image.shape[1], image.shape[0]]).astype(int)
    grey = cv2.cvtColor(np.ascontiguousarray(image[y0:y1, x0:x1]), cv2.COLOR_RGB2GRAY)
    box = cv2.resize(grey, (size, size), interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(box.astype(np.float64), cv2.CV_64F).var())


def pick_views(frames: list[FrameInfo], cfg: VideoConfig) -> list[tuple[float, FrameInfo]]:
    """(target yaw, chosen frame) for each of `cfg.target_yaw_deg`, in that order: the
    sharpest frame within `yaw_window_deg` of the target, else the frame of nearest
    yaw; targets with no frame within `max_yaw_error_deg` are left out, and a frame
    is used once at most."""
    faces = [f for f in frames if f.yaw_deg is not None]
    chosen, used = [], set()
    for target in cfg.target_yaw_deg:
        free = [f for f in faces if f.index not in used and abs(f.yaw_deg - target) <= cfg.max_yaw_error_deg]
        if not free:
            continue
        near = [f for f in free if abs(f.yaw_deg - target) <= cfg.yaw_window_deg]
        best = max(near, key=lambda f: f.sharpness) if near else min(free, key=lambda f: abs(f.yaw_deg - target))
        used.add(best.index)
        chosen.append((float(target), best))
    return chosen


def estimate_yaw(landmarks: np.ndarray, image_size: tuple[int, int], morphable: MorphableModel, cfg: Config) -> np.ndarray:
    """Yaw (deg) [N] of N frames of one person from their landmarks [N, 68, 2] px in
    frames of image_size (H, W): the landmark stages of the fitting (pose, then shape
    and pose; `video.steps_pose` / `video.steps_shape` L-BFGS evaluations) with one
    identity shared by all frames and an expression per frame.

    Why a fit and not the closed-form pose alone: a detector's points sit where its
    own face template puts them, not on the model's landmark vertices; with the mean
    face's depths the closed form then reads 25 deg as 35 deg on the built-in model's
    renders (doc/video.md). An identity fitted to every frame at once learns the
    depths that explain all views together and brings the error to a few degrees.
    The frames are rescaled to `fit.crop_size` (the camera's focal length scales with
    the image, so the geometry is unchanged) to keep the fit's image buffers small.
    """
    height, width = image_size
    scale = cfg.fit.crop_size / max(height, width)
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    factor = torch.tensor([size[1] / width, size[0] / height], dtype=torch.float32)
    target = FitTarget(
        rgb=torch.zeros(len(landmarks), 3, *size), landmarks=torch.from_numpy(np.asarray(landmarks, np.float32)) * factor,
        parsing=None, skin_weight=None,
    )
    fit_cfg = dataclasses.replace(cfg.fit, steps_pose=cfg.video.steps_pose, steps_shape=cfg.video.steps_shape,
                                  steps_appearance=0)
    result = fit_views(morphable, target, fit_cfg, cfg.loss, cfg.render, expression_per_view=True)
    return np.degrees(result.coeffs.rotation[:, 1].numpy())


def examine_frames(images: np.ndarray, indices, times, morphable: MorphableModel, cfg: Config) -> list[FrameInfo]:
    """FrameInfo of each image uint8 [N, H, W, 3]: landmarks by `preprocess.landmarks`,
    yaw by `estimate_yaw` over the frames with a face, sharpness by `frame_sharpness`."""
    found, infos = [], []
    for image, index, time_s in zip(images, indices, times):
        face = detect_face(image, cfg.preprocess.landmarks, f"frame {index}")
        infos.append(FrameInfo(int(index), float(time_s), None, None))
        if face is not None:
            found.append((len(infos) - 1, face.points68, frame_sharpness(image, face.points68, cfg.video.sharpness_size)))
    if found:
        yaws = estimate_yaw(np.stack([points for _, points, _ in found]), images.shape[1:3], morphable, cfg)
        for (k, _, sharp), yaw in zip(found, yaws.tolist()):
            infos[k].yaw_deg, infos[k].sharpness = yaw, sharp
    return infos


def video_subject(path: str, folder: str, morphable: MorphableModel, cfg: Config) -> Subject:
    """Read the video at `path`, choose its views and write them as PNGs under
    `folder/frames/` with `folder/video_frames.json` (every examined frame's index,
    time, yaw and sharpness, and the chosen ones). Returns the subject (named after
    the folder) whose views are those PNGs in target order (left, front, right).
    Raises UserError naming the file when no frame shows a face."""
    video = read_frames(path, cfg.video.max_frames)
    infos = examine_frames(video.images, video.indices, video.times_s, morphable, cfg)
    chosen = pick_views(infos, cfg.video)
    if not chosen:
        if all(f.yaw_deg is None for f in infos):
            raise UserError(f"{path}: no face found in any of the {len(infos)} frames examined")
        raise UserError(f"{path}: no frame within video.max_yaw_error_deg={cfg.video.max_yaw_error_deg} "
                        f"of any of video.target_yaw_deg={cfg.video.target_yaw_deg}")
    frames_dir = os.path.join(folder, "frames")
    os.makedirs(frames_dir, exist_ok=True)
    position = {int(index): k for k, index in enumerate(video.indices)}
    views, records = [], []
    for target, info in chosen:
        file = os.path.join(frames_dir, f"frame{info.index:06d}.png")
        Image.fromarray(video.images[position[info.index]]).save(file)
        views.append(file)
        records.append({"target_yaw_deg": target, **asdict(info), "file": os.path.relpath(file, folder)})
    missing = [t for t in cfg.video.target_yaw_deg if t not in [target for target, _ in chosen]]
    if missing:
        log.warning("%s: no frame near yaw %s deg; reconstructing from %d view(s)", path, missing, len(chosen))
    summary = {
        "video": os.path.abspath(path), "fps": video.fps, "total_frames": video.total,
        "chosen": records, "targets_without_frame": missing, "examined": [asdict(f) for f in infos],
    }
    with open(os.path.join(folder, FRAMES_FILE), "w") as f:
        json.dump(summary, f, indent=1)
    return Subject(os.path.basename(os.path.normpath(folder)), tuple(views))
