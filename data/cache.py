"""Disk cache of preprocessed photos (replaces the seed's /dev/shm SharedArray).

One entry per (photo content, settings): a folder of `.npy` files read back
memory-mapped, so data-loader workers share the pages through the OS cache instead of
copying. Layout:

    <root>/<settings key>/<content hash[:2]>/<content hash>/
        crop.npy uint8 [S, S, 3], landmarks.npy float32 [68, 2], parsing.npy uint8 [S, S],
        skin_weight.npy float32 [S, S], alignment.npy float64 [2, 3]
    <root>/<settings key>/<content hash[:2]>/<content hash>.error   (one-line message)
    <root>/<settings key>/settings.json                             (what the key hashes)

The settings key hashes every PreprocessConfig field, the crop size, the alignment
template (face model), the photo loader's tag (e.g. Pixel-Face's rotation) and
CACHE_VERSION; the content hash is SHA-256 of the file's bytes. Editing a photo or
changing a setting therefore misses the old entry and builds a new one. Entries are
written into a temporary folder and renamed into place, so concurrent workers never
see half an entry; the one that renames first wins and the others discard theirs.
Temporaries carry the writer's pid, so a later run removes those of killed writers
(lib/runfolder.remove_stale_temporaries). Failures (no face, unreadable file) are cached as `.error` files so bad photos are
not retried every epoch, and are rebuilt like any entry when the file changes.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import uuid
from typing import Callable

import numpy as np

from lib.errors import UserError
from lib.preprocess import Preprocessor, read_image

CACHE_VERSION = 1  # bump when preprocessing changes what it produces
ARRAYS = ("crop", "landmarks", "parsing", "skin_weight", "alignment")


def file_digest(path: str) -> str:
    """SHA-256 hex digest of a file's bytes (UserError when it cannot be read)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError as err:
        raise UserError(f"{path}: cannot be read ({err.strerror})") from None
    return digest.hexdigest()


class PreprocessCache:
    """Preprocessed faces on disk, built on first request.

    root: cache folder (DataConfig.cache_dir); preprocessor: the settings used;
    tag: names the photo loader (a different loader is a different key);
    loader: path -> uint8 [H, W, 3] RGB (default read_image).
    """

    def __init__(self, root: str, preprocessor: Preprocessor, tag: str = "", loader: Callable[[str], np.ndarray] = read_image):
        self.preprocessor = preprocessor
        self.loader = loader
        settings = {
            "version": CACHE_VERSION,
            "preprocess": dataclasses.asdict(preprocessor.cfg),
            "skin_weights": list(preprocessor.skin_weights),
            "crop_size": preprocessor.crop_size,
            "loader": tag,
        }
        if not preprocessor.cfg.aligned:
            settings["template_mm"] = np.round(preprocessor.model_points, 4).tolist()
        if preprocessor.cfg.parser == "bisenet":
            settings["bisenet_sha256"] = file_digest(preprocessor.cfg.bisenet_weights)
        self.settings = settings
        self._digests: dict[str, tuple[tuple[int, int], str]] = {}  # path -> ((mtime ns, size), digest)
        self.key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
        self.folder = os.path.join(root, f"preprocess-{self.key}")
        os.makedirs(self.folder, exist_ok=True)
        settings_path = os.path.join(self.folder, "settings.json")
        if not os.path.isfile(settings_path):
            tmp = f"{settings_path}.{uuid.uuid4().hex}.tmp"
            with open(tmp, "w") as handle:
                json.dump(settings, handle, indent=1, sort_keys=True)
            os.replace(tmp, settings_path)

    def _entry(self, digest: str) -> str:
        return os.path.join(self.folder, digest[:2], digest)

    def digest(self, path: str) -> str:
        """`file_digest(path)`, remembered while the file keeps its size and modification
        time: training reads every photo each epoch, and hashing a photo of a few MB
        costs more than the rest of loading its view (doc/gpu.md). Datasets prepare
        every photo before the loader's workers start, so the workers inherit it."""
        try:
            stat = os.stat(path)
        except OSError:
            return file_digest(path)  # raises the one-line UserError
        key = (stat.st_mtime_ns, stat.st_size)
        known = self._digests.get(path)
        if known is None or known[0] != key:
            known = (key, file_digest(path))
            self._digests[path] = known
        return known[1]

    def get(self, path: str) -> dict[str, np.ndarray]:
        """The arrays of `path` (read-only memory maps), preprocessing it if needed.

        Raises UserError("<path>: ...") for a bad photo, from the cache or fresh.
        """
        entry = self._entry(self.digest(path))
        if os.path.isdir(entry):
            return {name: np.load(os.path.join(entry, f"{name}.npy"), mmap_mode="r") for name in ARRAYS}
        if os.path.isfile(entry + ".error"):
            with open(entry + ".error") as handle:
                raise UserError(f"{path}: {handle.read().strip()}")
        try:
            face = self.preprocessor(self.loader(path), path)
        except UserError as err:
            message = str(err)
            reason = message[len(path) + 2 :] if message.startswith(f"{path}: ") else message
            self._write_error(entry, reason)
            raise
        arrays = {
            "crop": face.crop,
            "landmarks": face.landmarks,
            "parsing": face.parsing,
            "skin_weight": face.skin_weight,
            "alignment": face.alignment.matrix,
        }
        self._write_entry(entry, arrays)
        return {name: np.load(os.path.join(entry, f"{name}.npy"), mmap_mode="r") for name in ARRAYS}

    def _write_entry(self, entry: str, arrays: dict[str, np.ndarray]) -> None:
        os.makedirs(os.path.dirname(entry), exist_ok=True)
        tmp = f"{entry}.{os.getpid()}.{uuid.uuid4().hex}.tmp"
        os.makedirs(tmp)
        for name, array in arrays.items():
            np.save(os.path.join(tmp, f"{name}.npy"), np.ascontiguousarray(array))
        try:
            os.rename(tmp, entry)
        except OSError:  # another worker renamed its identical entry first
            shutil.rmtree(tmp, ignore_errors=True)

    def _write_error(self, entry: str, message: str) -> None:
        os.makedirs(os.path.dirname(entry), exist_ok=True)
        tmp = f"{entry}.{os.getpid()}.{uuid.uuid4().hex}.tmp"
        with open(tmp, "w") as handle:
            handle.write(message.replace("\n", " ") + "\n")
        os.replace(tmp, entry + ".error")
