"""BFM09 (Basel Face Model 2009) as the seed uses it, in the project's FaceModel schema.

Two ways in, giving the same model (doc/face_models.md):

- `load_bfm_front(path)`: Deep3DFaceRecon's `BFM_model_front.mat` (the "front" face,
  35,709 vertices; decimetres = official micrometres / 1e5; texture 0..255;
  1-based indices; 80 identity / 64 expression / 80 texture modes, each basis
  already scaled by its standard deviation so coefficients are ~N(0, 1)).
- `convert_bfm_official(folder)`: the official release files, combined the way
  Deep3DFaceRecon's `util/load_mats.py` builds that .mat (see `_front_from_official`).

Both then apply the same conversion to the project's conventions: mm (x100), the
mean shape recentred on its mean vertex (as Deep3DFaceRecon's ParametricFaceModel
does with recenter=True), albedo / 255, 0-based indices, triangles wound so that
cross(v1 - v0, v2 - v0) points out of the face.

Command line (convert once, then use `face_model.source=npz`):

    python -m lib.facemodel.bfm --official DIR --out bfm09.npz
    python -m lib.facemodel.bfm --front BFM_model_front.mat --out bfm09.npz
"""
from __future__ import annotations

import argparse
import os
from typing import Sequence

import numpy as np
from scipy.io import loadmat

from lib.errors import UserError
from lib.facemodel.regions import regions_from_landmarks, skin_mask_from_regions
from lib.facemodel.schema import NOW7_FROM_68, FaceModel

BFM_FRONT_VERTICES = 35709
"""Vertex count of Deep3DFaceRecon's front BFM09; the fixed index sets below refer to it."""

DM_TO_MM = 100.0
TEXTURE_SCALE = 255.0
MAX_MODES = {"idBase": 80, "exBase": 64, "texBase": 80}
"""Basis sizes kept from the official release (Deep3DFaceRecon's choice, the seed's sizes)."""

NOW7_BFM = np.array([2215, 5828, 10455, 14065, 8192, 5522, 10795])
"""The seed's NoW points on the front BFM09, in the order of NOW7_FROM_68. The
correspondence follows from the BFM vertex order, which runs in columns of
increasing x (subject's right to left): 2215 < 5828 < 8192 < 10455 < 14065 are the
eye corners right-outer, right-inner, (nose tip, the centre column), left-inner,
left-outer, and 5522 < 10795 the right and left mouth corners. They are also the
entries 47, 50, 53, 56, 41, 79, 85 of PIXEL_FACE101_BFM, the seed's 7 alignment
positions, which sit at the eye corners, nose tip and mouth corners of that list."""

PIXEL_FACE101_BFM = np.array([
    16644, 16758, 16888, 16467, 16357, 16264, 16275, 32244, 32634, 32939, 33169, 33375,
    33526, 33654, 33838, 34022, 34175, 34312, 34559, 34766, 35075, 35472, 27816, 27608,
    27338, 27208, 27329, 27440, 28111, 28787, 29177, 29382, 29549, 30288, 30454, 30662,
    31056, 31716, 8161, 8177, 8187, 8192, 6515, 7243, 8204, 9163, 9883, 2215, 3500, 5181,
    5828, 4932, 3382, 10455, 11225, 12771, 14065, 12911, 11365, 2838, 4515, 5547, 6318,
    9931, 10690, 11852, 13399, 4404, 4157, 4280, 11997, 12138, 12132, 7202, 9241, 6248,
    9987, 5357, 10887, 5522, 6025, 7495, 8215, 8935, 10395, 10795, 9555, 8836, 8236, 7636,
    6915, 5909, 7384, 8223, 9064, 10537, 8829, 8229, 7629, 4280, 11745,
])
"""The seed's BFM09-front vertices matched, in order, to the 101 Pixel-Face 3D points
(the 106 of nicp_106_pts.txt without entries 3, 15, 17, 25, 27). 4280 appears twice,
as in the seed."""

DOWNLOAD_HINT = (
    "download BFM09 (01_MorphableModel.mat) from the University of Basel "
    "(https://faces.dmi.unibas.ch/bfm/main.php?nav=1-2&id=downloads; free after registration, "
    "non-commercial research only), "
    "convert it with Deep3DFaceRecon_pytorch's BFM files (or: python -m lib.facemodel.bfm --official DIR "
    "--out FILE.npz) and put BFM_model_front.mat at pretrain/BFM/BFM_model_front.mat "
    "(face_model.path; see doc/face_models.md)"
)

