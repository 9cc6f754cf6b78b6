"""Finding subjects and their views in a user's input folder.

Two layouts are understood (doc/fitting.md):

- the seed's `samples/` layout: sub-folders `0/ 1/ 2/` (one per view: left, front,
  right) holding `<name><view>.<ext>`, e.g. `0/00331070.png`, `1/00331071.png`;
  a subject is every file sharing `<name>`;
- one folder per subject holding its views (sorted by file name), or a single folder
  of views that is itself the subject.

Subjects whose folder holds no image are still listed (with no views) so the caller
can report them and go on with the others.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

from lib.errors import UserError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


@dataclass(frozen=True)
class Subject:
    """name: output folder name; views: image paths in view order (may be empty)."""

    name: str
    views: tuple[str, ...]


def _images(folder: str) -> list[str]:
    names = sorted(n for n in os.listdir(folder) if n.lower().endswith(IMAGE_EXTENSIONS))
    return [os.path.join(folder, n) for n in names if os.path.isfile(os.path.join(folder, n))]


def _subdirs(folder: str) -> list[str]:
    return sorted(n for n in os.listdir(folder) if os.path.isdir(os.path.join(folder, n)) and not n.startswith("."))


def _samples_layout(root: str, subdirs: list[str]) -> list[Subject] | None:
    """Subjects of the seed's layout, or None when `root` is not in it."""
    if not subdirs or any(not d.isdigit() for d in subdirs):
        return None
    by_name: dict[str, dict[int, str]] = {}
    for d in subdirs:
        view = int(d)
        for path in _images(os.path.join(root, d)):
            stem = os.path.splitext(os.path.basename(path))[0]
            if not re.fullmatch(rf".+{view}", stem):
                return None
            by_name.setdefault(stem[: -len(str(view))], {})[view] = path
    return [Subject(name, tuple(views[v] for v in sorted(views))) for name, views in sorted(by_name.items())]


def safe_name(name: str) -> str:
    """A folder name that is safe on every file system."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "subject"


def discover_subjects(root: str) -> list[Subject]:
    """Subjects under `root` (see the module docstring). Raises UserError when `root`
    is not a folder or holds neither images nor sub-folders."""
    if not os.path.isdir(root):
        raise UserError(f"--input {root}: not a folder; give a folder of views or of subject folders")
    subdirs = _subdirs(root)
    subjects = _samples_layout(root, subdirs)
    if subjects is None:
        direct = _images(root)
        if direct:
            subjects = [Subject(os.path.basename(os.path.abspath(root)), tuple(direct))]
        else:
            subjects = [Subject(d, tuple(_images(os.path.join(root, d)))) for d in subdirs]
    if not subjects:
        raise UserError(
            f"--input {root}: no images ({', '.join(IMAGE_EXTENSIONS)}) and no subject folders found"
        )
    return [Subject(safe_name(s.name), s.views) for s in subjects]
