"""Preprocessed views -> the sample dicts every dataset returns (team brief):

    rgb          float32 [Vw, 3, H, W] in [0, 1]
    parsing      int64   [Vw, H, W] (10 classes, PARSING_CLASSES)
    skin_weight  float32 [Vw, H, W] (0.25 background / 0.5 skin / 0.99 features)
    landmarks    float32 [Vw, 68, 2] px in the crop
    view_mask    bool    [Vw] (False: the view is missing or unusable; its arrays are 0)
    name         str
    + optional extras (landmarks3d [P, 3] mm, ...)

Views are ordered left, front, right (index 0, 1, 2).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from data.cache import PreprocessCache
from lib.errors import UserError

log = logging.getLogger(__name__)

VIEW_NAMES = ("left", "front", "right")


def views_to_sample(views: list[dict | None], name: str, size: int, extras: dict | None = None) -> dict:
    """views: per view None or a dict with crop uint8 [S, S, 3], landmarks [68, 2],
    parsing uint8 [S, S], skin_weight [S, S] (e.g. a PreprocessCache entry)."""
    count = len(views)
    rgb = torch.zeros(count, 3, size, size)
    parsing = torch.zeros(count, size, size, dtype=torch.long)
    skin_weight = torch.zeros(count, size, size)
    landmarks = torch.zeros(count, 68, 2)
    view_mask = torch.zeros(count, dtype=torch.bool)
    for v, view in enumerate(views):
        if view is None:
            continue
        rgb[v] = torch.from_numpy(np.array(view["crop"], dtype=np.float32) / 255.0).permute(2, 0, 1)
        parsing[v] = torch.from_numpy(np.array(view["parsing"], dtype=np.int64))
        skin_weight[v] = torch.from_numpy(np.array(view["skin_weight"], dtype=np.float32))
        landmarks[v] = torch.from_numpy(np.array(view["landmarks"], dtype=np.float32))
        view_mask[v] = True
    sample = {"rgb": rgb, "parsing": parsing, "skin_weight": skin_weight, "landmarks": landmarks, "view_mask": view_mask, "name": name}
    sample.update(extras or {})
    return sample


@dataclass(frozen=True)
class ViewGroup:
    """One multi-view sample to prepare: name, a photo path (or None) per view, extras
    added to its sample dict as they are (tensors, strings)."""

    name: str
    paths: tuple
    extras: dict = field(default_factory=dict)


class PreparedViews(Dataset):
    """Multi-view photos, preprocessed once through a PreprocessCache, as sample dicts.

    Every photo is prepared when the dataset is built (progress bar); bad photos and
    missing views are listed in `skipped` as (path or name, message) and their views
    masked out; a group with no usable view is dropped. Later reads (also from
    data-loader workers) only memory-map finished cache entries.

    groups: the ViewGroups; cache: PreprocessCache; problems: messages found while
    discovering the groups (listed in `skipped` too).
    """

    def __init__(self, groups: list[ViewGroup], cache: PreprocessCache, problems: list | None = None, progress: bool = True):
        self.cache = cache
        self.size = cache.preprocessor.crop_size
        self.skipped: list[tuple[str, str]] = list(problems or [])
        self.groups: list[ViewGroup] = []
        total = sum(p is not None for g in groups for p in g.paths)
        with tqdm(total=total, desc="preprocess", unit="photo", disable=not progress) as bar:
            for group in groups:
                usable = []
                for view, path in enumerate(group.paths):
                    if path is None:
                        self.skipped.append((group.name, f"view {view} ({VIEW_NAMES[view] if view < 3 else view}) is missing"))
                        usable.append(None)
                        continue
                    try:
                        cache.get(path)
                        usable.append(path)
                    except UserError as err:
                        self.skipped.append((path, str(err)))
                        usable.append(None)
                    bar.update(1)
                if any(p is not None for p in usable):
                    self.groups.append(ViewGroup(group.name, tuple(usable), group.extras))
                else:
                    self.skipped.append((group.name, "no usable view, sample left out"))
        for what, message in self.skipped:
            log.warning("skipped %s", message if message.startswith(what) else f"{what}: {message}")

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, index: int) -> dict:
        group = self.groups[index]
        views = [None if path is None else self.cache.get(path) for path in group.paths]
        return views_to_sample(views, group.name, self.size, group.extras)

    def skipped_summary(self) -> str:
        """Multi-line list of what was skipped and why (empty when nothing was)."""
        return "\n".join(message if message.startswith(what) else f"{what}: {message}" for what, message in self.skipped)
