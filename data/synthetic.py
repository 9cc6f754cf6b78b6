"""Synthetic multi-view faces with known ground truth: the embedded default dataset.

Each subject draws identity, expression, albedo and SH lighting from the face model
(spreads from `SyntheticDataConfig`) and is rendered with our renderer from three
yaws (left, front, right) with jitter in rotation, translation and scale over a
smooth random background. Ground truth kept per subject: the model-space mesh
(`gt_shape`, mm), 3D landmarks, the coefficients, and per view the projected 68
landmarks, the parsing map and the skin-attention weight map.

Subject i of a split depends only on (seed, split, i), so the data are the same for
any sample count and any machine. Generated arrays are cached as `.npy` files under
`<cache_dir>/synthetic-<key>/`, the key hashing the face model and every setting
that changes the data; a half-written cache is never used.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from tqdm import tqdm

from lib.config.schema import DataConfig, LossConfig, SyntheticDataConfig
from lib.facemodel.schema import FaceModel
from lib.geometry import CAMERA_DISTANCE_MM
from lib.losses import landmark3d_vertices, region_one_hot
from lib.morphable import FaceCoefficients, MorphableModel
from lib.preprocess.parsing import skin_attention_weights
from lib.render import render_mesh

CACHE_VERSION = 1  # bump when the generator changes what it produces
SPLITS = {"train": 0, "val": 1}


def skin_attention(parsing: torch.Tensor, weights: list, dilation_px_224: float) -> np.ndarray:
    """Per-pixel skin-attention weights float32 [Vw, H, W] from parsing maps [Vw, H, W]
    (the preprocessing's function, so synthetic and photo samples weigh alike);
    dilation_px_224 is the feature dilation at 224 px, scaled to the map's size."""
    dilation = int(round(dilation_px_224 * parsing.shape[-2] / 224))
    return np.stack([skin_attention_weights(p.numpy(), weights, dilation) for p in parsing])


def _fingerprint(face_model: FaceModel) -> str:
    digest = hashlib.sha1(face_model.name.encode())
    for array in (face_model.mean_shape, face_model.id_basis, face_model.exp_basis, face_model.albedo_mean,
                  face_model.faces, face_model.region_labels):
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]


def cache_key(face_model: FaceModel, data_cfg: DataConfig, loss_cfg: LossConfig) -> str:
    """Hash of everything that changes the generated arrays."""
    settings = {
        "version": CACHE_VERSION,
        "face_model": _fingerprint(face_model),
        "image_size": data_cfg.image_size,
        "synthetic": dataclasses.asdict(data_cfg.synthetic),
        "skin_weights": loss_cfg.skin_weights,
    }
    return hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


def _background(rng: np.random.Generator, size: int) -> torch.Tensor:
    """A smooth random background [size, size, 3] in [0, 1]: a linear gradient between
    two random colours, low-frequency colour noise and a little pixel noise."""
    angle = rng.uniform(0, 2 * math.pi)
    ramp = torch.linspace(-1, 1, size)
    grid = math.cos(angle) * ramp[None, :] + math.sin(angle) * ramp[:, None]
    c0, c1 = torch.from_numpy(rng.uniform(0, 1, (2, 3)).astype(np.float32))
    image = c0 + (c1 - c0) * (0.5 + 0.5 * grid)[..., None]
    coarse = torch.from_numpy(rng.normal(0, 0.15, (1, 3, 4, 4)).astype(np.float32))
    image = image + F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)[0].permute(1, 2, 0)
    image = image + torch.from_numpy(rng.normal(0, 0.02, (size, size, 3)).astype(np.float32))
    return image.clamp(0, 1)


