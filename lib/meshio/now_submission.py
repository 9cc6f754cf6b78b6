"""The NoW benchmark's submission format: a predicted mesh and its 7 landmarks.

The public NoW evaluation code (github.com/soubhiksanyal/now_evaluation,
`compute_error.py`) looks, for each image `<subject>/<challenge>/<name>.jpg` of its
image list, for `<predictions>/<subject>/<challenge>/<name>.obj` (or `.ply`), read
with psbody's `Mesh`, and for `<name>.npy` (a float [7, 3] array) or else
`<name>.txt` (7 lines `x y z` separated by single spaces). The 7 points are, in
order: right eye outer and inner corner, left eye inner and outer corner, nose tip,
right and left mouth corner (`lib.facemodel.schema.NOW7_FROM_68`). Its default
(non-metrical) protocol aligns with scale, so the unit only matters for its metrical
protocol, run with `--predicted_mesh_unit mm` for these files.
"""
from __future__ import annotations

import os

import numpy as np

from lib.meshio.obj import write_obj


def write_now_prediction(folder: str, stem: str, vertices, faces, landmarks7) -> dict:
    """Write `<folder>/<stem>.obj` (plain positions in mm, no colours or UVs, which
    some OBJ readers of the NoW tooling mis-handle), `<stem>.npy` and `<stem>.txt`
    (the same 7 points). vertices [V, 3] mm; faces [F, 3]; landmarks7 [7, 3] mm in
    the mesh's space. Returns the three paths by kind ('mesh', 'npy', 'txt')."""
    landmarks7 = np.asarray(landmarks7, np.float32)
    if landmarks7.shape != (7, 3):
        raise ValueError(f"write_now_prediction: landmarks7 must be [7, 3], got {landmarks7.shape}")
    os.makedirs(folder, exist_ok=True)
    paths = {kind: os.path.join(folder, f"{stem}.{ext}") for kind, ext in (("mesh", "obj"), ("npy", "npy"),
                                                                            ("txt", "txt"))}
    write_obj(paths["mesh"], vertices, faces)
    np.save(paths["npy"], landmarks7)
    with open(paths["txt"], "w") as f:
        f.write("\n".join(" ".join(f"{value:.6f}" for value in row) for row in landmarks7.tolist()) + "\n")
    return paths