OFFICIAL_FILES = {
    "01_MorphableModel.mat": "the BFM09 release of the University of Basel",
    "Exp_Pca.bin": "Guo et al.'s expression basis (CoarseData of github.com/Juyong/3DFace)",
    "std_exp.txt": "the BFM/ folder of Deep3DFaceRecon_pytorch",
    "BFM_front_idx.mat": "the BFM/ folder of Deep3DFaceRecon_pytorch",
    "BFM_exp_idx.mat": "the BFM/ folder of Deep3DFaceRecon_pytorch",
    "facemodel_info.mat": "the BFM/ folder of Deep3DFaceRecon_pytorch",
}

DESCRIPTION = (
    "Basel Face Model 2009 (University of Basel; licence: non-commercial research, do not "
    "redistribute), front part as cropped by Deep3DFaceRecon, with Guo et al.'s expression "
    "basis; 80 identity / 64 expression / 80 albedo modes; converted to mm, recentred."
)


def _load_mat(path: str, what: str) -> dict:
    try:
        return loadmat(path)
    except NotImplementedError:
        raise UserError(f"{path}: MATLAB v7.3 (HDF5) files are not supported; re-save {what} with "
                        "scipy.io.savemat or MATLAB's save -v7") from None
    except Exception as err:  # scipy raises assorted types (MatReadError, IndexError...) on garbage
        raise UserError(f"{path}: not a readable MATLAB .mat file ({type(err).__name__}: {err})") from None


def _key(mat: dict, path: str, key: str) -> np.ndarray:
    if key not in mat:
        present = ", ".join(sorted(k for k in mat if not k.startswith("__")))
        raise UserError(f"{path}: key '{key}' is missing (keys present: {present})")
    return np.asarray(mat[key])


def _indices(mat: dict, path: str, key: str, upper: int, shape_hint: str) -> np.ndarray:
    """0-based int64 array from a 1-based MATLAB index array, checked against `upper`."""
    raw = _key(mat, path, key)
    if raw.size == 0 or not np.issubdtype(raw.dtype, np.number) or np.any(raw != np.round(raw)):
        raise UserError(f"{path}: key '{key}' must hold 1-based integer indices {shape_hint}")
    idx = raw.astype(np.int64) - 1
    if idx.min() < 0 or idx.max() >= upper:
        raise UserError(f"{path}: key '{key}' has indices outside 1..{upper} {shape_hint}")
    return idx


def _basis(mat: dict, path: str, key: str, num_vertices: int) -> np.ndarray:
    """float64 [V, 3, K] from a MATLAB [3V, K] basis (rows x0 y0 z0 x1 ...)."""
    raw = _key(mat, path, key)
    if raw.ndim != 2 or raw.shape[0] != 3 * num_vertices:
        raise UserError(f"{path}: key '{key}' must be [3V, K] = [{3 * num_vertices}, K], got {list(raw.shape)}")
    return raw.astype(np.float64).reshape(num_vertices, 3, raw.shape[1])


def _skin_mask(mat: dict, path: str, num_vertices: int, region_labels: np.ndarray) -> np.ndarray:
    """The file's skinmask (a 0/1 vector per vertex, or 1-based vertex indices), else
    the skin derived from the region labels."""
    if "skinmask" not in mat:
        return skin_mask_from_regions(region_labels)
    raw = np.asarray(mat["skinmask"]).ravel()
    if raw.size == num_vertices and np.isin(raw, (0, 1)).all():
        return raw.astype(bool)
    idx = _indices(mat, path, "skinmask", num_vertices, "(a 0/1 vector per vertex or 1-based vertex indices)")
    mask = np.zeros(num_vertices, dtype=bool)
    mask[idx.ravel()] = True
    return mask


def winding_points_inward(vertices: np.ndarray, faces: np.ndarray) -> bool:
    """True when the summed triangle normals cross(v1 - v0, v2 - v0) of a consistently
    wound face mesh point -z (away from the camera). An open face surface seen from
    the front has a strongly +z vector area when wound outward, so this one global
    test decides whether to swap two columns of `faces`. vertices [V, 3]; faces [F, 3]."""
    v0, v1, v2 = (vertices[faces[:, k]] for k in range(3))
    return bool(np.cross(v1 - v0, v2 - v0).sum(axis=0)[2] < 0)