def _draw_coefficients(face_model: FaceModel, cfg: SyntheticDataConfig, rng: np.random.Generator) -> dict:
    """One subject's coefficients (numpy): shared identity/expression/albedo/lighting,
    per-view rotation [Vw, 3] rad and translation [Vw, 3] mm."""
    views = len(cfg.yaw_deg)
    light9 = rng.normal(0, cfg.light_std, 9)
    lighting = (light9[None, :] + rng.normal(0, cfg.light_tint_std, (3, 1))).reshape(27)
    jitter = lambda std, n: rng.uniform(-std, std, n)  # noqa: E731
    rotation = np.stack(
        [jitter(cfg.pitch_jitter_deg, views), np.asarray(cfg.yaw_deg) + jitter(cfg.yaw_jitter_deg, views),
         jitter(cfg.roll_jitter_deg, views)],
        axis=1,
    )
    # A scale change of the image is a move along the optical axis: apparent size
    # grows by D / (D - tz), so the mesh itself (the ground truth) stays unscaled.
    scale = 1.0 + jitter(cfg.scale_jitter, views)
    tz = CAMERA_DISTANCE_MM * (1.0 - 1.0 / scale)
    translation = np.concatenate([rng.uniform(-1, 1, (views, 2)) * cfg.translation_jitter_mm, tz[:, None]], axis=1)
    return {
        "identity": rng.normal(0, cfg.id_std, face_model.num_id),
        "expression": rng.normal(0, cfg.exp_std, face_model.num_exp),
        "albedo": rng.normal(0, cfg.tex_std, face_model.num_tex),
        "lighting": lighting,
        "rotation": np.deg2rad(rotation),
        "translation": translation,
    }


@torch.no_grad()
def generate_split(
    face_model: FaceModel, data_cfg: DataConfig, loss_cfg: LossConfig, split: str, count: int, progress: bool = True
) -> dict:
    """Render `count` subjects of `split` ('train' | 'val'). Returns numpy arrays:
    rgb uint8 [S, Vw, H, W, 3], parsing uint8 [S, Vw, H, W], skin_weight float32
    [S, Vw, H, W], landmarks float32 [S, Vw, 68, 2] px, landmarks3d float32 [S, P, 3]
    mm, gt_shape float32 [S, V, 3] mm, and gt_<name> float32 for every coefficient."""
    syn = data_cfg.synthetic
    size = data_cfg.image_size
    morphable = MorphableModel(face_model)
    onehot = region_one_hot(face_model)
    lm3d_index, _ = landmark3d_vertices(face_model)
    views = len(syn.yaw_deg)
    out: dict[str, list] = {k: [] for k in ("rgb", "parsing", "skin_weight", "landmarks", "landmarks3d", "gt_shape")}
    coeff_lists: dict[str, list] = {}
    for i in tqdm(range(count), desc=f"synthetic {split}", unit="subject", disable=not progress):
        rng = np.random.default_rng([syn.seed, SPLITS[split], i])
        drawn = _draw_coefficients(face_model, syn, rng)
        per_view = {k: torch.tensor(np.broadcast_to(v, (views,) + v.shape[-1:]), dtype=torch.float32)
                    for k, v in drawn.items()}
        instance = morphable(FaceCoefficients(**per_view), (size, size))
        render = render_mesh(
            instance.vertices, morphable.faces,
            {"color": instance.colors, "parsing": onehot[None].expand(views, -1, -1)}, (size, size),
        )
        mask = render.mask
        background = torch.stack([_background(rng, size) for _ in range(views)])
        rgb = (render.images["color"].clamp(0, 1) * mask + background * (1 - mask)).clamp(0, 1)
        parsing = torch.where(mask[..., 0] > 0.5, render.images["parsing"].argmax(-1), torch.zeros((), dtype=torch.long))
        out["rgb"].append((rgb * 255).round().to(torch.uint8).numpy())
        out["parsing"].append(parsing.to(torch.uint8).numpy())
        out["skin_weight"].append(skin_attention(parsing, loss_cfg.skin_weights, syn.feature_dilation_px))
        out["landmarks"].append(instance.landmarks.numpy())
        out["gt_shape"].append(instance.shape[0].numpy())
        out["landmarks3d"].append(instance.shape[0, lm3d_index].numpy())
        for k, v in drawn.items():
            coeff_lists.setdefault(f"gt_{k}", []).append(np.asarray(v, dtype=np.float32))
    arrays = {k: np.stack(v) for k, v in out.items()}
    arrays.update({k: np.stack(v) for k, v in coeff_lists.items()})
    arrays["skin_weight"] = arrays["skin_weight"].astype(np.float32)
    arrays["landmarks"] = arrays["landmarks"].astype(np.float32)
    return arrays


