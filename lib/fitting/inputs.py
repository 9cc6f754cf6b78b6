"""Finding subjects and their views in a user's input folder.

Subjects are what a user means by them (doc/fitting.md):

- the seed's `samples/` layout: sub-folders `0/ 1/ 2/` (one per view: left, front,
  right) holding `<name><view>.<ext>`, e.g. `0/00331070.png`, `1/00331071.png`;
  a subject is every file sharing `<name>`;
- a sub-folder is one subject, its photos (sorted by file name) are the views;
- a photo lying directly in the input folder is a subject of its own (a folder of
  portraits is a folder of people, as DECA and 3DDFA treat it). `--input` may also
  name one photo.

Every subject gets its own output folder name: the readable (Unicode) name with only
the characters file systems refuse replaced, made unique (case-insensitively, for
macOS and Windows) by a `-2`, `-3`, ... suffix. Subjects whose folder holds no image
are still listed (with no views) so the caller can report them and go on.
"""
from __future__ import annotations

import os
import re
import unicodedata
from dataclasses import dataclass

from lib.errors import UserError
from lib.preprocess.image_io import is_image_file

_UNSAFE = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]+')
"""Characters some file system refuses in a name (Windows' set plus controls)."""

_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)), *(f"lpt{i}" for i in range(1, 10))}
"""Windows device names, refused as folder names whatever the extension."""


@dataclass(frozen=True)
class Subject:
    """name: output folder name (unique within one discovery); views: image paths in
    view order (may be empty)."""

    name: str
    views: tuple[str, ...]


def _images(folder: str) -> list[str]:
    return [os.path.join(folder, n) for n in sorted(os.listdir(folder)) if is_image_file(os.path.join(folder, n))]


def _subdirs(folder: str) -> list[str]:
    return sorted(n for n in os.listdir(folder) if os.path.isdir(os.path.join(folder, n)) and not n.startswith("."))


def _stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def _samples_layout(root: str, subdirs: list[str]) -> list[Subject] | None:
    """Subjects of the seed's layout, or None when `root` is not in it."""
    if not subdirs or any(not d.isdigit() for d in subdirs):
        return None
    by_name: dict[str, dict[int, str]] = {}
    for d in subdirs:
        view = int(d)
        for path in _images(os.path.join(root, d)):
            stem = _stem(path)
            if not re.fullmatch(rf".+{view}", stem):
                return None
            by_name.setdefault(stem[: -len(str(view))], {})[view] = path
    return [Subject(name, tuple(views[v] for v in sorted(views))) for name, views in sorted(by_name.items())]


def safe_name(name: str) -> str:
    """A readable folder name accepted by every common file system: Unicode kept
    (NFC, as macOS returns names decomposed), refused characters replaced by `_`,
    leading/trailing dots and spaces dropped, Windows device names suffixed."""
    cleaned = _UNSAFE.sub("_", unicodedata.normalize("NFC", name)).strip(". ")
    if not cleaned:
        return "subject"
    if cleaned.split(".")[0].lower() in _RESERVED:
        cleaned += "_"
    return cleaned


def unique_names(names: list[str]) -> list[str]:
    """safe_name of each, made unique case-insensitively by `-2`, `-3`, ... in order."""
    taken: set[str] = set()
    result = []
    for name in names:
        base = safe_name(name)
        candidate, count = base, 1
        while candidate.casefold() in taken:
            count += 1
            candidate = f"{base}-{count}"
        taken.add(candidate.casefold())
        result.append(candidate)
    return result


def discover_subjects(root: str) -> list[Subject]:
    """Subjects under `root` (see the module docstring), or the one-photo subject of
    `root` when it is an image file. Raises UserError when `root` is neither, or holds
    neither images nor sub-folders."""
    if is_image_file(root):
        return [Subject(safe_name(_stem(root)), (root,))]
    if not os.path.isdir(root):
        raise UserError(f"--input {root}: not a folder or a photo; give a photo, a folder of photos or of subject folders")
    subdirs = _subdirs(root)
    subjects = _samples_layout(root, subdirs)
    if subjects is None:
        loose = [Subject(_stem(p), (p,)) for p in _images(root)]
        folders = [Subject(d, tuple(_images(os.path.join(root, d)))) for d in subdirs]
        subjects = folders + loose
    if not subjects:
        raise UserError(f"--input {root}: no images (any format Pillow reads: .png .jpg .ppm .tif .webp .heic ...) "
                        "and no subject folders found")
    names = unique_names([s.name for s in subjects])
    return [Subject(name, s.views) for name, s in zip(names, subjects)]
