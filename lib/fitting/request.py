"""What a subject's results were made from, so a rerun never returns stale results.

test_sample.py records a *request* with every result: the mode (network, fit or
both), the checkpoint's content, the face model's content, every setting that shapes
the result (fitting, loss weights, preprocessing, rendering, per-view expression)
and the content of the subject's photos (or the demo's generator settings). A rerun
into the same --out keeps a finished subject only when its recorded request equals
the new one; otherwise the subject is redone and the changed entries are named.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re

from lib.config.schema import Config
from lib.digest import array_digest, file_digest

IGNORED_FIT_KEYS = ("num_threads", "demo_subjects")
"""Fit settings that change speed or how many demo subjects exist, not a result."""

OUTPUT_FILE = re.compile(
    r"^(mesh\.obj|textured\.(obj|mtl|png)|sheet\.png|coeffs\.(json|npz)|result\.json"
    r"|view\d+(_[a-z_]+)?\.(png|json|npy))$"
)
"""Names of the files test_sample.py writes into a subject's folder (doc/fitting.md)."""


def face_model_digest(face_model) -> str:
    """Digest of what fitting uses of a FaceModel (shape, bases, albedo, topology, landmarks)."""
    return array_digest(
        face_model.mean_shape, face_model.id_basis, face_model.exp_basis, face_model.albedo_mean,
        face_model.albedo_basis, face_model.faces, face_model.landmarks68,
    )


def run_request(cfg: Config, mode: str, checkpoint: str, face_model) -> dict:
    """The part of the request shared by every subject of a run."""
    fit = {k: v for k, v in dataclasses.asdict(cfg.fit).items() if k not in IGNORED_FIT_KEYS}
    return {
        "mode": mode,
        "checkpoint": file_digest(checkpoint) if checkpoint else None,
        "face_model": {"name": face_model.name, "sha256": face_model_digest(face_model)},
        "settings": {
            "fit": fit,
            "loss": dataclasses.asdict(cfg.loss),
            "preprocess": dataclasses.asdict(cfg.preprocess),
            "render": dataclasses.asdict(cfg.render),
            "expression_per_view": cfg.model.expression_per_view,
        },
    }


def photo_request(shared: dict, paths: list[str]) -> dict:
    """A photo subject's request: the run's plus the digests of its photos."""
    return {**shared, "views": [{"file": os.path.basename(p), "sha256": file_digest(p)} for p in paths]}


def demo_request(shared: dict, cfg: Config, index: int) -> dict:
    """A demo subject's request: the run's plus what generates the subject."""
    return {**shared, "views": {"demo": index, "synthetic": dataclasses.asdict(cfg.data.synthetic),
                                "seed": cfg.train.seed}}


def changed_keys(old: dict | None, new: dict, prefix: str = "") -> list[str]:
    """Dotted names of the entries that differ between two requests (['request'] when
    the old result recorded none)."""
    if not isinstance(old, dict):
        return [prefix.rstrip(".") or "request"]
    keys = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += changed_keys(a, b, f"{prefix}{key}.")
        elif json.dumps(a, sort_keys=True) != json.dumps(b, sort_keys=True):
            keys.append(f"{prefix}{key}")
    return keys


def clear_outputs(folder: str) -> None:
    """Delete the files an earlier run wrote into a subject's folder (OUTPUT_FILE),
    result.json first so that an interrupted clear never leaves a stale 'complete'
    mark; nothing else in the folder is touched."""
    if not os.path.isdir(folder):
        return
    names = sorted(n for n in os.listdir(folder) if OUTPUT_FILE.match(n))
    for name in sorted(names, key=lambda n: n != "result.json"):
        os.remove(os.path.join(folder, name))
