"""Custom tensor operations used by the networks (pure PyTorch, CPU and CUDA)."""
from lib.ops.involution import (
    AUTO_UNFOLD_LIMIT,
    IMPLEMENTATIONS,
    SMALL_MAP_PIXELS,
    SMALL_MAP_UNFOLD_LIMIT,
    involution,
    involution_lean,
    involution_output_size,
    involution_unfold,
    resolve_implementation,
)

__all__ = [
    "AUTO_UNFOLD_LIMIT",
    "IMPLEMENTATIONS",
    "SMALL_MAP_PIXELS",
    "SMALL_MAP_UNFOLD_LIMIT",
    "involution",
    "involution_lean",
    "involution_output_size",
    "involution_unfold",
    "resolve_implementation",
]
