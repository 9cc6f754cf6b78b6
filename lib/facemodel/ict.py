"""ICT-FaceKit's FaceXModel (USC ICT, MIT licence) in the project's FaceModel schema.

Source layout (the `FaceXModel/` folder of the public ICT-FaceKit repository, or a
.tar.xz of it): OBJ files sharing one topology of 26,719 vertices / 26,384 polygons
in centimetres; `generic_neutral_mesh.obj` (the mean), `identity000.obj` ..
`identity099.obj` (mean + one identity principal component each, coefficients
~N(0, 1)), one OBJ per expression blendshape named in `vertex_indices.json`
("expressions": the 53 ARKit names; weights in [0, 1]).

Conversion: keep the full face area (vertices 0..9408, polygons 0..9229, which only
use those vertices, so no renumbering of vertices is needed), fan-triangulate the
quads (the OBJ winding is kept, so triangles face outward; checked and flipped if
not), cm -> mm, mean-centre (the offset subtracted is the centroid of the neutral face
area, (0.0, 3.7, 71.3) mm in ICT's frame; recorded in the description), modes =
mesh - neutral, the 68 Multi-PIE landmark vertices of ICT's documentation, region
labels from the landmarks, a generic albedo (ICT has none), UVs from the OBJ.

    python -m lib.facemodel.ict path/to/ICT-FaceKit           # convert once (~10 s)

writes the model where test_sample.py and prepare.py take it for photos
(face_model.converted, pretrain/ict_facekit.npz); `--out ict.npz` writes elsewhere,
to load with face_model.source=npz face_model.path=ict.npz.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import tarfile
import tempfile
import time
from typing import Sequence

import numpy as np
from tqdm import tqdm

from lib.errors import UserError
from lib.facemodel.bfm import winding_points_inward
from lib.facemodel.regions import landmark_derived_fields
from lib.facemodel.schema import FaceModel
from lib.meshio import read_obj, read_obj_vertices

CM_TO_MM = 10.0
FACE_VERTICES = 9409
"""Vertices 0..9408: ICT's "full face area"."""
FACE_POLYGONS = 9230
"""Polygons 0..9229 (file order): the faces of the full face area."""
NUM_IDENTITIES = 100
ALBEDO_MODES = 80
"""Generic albedo modes generated for ICT (as many as BFM09's texture modes)."""

LANDMARKS68 = np.array([
    1225, 1888, 1052, 367, 1719, 1722, 2199, 1447, 966, 3661, 4390, 3927, 3924, 2608, 3272, 4088, 3443,
    268, 493, 1914, 2044, 1401, 3615, 4240, 4114, 2734, 2509, 978, 4527, 4942, 4857, 1140, 2075, 1147,
    4269, 3360, 1507, 1542, 1537, 1528, 1518, 1511, 3742, 3751, 3756, 3721, 3725, 3732, 5708, 5695, 2081,
    0, 4275, 6200, 6213, 6346, 6461, 5518, 5957, 5841, 5702, 5711, 5533, 6216, 6207, 6470, 5517, 5966,
])
"""ICT's Multi-PIE 68-landmark vertices (0-based, the usual 68 order)."""

NEUTRAL = "generic_neutral_mesh.obj"
INDEX_FILE = "vertex_indices.json"
_IDENTITY = re.compile(r"identity(\d{3})\.obj$")

DESCRIPTION = (
    "ICT-FaceKit FaceXModel (USC Institute for Creative Technologies, MIT licence), full face area "
    "(vertices 0..9408), quads triangulated, cm -> mm, centred (offset subtracted: {offset} mm); "
    "{n_id} identity modes (coefficients ~N(0,1)), {n_exp} expression blendshapes (weights in [0,1]); "
    "albedo is generic (ICT has none)."
)


def _find_model_folder(folder: str) -> str:
    """The folder holding generic_neutral_mesh.obj: `folder` itself, or its FaceXModel/
    (an ICT-FaceKit clone or an unpacked archive)."""
    for candidate in (folder, os.path.join(folder, "FaceXModel")):
        if os.path.isfile(os.path.join(candidate, NEUTRAL)):
            return candidate
    raise UserError(f"{folder}: no {NEUTRAL} here or in FaceXModel/; point face_model.path at ICT-FaceKit's "
                    "FaceXModel folder or its .tar.xz (see doc/face_models.md)")


def _expression_names(folder: str) -> list[str]:
    """The blendshapes listed under "expressions" in vertex_indices.json (53 ARKit
    names). The folder also holds cheekRaiser_L/R and PupilDilate_L/R, which that
    list leaves out, so they are not used."""
    path = os.path.join(folder, INDEX_FILE)
    if not os.path.isfile(path):
        raise UserError(f"{path}: missing; it lists the expression blendshapes (take FaceXModel/ complete)")
    try:
        with open(path) as f:
            names = json.load(f)["expressions"]
    except (ValueError, KeyError, TypeError) as err:
        raise UserError(f"{path}: cannot read the 'expressions' list ({err})") from None
    missing = [n for n in names if not os.path.isfile(os.path.join(folder, n + ".obj"))]
    if missing:
        raise UserError(f"{folder}: expression OBJs listed in {INDEX_FILE} are missing: {', '.join(missing[:5])}")
    return list(names)


