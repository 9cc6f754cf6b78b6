"""May this run continue the one already in its folder? (train.py, before anything
in the folder is written.)

A rerun with the same --out resumes from OUT/checkpoints/last.pt. It must be the same
run: a changed network, data, loss or optimisation setting would silently mix two
runs in one set of weights, one metrics.jsonl and one config.yaml. Only the settings
in `lib.config.schema.RESUME_SAFE` (epochs, intervals, devices, evaluation) may
change.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable

from lib.config.schema import RESUME_SAFE, Config
from lib.errors import UserError

LAST_CHECKPOINT = os.path.join("checkpoints", "last.pt")
"""The checkpoint a rerun resumes from, relative to --out."""


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        flat = {}
        for key, value in data.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): data}


def changed_settings(old: Config, new: Config) -> list[str]:
    """Dotted keys whose value differs between two configs, in schema order."""
    before, after = _flatten(dataclasses.asdict(old)), _flatten(dataclasses.asdict(new))
    return [key for key in before if before[key] != after[key]]


def resume_safe(key: str) -> bool:
    return any(key == safe or key.startswith(safe + ".") for safe in RESUME_SAFE)


def check_resume(out: str, cfg: Config, checkpoint_config: Callable[[str], Config]) -> None:
    """UserError naming the settings that differ from the run in `out` (when there is
    one to resume) other than the resume-safe ones.

    checkpoint_config(path) -> the Config stored in a checkpoint (models.checkpoint).
    """
    path = os.path.join(out, LAST_CHECKPOINT)
    if not os.path.isfile(path):
        return
    old = checkpoint_config(path)
    refused = [key for key in changed_settings(old, cfg) if not resume_safe(key)]
    if refused:
        old_flat, new_flat = _flatten(dataclasses.asdict(old)), _flatten(dataclasses.asdict(cfg))
        changes = ", ".join(f"{key} {old_flat[key]!r} -> {new_flat[key]!r}" for key in refused)
        raise UserError(
            f"--out {out}: resuming {LAST_CHECKPOINT} with changed settings ({changes}); rerun with the run's "
            f"settings (its config.yaml) or give another --out (resume may change only: {', '.join(RESUME_SAFE)})"
        )