def face_model_from_front(mat: dict, path: str, name: str = "bfm09") -> FaceModel:
    """FaceModel from the arrays of a BFM_model_front.mat (see the module docstring).

    mat: dict with meanshape [1, 3V] dm, meantex [1, 3V] 0..255, idBase [3V, Kid] dm,
    exBase [3V, Kexp] dm, texBase [3V, Ktex] 0..255, tri [F, 3] 1-based, keypoints [68]
    1-based, optional skinmask; path names the source in error messages.
    """
    meanshape = _key(mat, path, "meanshape")
    if meanshape.size % 3 or meanshape.size == 0:
        raise UserError(f"{path}: key 'meanshape' must be [1, 3V], got {list(meanshape.shape)}")
    v = meanshape.size // 3
    meantex = _key(mat, path, "meantex")
    if meantex.size != 3 * v:
        raise UserError(f"{path}: key 'meantex' must be [1, {3 * v}] like meanshape, got {list(meantex.shape)}")
    tri = _indices(mat, path, "tri", v, "[F, 3]")
    if tri.ndim != 2 or tri.shape[1] != 3:
        raise UserError(f"{path}: key 'tri' must be [F, 3], got {list(tri.shape)}")
    keypoints = _indices(mat, path, "keypoints", v, "[1, 68]").ravel()
    if keypoints.size != 68:
        raise UserError(f"{path}: key 'keypoints' must hold 68 vertex indices, got {keypoints.size}")

    shape = meanshape.astype(np.float64).reshape(v, 3) * DM_TO_MM
    mean_shape = shape - shape.mean(axis=0)
    faces = tri[:, [0, 2, 1]] if winding_points_inward(mean_shape, tri) else tri
    region_labels = regions_from_landmarks(mean_shape, keypoints, faces)
    if v == BFM_FRONT_VERTICES:
        extra = {"now7": NOW7_BFM, "pixel_face101": PIXEL_FACE101_BFM}
    else:
        extra = {"now7": keypoints[list(NOW7_FROM_68)]}
    return FaceModel(
        name=name,
        mean_shape=mean_shape,
        id_basis=_basis(mat, path, "idBase", v) * DM_TO_MM,
        exp_basis=_basis(mat, path, "exBase", v) * DM_TO_MM,
        albedo_mean=meantex.astype(np.float64).reshape(v, 3) / TEXTURE_SCALE,
        albedo_basis=_basis(mat, path, "texBase", v) / TEXTURE_SCALE,
        faces=faces,
        landmarks68=keypoints,
        region_labels=region_labels,
        skin_mask=_skin_mask(mat, path, v, region_labels),
        extra_landmarks=extra,
        description=DESCRIPTION,
    )


def load_bfm_front(path: str) -> FaceModel:
    """FaceModel from Deep3DFaceRecon's / the seed's `BFM_model_front.mat`."""
    if not os.path.isfile(path):
        raise UserError(f"{path}: BFM09 face model not found; {DOWNLOAD_HINT}")
    return face_model_from_front(_load_mat(path, "BFM_model_front.mat"), path)


def _read_exp_pca(path: str, std_path: str) -> np.ndarray:
    """float64 [3N, K] expression basis scaled by its standard deviations (units of
    the official model, micrometres). Exp_Pca.bin: int32 K, then float32 mean [3N],
    then float32 components [K, 3N] (component-major); N (53,215 in the real file)
    follows from the file size. std_exp.txt: K standard deviations, one per line."""
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size < 4 or raw.size % 4:
        raise UserError(f"{path}: not an Exp_Pca.bin file (size {raw.size} bytes is not whole int32/float32 words)")
    k = int(raw[:4].view("<i4")[0])
    floats = raw[4:].view("<f4")
    if k <= 0 or floats.size % (3 * (k + 1)):
        raise UserError(f"{path}: Exp_Pca.bin header says {k} components, which does not fit the file size")
    n3 = floats.size // (k + 1)
    components = floats[n3:].reshape(k, n3).T.astype(np.float64)
    try:
        std = np.loadtxt(std_path, dtype=np.float64).ravel()
    except ValueError as err:
        raise UserError(f"{std_path}: cannot read the expression standard deviations ({err})") from None
    if std.size < k:
        raise UserError(f"{std_path}: has {std.size} standard deviations, Exp_Pca.bin has {k} components")
    return components * std[:k]