def _mode_offsets(paths: list[str], neutral_cm: np.ndarray, what: str) -> np.ndarray:
    """float64 [FACE_VERTICES, 3, K] mm: each OBJ's face-area vertices minus the neutral's."""
    modes = np.empty((FACE_VERTICES, 3, len(paths)))
    # disable=None: a bar on a terminal only, not in logs (the conversion has no progress option).
    for k, path in enumerate(tqdm(paths, desc=f"ICT {what}", unit="obj", leave=False, disable=None)):
        positions = read_obj_vertices(path, first=FACE_VERTICES, expected_count=len(neutral_cm))
        modes[:, :, k] = (positions - neutral_cm[:FACE_VERTICES]) * CM_TO_MM
    return modes


def _convert_folder(folder: str) -> FaceModel:
    folder = _find_model_folder(folder)
    neutral_path = os.path.join(folder, NEUTRAL)
    neutral = read_obj(neutral_path)
    if neutral.vertices.shape[0] < FACE_VERTICES or neutral.uv_faces is None:
        raise UserError(f"{neutral_path}: expected ICT's topology (26,719 vertices with UVs), "
                        f"got {neutral.vertices.shape[0]} vertices")
    keep = neutral.face_polygon < FACE_POLYGONS
    faces = neutral.faces[keep]
    if faces.max() >= FACE_VERTICES:
        raise UserError(f"{neutral_path}: face-area polygons use vertices past {FACE_VERTICES - 1}; "
                        "not ICT-FaceKit's FaceXModel topology")
    used_uv, uv_faces = np.unique(neutral.uv_faces[keep], return_inverse=True)
    uv_faces = uv_faces.reshape(-1, 3)

    identities = sorted(name for name in os.listdir(folder) if _IDENTITY.match(name))
    if len(identities) != NUM_IDENTITIES:
        raise UserError(f"{folder}: found {len(identities)} identityNNN.obj files, expected {NUM_IDENTITIES}")
    expressions = _expression_names(folder)
    id_basis = _mode_offsets([os.path.join(folder, n) for n in identities], neutral.vertices, "identities")
    exp_basis = _mode_offsets([os.path.join(folder, n + ".obj") for n in expressions], neutral.vertices,
                              "expressions")

    shape = neutral.vertices[:FACE_VERTICES] * CM_TO_MM
    offset = shape.mean(axis=0)
    mean_shape = shape - offset
    if winding_points_inward(mean_shape, faces):
        # ICT's OBJ winding is outward already; this guards against a re-exported file.
        faces, uv_faces = faces[:, [0, 2, 1]], uv_faces[:, [0, 2, 1]]
    return FaceModel(
        name="ict_facekit",
        mean_shape=mean_shape,
        id_basis=id_basis,
        exp_basis=exp_basis,
        faces=faces,
        landmarks68=LANDMARKS68,
        **landmark_derived_fields(mean_shape, faces, LANDMARKS68, ALBEDO_MODES),
        uv_coords=neutral.uv_coords[used_uv],
        uv_faces=uv_faces,
        exp_range=np.array([0.0, 1.0]),  # ARKit blendshape weights
        description=DESCRIPTION.format(offset=np.array2string(offset, precision=3), n_id=len(identities),
                                       n_exp=len(expressions)),
    )


def _newer(cache: str, source: str) -> bool:
    return os.path.isfile(cache) and os.path.getmtime(cache) >= os.path.getmtime(source)


def convert_ict(path: str, cache: str | None = None) -> FaceModel:
    """FaceModel from ICT-FaceKit's FaceXModel folder (or a folder containing it, or a
    .tar.xz of it). With `cache` (a .npz path), a cache newer than the source is loaded
    instead, and a fresh conversion is written there (FaceModel.save)."""
    if not os.path.exists(path):
        raise UserError(f"{path}: ICT-FaceKit model not found; git clone the public ICT-FaceKit repository "
                        "and point face_model.path at its FaceXModel folder (see doc/face_models.md)")
    if cache and _newer(cache, path):
        return FaceModel.load(cache)
    if os.path.isfile(path):
        if not tarfile.is_tarfile(path):
            raise UserError(f"{path}: neither a FaceXModel folder nor a tar archive of it")
        with tempfile.TemporaryDirectory(prefix="ict_") as tmp:
            try:
                with tarfile.open(path) as archive:
                    archive.extractall(tmp, filter="data")
            except (tarfile.TarError, OSError, EOFError) as err:
                raise UserError(f"{path}: cannot unpack the archive ({err})") from None
            model = _convert_folder(tmp)
    else:
        model = _convert_folder(path)
    if cache:
        model.save(cache)
    return model


def main(argv: Sequence[str] | None = None) -> int:
    from lib.config.schema import FaceModelConfig

    converted = FaceModelConfig.converted
    parser = argparse.ArgumentParser(
        description="Convert ICT-FaceKit's FaceXModel to the project's face model .npz; by default to "
        f"{converted}, where test_sample.py and prepare.py use it for photos"
    )
    parser.add_argument("source", help="ICT-FaceKit clone, its FaceXModel folder, or a .tar.xz of FaceXModel")
    parser.add_argument("--out", default=converted, help=f"output .npz (default {converted}: used for photos)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    model = convert_ict(args.source)
    try:
        model.save(args.out)
    except OSError as err:
        raise UserError(f"{args.out}: cannot write the converted model ({err.strerror})") from None
    print(f"wrote {args.out} in {time.perf_counter() - start:.1f} s: {model.num_vertices} vertices, "
          f"{len(model.faces)} triangles, {model.num_id} identity / {model.num_exp} expression modes")
    return 0


if __name__ == "__main__":
    from lib.cli import run

    run(main)
