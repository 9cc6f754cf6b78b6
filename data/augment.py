"""The seed's photometric augmentation of training samples (doc/seed.md).

The seed (dataset/pixel_face/dataset_preprocess.py:35-65, 363, 438-466) draws one
brightness, contrast, saturation and sharpness factor per sample, uniformly in
[1 - x, 1 + x] with x = 0.5, applies them with PIL's ImageEnhance in that order to the
three views alike, then with probability 0.3 blurs all three (PIL GaussianBlur, radius
2). The augmented image is both the network input and the photometric target. Here the
same operations run through PIL on the sample's `rgb` (which serves as both), with
the draws seeded by (train.seed, epoch, sample index) instead of the global random
state, so a run is reproducible with any number of data-loader workers.
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageFilter
from torch.utils.data import Dataset

from lib.config.schema import AugmentConfig
from lib.geometry.camera import REFERENCE_SIZE

ENHANCERS = (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color, ImageEnhance.Sharpness)
"""Applied in this order, as the seed's ColorJitter."""


def draw_augmentation(rng: np.random.Generator, cfg: AugmentConfig) -> tuple[list[float], bool]:
    """(4 enhancement factors, blur or not) for one sample. Always consumes the same
    number of draws, so later draws do not depend on the settings' values."""
    spreads = (cfg.brightness, cfg.contrast, cfg.saturation, cfg.sharpness)
    uniforms = rng.random(len(spreads) + 1)
    factors = [max(1.0 - x, 0.0) + u * (1.0 + x - max(1.0 - x, 0.0)) for x, u in zip(spreads, uniforms)]
    return factors, bool(uniforms[-1] < cfg.blur_prob)


def augment_image(image: np.ndarray, factors: list[float], blur: bool, blur_radius_px: float) -> np.ndarray:
    """uint8 [H, W, 3] -> uint8 [H, W, 3]: the enhancements (ENHANCERS order), then the
    Gaussian blur of radius `blur_radius_px` (at this image's size) when `blur`."""
    picture = Image.fromarray(image)
    for enhancer, factor in zip(ENHANCERS, factors):
        picture = enhancer(picture).enhance(factor)
    if blur:
        picture = picture.filter(ImageFilter.GaussianBlur(blur_radius_px))
    return np.asarray(picture)


def augment_views(rgb: torch.Tensor, view_mask: torch.Tensor, rng: np.random.Generator, cfg: AugmentConfig) -> torch.Tensor:
    """rgb float [Vw, 3, H, W] in [0, 1] (multiples of 1/255, from 8-bit photos) and
    view_mask bool [Vw] -> a new tensor, every present view augmented with one draw;
    missing views are left as they are."""
    factors, blur = draw_augmentation(rng, cfg)
    radius = cfg.blur_radius_px * rgb.shape[-1] / REFERENCE_SIZE
    out = rgb.clone()
    for v in range(rgb.shape[0]):
        if not bool(view_mask[v]):
            continue
        image = (rgb[v].permute(1, 2, 0).numpy() * 255.0).round().clip(0, 255).astype(np.uint8)
        augmented = augment_image(image, factors, blur, radius)
        out[v] = torch.from_numpy(augmented.astype(np.float32) / 255.0).permute(2, 0, 1)
    return out


class AugmentedViews(Dataset):
    """A dataset of sample dicts whose `rgb` is augmented (seeded by seed, epoch, index).

    The trainer calls `set_epoch` before each epoch (forwarded to the wrapped dataset);
    `skipped` and `skipped_summary` are the wrapped dataset's.
    """

    def __init__(self, dataset: Dataset, cfg: AugmentConfig, seed: int):
        self.dataset, self.cfg, self.seed, self.epoch = dataset, cfg, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    @property
    def skipped(self) -> list:
        return getattr(self.dataset, "skipped", [])

    def skipped_summary(self) -> str:
        return self.dataset.skipped_summary() if hasattr(self.dataset, "skipped_summary") else ""

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        sample = dict(self.dataset[index])
        rng = np.random.default_rng([self.seed, self.epoch, index])
        sample["rgb"] = augment_views(sample["rgb"], sample["view_mask"], rng, self.cfg)
        return sample