def load_or_generate(
    face_model: FaceModel, data_cfg: DataConfig, loss_cfg: LossConfig, cache_dir: str, progress: bool = True
) -> dict[str, dict]:
    """{'train': arrays, 'val': arrays} from the cache, generating what is missing.

    Each split is written to a temporary folder and renamed into place when complete,
    so an interrupted generation leaves no half cache behind.
    """
    root = os.path.join(cache_dir, f"synthetic-{cache_key(face_model, data_cfg, loss_cfg)}")
    counts = {"train": data_cfg.synthetic.num_train, "val": data_cfg.synthetic.num_val}
    result = {}
    for split, count in counts.items():
        folder = os.path.join(root, f"{split}-{count}")
        if not os.path.isdir(folder):
            arrays = generate_split(face_model, data_cfg, loss_cfg, split, count, progress)
            tmp = f"{folder}.tmp{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            os.makedirs(tmp)
            for name, array in arrays.items():
                np.save(os.path.join(tmp, f"{name}.npy"), array)
            try:
                os.rename(tmp, folder)
            except OSError:  # another process (e.g. a DDP rank) finished first
                shutil.rmtree(tmp, ignore_errors=True)
        result[split] = {
            name[:-4]: np.load(os.path.join(folder, name), mmap_mode="r")
            for name in sorted(os.listdir(folder)) if name.endswith(".npy")
        }
    return result


class SyntheticMultiView(Dataset):
    """Samples (DESIGN.md sample dict) over arrays from `load_or_generate`.

    rgb float [Vw, 3, H, W] in [0, 1]; parsing long [Vw, H, W]; skin_weight float
    [Vw, H, W]; landmarks float [Vw, 68, 2] px; view_mask bool [Vw] (all true);
    landmarks3d float [P, 3] mm; gt_shape float [V, 3] mm; gt_coeffs dict of float
    tensors; name str.
    """

    def __init__(self, arrays: dict, split: str):
        self.arrays = arrays
        self.split = split

    def __len__(self) -> int:
        return self.arrays["rgb"].shape[0]

    def __getitem__(self, index: int) -> dict:
        a = self.arrays
        t = lambda name: torch.from_numpy(np.array(a[name][index]))  # noqa: E731
        rgb = t("rgb").permute(0, 3, 1, 2).float() / 255.0
        return {
            "rgb": rgb,
            "parsing": t("parsing").long(),
            "skin_weight": t("skin_weight"),
            "landmarks": t("landmarks"),
            "view_mask": torch.ones(rgb.shape[0], dtype=torch.bool),
            "landmarks3d": t("landmarks3d"),
            "gt_shape": t("gt_shape"),
            "gt_coeffs": {k[3:]: t(k) for k in a if k.startswith("gt_") and k != "gt_shape"},
            "name": f"synthetic-{self.split}-{index:05d}",
        }


def build_synthetic(
    face_model: FaceModel, data_cfg: DataConfig, loss_cfg: LossConfig, cache_dir: str, progress: bool = True
) -> tuple[SyntheticMultiView, SyntheticMultiView]:
    """(train, val) datasets, generated on first use and cached under `cache_dir`."""
    arrays = load_or_generate(face_model, data_cfg, loss_cfg, cache_dir, progress)
    return SyntheticMultiView(arrays["train"], "train"), SyntheticMultiView(arrays["val"], "val")