def _front_from_official(folder: str) -> dict:
    """The arrays of BFM_model_front.mat computed from the official files, following
    Deep3DFaceRecon's util/load_mats.py:

    - bases scaled by their standard deviations (shapePC * shapeEV, texPC * texEV,
      expPC * std_exp), shape and expression divided by 1e5 (micrometres -> dm),
      truncated to 80 identity / 64 expression / 80 texture modes;
    - vertex selection: idx of BFM_front_idx.mat (1-based into the 53,215 vertices of
      the expression model) picks the front vertices of the expression basis;
      trimIndex of BFM_exp_idx.mat (1-based into the 53,490 BFM vertices) maps those to
      BFM vertices for shape and texture;
    - tri, keypoints, skinmask (and point_buf, tri_mask2, frontmask2_idx, unused here)
      come from facemodel_info.mat.
    """
    missing = [name for name in OFFICIAL_FILES if not os.path.isfile(os.path.join(folder, name))]
    if missing:
        where = "; ".join(f"{name} from {OFFICIAL_FILES[name]}" for name in missing)
        raise UserError(f"{folder}: missing BFM09 files: {where} (see doc/face_models.md)")
    join = lambda name: os.path.join(folder, name)  # noqa: E731
    bfm_path = join("01_MorphableModel.mat")
    bfm = _load_mat(bfm_path, "01_MorphableModel.mat")
    shape_mu = _key(bfm, bfm_path, "shapeMU").astype(np.float64).ravel()
    tex_mu = _key(bfm, bfm_path, "texMU").astype(np.float64).ravel()
    n_bfm = shape_mu.size // 3
    if shape_mu.size % 3 or tex_mu.size != shape_mu.size:
        raise UserError(f"{bfm_path}: shapeMU and texMU must both be [3N, 1], got {shape_mu.size} and {tex_mu.size}")

    def scaled(pc_key: str, ev_key: str, keep: int) -> np.ndarray:
        pc = _key(bfm, bfm_path, pc_key)
        ev = _key(bfm, bfm_path, ev_key).astype(np.float64).ravel()
        if pc.ndim != 2 or pc.shape[0] != 3 * n_bfm or ev.size != pc.shape[1]:
            raise UserError(f"{bfm_path}: key '{pc_key}' must be [{3 * n_bfm}, K] with K values in '{ev_key}', "
                            f"got {list(pc.shape)} and {ev.size}")
        k = min(keep, pc.shape[1])
        return pc[:, :k].astype(np.float64) * ev[:k]

    id_base = scaled("shapePC", "shapeEV", MAX_MODES["idBase"]) / 1e5
    tex_base = scaled("texPC", "texEV", MAX_MODES["texBase"])
    exp_base = _read_exp_pca(join("Exp_Pca.bin"), join("std_exp.txt"))[:, : MAX_MODES["exBase"]] / 1e5
    n_exp = exp_base.shape[0] // 3

    front_path, trim_path = join("BFM_front_idx.mat"), join("BFM_exp_idx.mat")
    front = _indices(_load_mat(front_path, "BFM_front_idx.mat"), front_path, "idx", n_exp,
                     f"(front vertices of the {n_exp}-vertex expression model)").ravel()
    trim = _indices(_load_mat(trim_path, "BFM_exp_idx.mat"), trim_path, "trimIndex", n_bfm,
                    f"(BFM vertex of each of the {n_exp} expression-model vertices)").ravel()
    if trim.size != n_exp:
        raise UserError(f"{trim_path}: key 'trimIndex' has {trim.size} entries, Exp_Pca.bin has {n_exp} vertices")
    shape_vertices = trim[front]

    def pick(flat: np.ndarray, vertices: np.ndarray) -> np.ndarray:
        per_vertex = flat.reshape(-1, 3, *flat.shape[1:])[vertices]
        return per_vertex.reshape(3 * len(vertices), *flat.shape[1:])

    info_path = join("facemodel_info.mat")
    info = _load_mat(info_path, "facemodel_info.mat")
    arrays = {
        "meanshape": pick(shape_mu / 1e5, shape_vertices)[None, :],
        "meantex": pick(tex_mu, shape_vertices)[None, :],
        "idBase": pick(id_base, shape_vertices),
        "exBase": pick(exp_base, front),
        "texBase": pick(tex_base, shape_vertices),
        "tri": _key(info, info_path, "tri"),
        "keypoints": _key(info, info_path, "keypoints"),
    }
    if "skinmask" in info:
        arrays["skinmask"] = info["skinmask"]
    return arrays


def convert_bfm_official(folder: str) -> FaceModel:
    """FaceModel from a folder with the official BFM09 release files plus the index
    files of Deep3DFaceRecon (OFFICIAL_FILES); equals `load_bfm_front` of the
    BFM_model_front.mat that Deep3DFaceRecon would write from the same files."""
    if not os.path.isdir(folder):
        raise UserError(f"{folder}: not a folder; bfm_official needs a folder with "
                        f"{', '.join(OFFICIAL_FILES)} (see doc/face_models.md)")
    label = os.path.join(folder, "facemodel_info.mat")
    return face_model_from_front(_front_from_official(folder), label)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Convert BFM09 to the project's face model .npz")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--official", metavar="DIR", help="folder with the official BFM09 files")
    source.add_argument("--front", metavar="FILE", help="Deep3DFaceRecon's BFM_model_front.mat")
    parser.add_argument("--out", required=True, metavar="FILE.npz", help="output face model")
    args = parser.parse_args(argv)
    model = convert_bfm_official(args.official) if args.official else load_bfm_front(args.front)
    model.save(args.out)
    print(f"wrote {args.out}: {model.num_vertices} vertices, {len(model.faces)} triangles, "
          f"{model.num_id} identity / {model.num_exp} expression / {model.num_tex} albedo modes")
    return 0


if __name__ == "__main__":
    from lib.cli import run

    run(main)
