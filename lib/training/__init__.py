"""Training: the loop (`Trainer`), the seed's schedule, DDP helpers, validation metric."""
from lib.training.distributed import (
    CpuSyncBatchNorm,
    DistInfo,
    convert_sync_batchnorm,
    init_distributed,
    resolve_device,
    shutdown_distributed,
)
from lib.training.loop import Trainer, seed_everything
from lib.training.schedule import learning_rate
from lib.training.validation import aligned_vertex_error

__all__ = [
    "CpuSyncBatchNorm",
    "DistInfo",
    "Trainer",
    "aligned_vertex_error",
    "convert_sync_batchnorm",
    "init_distributed",
    "learning_rate",
    "resolve_device",
    "seed_everything",
    "shutdown_distributed",
]
