"""What every benchmark prints first: the machine it ran on."""
from __future__ import annotations

import os
import platform

import torch


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else what platform knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine(*details: str) -> str:
    """One line: CPU, cores, torch version and threads, OMP_NUM_THREADS, the 1-minute
    load average (other users' load distorts timings), the CUDA device, then
    `details` (library versions a benchmark depends on)."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    cuda = torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA"
    parts = [
        f"{cpu_name()}; {os.cpu_count()} cores",
        f"torch {torch.__version__} ({torch.get_num_threads()} threads)",
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}",
        f"load average {load:.2f}",
        cuda,
        *details,
    ]
    return "; ".join(parts)
