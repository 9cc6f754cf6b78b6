"""Checkpoint files: atomic save, safe load (weights_only), and model rebuilding
(training resumes through these; inference loads through `models.predictor`).

A checkpoint is a dict with keys `model` (state_dict), `config` (the resolved config as a
plain dict, `lib.config.config_to_dict`), `epoch` (int, epochs completed), `optimizer`,
and optionally `scheduler`, `rng`, `metrics`. Files are read with
`torch.load(weights_only=True)`, which refuses pickled arbitrary objects, so a
checkpoint from an untrusted source cannot run code.
"""
from __future__ import annotations

import os
import pickle
import re
import tempfile
import zipfile

import torch

from lib.config import Config, config_from_dict
from lib.errors import UserError
from lib.facemodel.schema import FaceModel
from models.mvrnet import MVRNet


def save_checkpoint(path: str, state: dict) -> None:
    """Write `state` to `path` atomically: a temporary file in the same folder, then
    os.replace, so an interrupted save never leaves a truncated checkpoint behind."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    # The pid in the name lets the next run tell a killed writer's leftover from a
    # live one (lib/runfolder.remove_stale_temporaries).
    handle, tmp = tempfile.mkstemp(prefix=f"{os.path.basename(path)}.{os.getpid()}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(handle, "wb") as f:
            torch.save(state, f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def load_checkpoint(path: str, map_location="cpu") -> dict:
    """Read a checkpoint written by `save_checkpoint`; UserError if missing or unreadable."""
    if not os.path.isfile(path):
        raise UserError(f"{path}: checkpoint file not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        # torch's message advises weights_only=False, i.e. running the file's code; we
        # never do, so name the refused object instead.
        found = re.search(r"GLOBAL ([\w.]+)", str(err))
        what = f"a Python object ({found.group(1)})" if found else "Python objects"
        raise UserError(
            f"{path}: refused to load: it holds {what}, not only tensors and plain containers, and this "
            "project never loads code from a checkpoint"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"{path}: not a readable checkpoint ({first})") from None
    if not isinstance(state, dict):
        raise UserError(f"{path}: not a checkpoint (expected a dict, got {type(state).__name__})")
    return state


def build_model(cfg: Config, face_model: FaceModel) -> MVRNet:
    """The network for `cfg.model` at `cfg.data.image_size`, heads sized by `face_model`."""
    return MVRNet(cfg.model, face_model, cfg.data.image_size)


def config_from_checkpoint(state: dict, path: str) -> Config:
    """Rebuild the Config stored in a checkpoint through lib.config's checked loader."""
    data = state.get("config")
    if not isinstance(data, dict):
        raise UserError(f"{path}: checkpoint has no 'config' dict (not written by train.py?)")
    try:
        return config_from_dict(data, "checkpoint config")
    except UserError as err:
        raise UserError(f"{path}: checkpoint config does not fit this version ({err})") from None


def checkpoint_config(path: str) -> Config:
    """The Config stored in the checkpoint at `path` (UserError when unreadable)."""
    return config_from_checkpoint(load_checkpoint(path), path)
