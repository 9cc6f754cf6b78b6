"""Folders of views: the user's own multi-view photos.

Accepted layouts under --input / data.root (views: 0 = left, 1 = front, 2 = right):

1. The seed's `samples/` layout: folders `0/`, `1/`, `2/`, each holding
   `<name><view>.<ext>` (e.g. `0/anna0.jpg`, `1/anna1.jpg`, `2/anna2.jpg`).
2. One folder per subject: `<subject>/` holding its views, assigned by a trailing
   view digit (`x0.jpg`, `x1.jpg`, `x2.jpg`), else by the words left/front/right in
   the file name, else, with exactly three photos, by sorted file name.
3. The root itself holding one subject's views (rules of 2).

Image files: .png .jpg .jpeg .bmp .webp .tif .tiff (any case).
"""
from __future__ import annotations

import os
import re

from data.cache import PreprocessCache
from data.samples import VIEW_NAMES, PreparedViews, ViewGroup
from lib.errors import UserError
from lib.preprocess import Preprocessor

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def _images(folder: str) -> list[str]:
    return sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(folder, f)))


def _assign_views(folder: str, files: list[str], num_views: int) -> tuple[list | None, str]:
    """Paths per view for one subject's files, or (None, reason)."""
    stems = [os.path.splitext(f)[0] for f in files]
    by_digit = {}
    for f, stem in zip(files, stems):
        match = re.search(r"(\d)$", stem)
        if match and int(match.group(1)) < num_views:
            by_digit.setdefault(int(match.group(1)), []).append(f)
    if by_digit and all(len(v) == 1 for v in by_digit.values()) and sum(map(len, by_digit.values())) == len(files):
        return [os.path.join(folder, by_digit[v][0]) if v in by_digit else None for v in range(num_views)], ""
    if num_views == 3:
        by_word = {}
        for f, stem in zip(files, stems):
            words = [w for w in VIEW_NAMES if w in stem.lower()]
            if len(words) == 1:
                by_word.setdefault(VIEW_NAMES.index(words[0]), []).append(f)
        if by_word and all(len(v) == 1 for v in by_word.values()) and sum(map(len, by_word.values())) == len(files):
            return [os.path.join(folder, by_word[v][0]) if v in by_word else None for v in range(num_views)], ""
    if len(files) == num_views:
        return [os.path.join(folder, f) for f in files], ""
    return None, (
        f"cannot tell which of its {len(files)} photos is which view; name them <name>0/1/2 "
        "(left, front, right) or put exactly three photos in the folder"
    )


def discover_folder_views(root: str, num_views: int) -> tuple[list[ViewGroup], list[tuple[str, str]]]:
    """(groups, problems) for a folder in one of the module's layouts.

    Raises UserError when `root` is missing or holds no photos in any layout.
    """
    if not os.path.isdir(root):
        raise UserError(f"{root}: input folder not found")
    view_dirs = [str(v) for v in range(num_views) if os.path.isdir(os.path.join(root, str(v)))]
    groups: list[ViewGroup] = []
    problems: list[tuple[str, str]] = []
    if view_dirs:
        subjects: dict[str, list] = {}
        for v in view_dirs:
            folder = os.path.join(root, v)
            for f in _images(folder):
                stem = os.path.splitext(f)[0]
                name = stem[:-1] if stem.endswith(v) and len(stem) > 1 else stem
                paths = subjects.setdefault(name, [None] * num_views)
                if paths[int(v)] is not None:
                    problems.append((os.path.join(folder, f), f"second photo of '{name}' for view {v}, ignored"))
                    continue
                paths[int(v)] = os.path.join(folder, f)
        groups = [ViewGroup(name, tuple(paths)) for name, paths in sorted(subjects.items())]
    else:
        subject_dirs = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)) and _images(os.path.join(root, d)))
        folders = [(d, os.path.join(root, d)) for d in subject_dirs]
        if not folders and _images(root):
            folders = [(os.path.basename(os.path.normpath(root)) or "subject", root)]
        for name, folder in folders:
            paths, reason = _assign_views(folder, _images(folder), num_views)
            if paths is None:
                problems.append((folder, reason))
            else:
                groups.append(ViewGroup(name, tuple(paths)))
    if not groups:
        detail = f" ({problems[0][0]}: {problems[0][1]})" if problems else ""
        raise UserError(f"{root}: no photos found in a known layout (0/ 1/ 2/ view folders, one folder per subject, or the views themselves){detail}")
    return groups, problems


class FolderViews(PreparedViews):
    """Dataset of the user's folders of views (sample dicts of data/samples.py).

    root: the folder; preprocessor: settings (PreprocessConfig, crop size, face model);
    cache_dir: where the PreprocessCache lives; num_views: views per subject.
    """

    def __init__(self, root: str, preprocessor: Preprocessor, cache_dir: str, num_views: int, progress: bool = True):
        groups, problems = discover_folder_views(root, num_views)
        super().__init__(groups, PreprocessCache(cache_dir, preprocessor), problems, progress)
