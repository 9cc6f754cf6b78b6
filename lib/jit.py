"""Helpers shared by the numba CPU kernels (renderer, vertex normals).

numba is a pinned dependency, but every caller also has a torch path, so the
kernels are only imported where `numba_available()` says they can be.
"""
from __future__ import annotations

import threading

import numpy as np
import torch


def numba_available() -> bool:
    """Whether numba can be imported (the CPU kernels need it)."""
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def numba_suits(tensor: torch.Tensor) -> bool:
    """True for float32/float64 CPU tensors when numba is installed."""
    return tensor.device.type == "cpu" and tensor.dtype in (torch.float32, torch.float64) and numba_available()


def as_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A contiguous numpy view (or copy) of a CPU tensor, detached."""
    return tensor.detach().contiguous().numpy()


def split_run(kernel, total: int, *args) -> None:
    """Run kernel(*args, start, stop) over [0, total) split into contiguous ranges,
    one per thread (up to torch.get_num_threads()); the kernels release the GIL.

    Forward kernels usually take ranges of image rows or items; kernels that
    accumulate into per-vertex arrays take ranges of meshes (B), so a mesh's vertices
    are written by one thread only, without atomics. Plain Python threads rather than
    numba's parallel layers: its OpenMP layer fights torch's OpenMP pool (measured
    10-50x slower small calls, torch slowed too), and prange kernels take several
    times longer to compile.
    """
    if total == 0:
        return
    chunks = min(torch.get_num_threads(), total)
    bounds = [total * k // chunks for k in range(chunks + 1)]
    workers = [threading.Thread(target=kernel, args=(*args, bounds[k], bounds[k + 1])) for k in range(1, chunks)]
    for worker in workers:
        worker.start()
    kernel(*args, bounds[0], bounds[1])
    for worker in workers:
        worker.join()
