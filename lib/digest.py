"""Content digests: what identifies a file or a set of arrays across runs (the
preprocessing cache's keys, test_sample.py's record of what a result was made from)."""
from __future__ import annotations

import hashlib

import numpy as np

from lib.errors import UserError


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


def array_digest(*arrays: np.ndarray) -> str:
    """SHA-256 hex digest of arrays' dtypes, shapes and bytes, in order."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()
