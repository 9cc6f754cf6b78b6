"""Synthetic multi-view faces with known ground truth: the embedded default dataset.

Each subject draws identity, expression, albedo and SH lighting from the face model
(spreads from `SyntheticDataConfig`; a model with bounded expression coefficients,
`FaceModel.exp_range`, e.g. ICT-FaceKit's blendshape weights in [0, 1], gets the
normal draw clipped to that range, so about half its blendshapes are off and the
others partly on) and is rendered with our renderer from three
yaws (left, front, right) with jitter in rotation, translation and scale over a
smooth random background. Ground truth kept per subject: the model-space mesh
(`gt_shape`, mm), 3D landmarks, the coefficients, and per view the projected 68
landmarks, the parsing map and the skin-attention weight map.

Subject i of a split depends only on (seed, split, i), so the data are the same for
any sample count and any machine. Generated arrays are cached as `.npy` files under
`<cache_dir>/synthetic-<key>/`, the key hashing the face model and every setting
that changes the data; a half-written cache is never used. With
`data.synthetic.fresh_train` the training set is instead rendered on the fly, new
subjects every epoch (subject e * num_train + i of the 'train' split at epoch e), so
the network cannot memorise a fixed pool.
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

from lib.config.schema import Config, DataConfig, LossConfig, RenderConfig, SyntheticDataConfig
from lib.errors import UserError
from lib.facemodel.schema import FaceModel
from lib.geometry import CAMERA_DISTANCE_MM
from lib.morphable import FaceCoefficients, MorphableModel
from lib.preprocess.parsing import skin_attention_weights
from lib.render import render_mesh
from lib.runfolder import remove_stale_temporaries

CACHE_VERSION = 1  # bump when the generator changes what it produces
SPLITS = {"train": 0, "val": 1}


def skin_attention(parsing: torch.Tensor, weights: list, dilation_px_224: int) -> np.ndarray:
    """Per-pixel skin-attention weights float32 [Vw, H, W] from parsing maps [Vw, H, W]
    (the preprocessing's function, so synthetic and photo samples weigh alike);
    dilation_px_224 is `preprocess.feature_dilation_px` (at 224 px, scaled to the
    map's size as lib.preprocess does)."""
    dilation = int(round(dilation_px_224 * parsing.shape[-2] / 224))
    return np.stack([skin_attention_weights(p.numpy(), weights, dilation) for p in parsing])


def _fingerprint(face_model: FaceModel) -> str:
    digest = hashlib.sha1(face_model.name.encode())
    for array in (face_model.mean_shape, face_model.id_basis, face_model.exp_basis, face_model.albedo_mean,
                  face_model.faces, face_model.region_labels, face_model.exp_range):
        if array is not None:
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]


def cache_key(
    face_model: FaceModel, data_cfg: DataConfig, loss_cfg: LossConfig, feature_dilation_px: int, render: RenderConfig
) -> str:
    """Hash of everything that changes the generated arrays (not render.backend: the
    backends agree, tests/test_render.py)."""
    synthetic = dataclasses.asdict(data_cfg.synthetic)
    for served in ("fresh_train", "present_views"):  # how samples are served, not what a subject is
        synthetic.pop(served)
    settings = {
        "version": CACHE_VERSION,
        "face_model": _fingerprint(face_model),
        "image_size": data_cfg.image_size,
        "synthetic": synthetic,
        "skin_weights": loss_cfg.skin_weights,
        "feature_dilation_px": feature_dilation_px,
        "cull_backfaces": render.cull_backfaces,
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
    expression = rng.normal(0, cfg.exp_std, face_model.num_exp)
    if face_model.exp_range is not None:
        expression = np.clip(expression, *face_model.exp_range)
    return {
        "identity": rng.normal(0, cfg.id_std, face_model.num_id),
        "expression": expression,
        "albedo": rng.normal(0, cfg.tex_std, face_model.num_tex),
        "lighting": lighting,
        "rotation": np.deg2rad(rotation),
        "translation": translation,
    }


class SubjectRenderer:
    """Renders synthetic subjects one at a time: subject i of a split depends only on
    (data.synthetic.seed, split, i). feature_dilation_px: `preprocess.feature_dilation_px`
    (at 224 px); render: `render.*`, the renderer's settings."""

    def __init__(self, face_model: FaceModel, data_cfg: DataConfig, loss_cfg: LossConfig, feature_dilation_px: int,
                 render: RenderConfig):
        self.face_model, self.syn, self.size = face_model, data_cfg.synthetic, data_cfg.image_size
        self.skin_weights, self.dilation = loss_cfg.skin_weights, feature_dilation_px
        self.render_cfg = render
        self.morphable = MorphableModel(face_model)

    @torch.no_grad()
    def __call__(self, split: str, index: int) -> dict:
        """One subject as numpy arrays: rgb uint8 [Vw, H, W, 3], parsing uint8 [Vw, H, W],
        skin_weight float32 [Vw, H, W], landmarks float32 [Vw, 68, 2] px, landmarks3d
        float32 [P, 3] mm, gt_shape float32 [V, 3] mm, and gt_<name> float32 for every
        coefficient (rotation [Vw, 3] rad, translation [Vw, 3] mm)."""
        syn, size = self.syn, self.size
        views = len(syn.yaw_deg)
        rng = np.random.default_rng([syn.seed, SPLITS[split], index])
        drawn = _draw_coefficients(self.face_model, syn, rng)
        per_view = {k: torch.tensor(np.broadcast_to(v, (views,) + v.shape[-1:]), dtype=torch.float32)
                    for k, v in drawn.items()}
        instance = self.morphable(FaceCoefficients(**per_view), (size, size))
        render = render_mesh(
            instance.vertices, self.morphable.faces,
            {"color": instance.colors, "parsing": self.morphable.region_onehot[None].expand(views, -1, -1)}, (size, size),
            cull_backfaces=self.render_cfg.cull_backfaces, backend=self.render_cfg.backend,
        )
        mask = render.mask
        background = torch.stack([_background(rng, size) for _ in range(views)])
        rgb = (render.images["color"].clamp(0, 1) * mask + background * (1 - mask)).clamp(0, 1)
        parsing = torch.where(mask[..., 0] > 0.5, render.images["parsing"].argmax(-1), torch.zeros((), dtype=torch.long))
        subject = {
            "rgb": (rgb * 255).round().to(torch.uint8).numpy(),
            "parsing": parsing.to(torch.uint8).numpy(),
            "skin_weight": skin_attention(parsing, self.skin_weights, self.dilation).astype(np.float32),
            "landmarks": instance.landmarks.numpy().astype(np.float32),
            "gt_shape": instance.shape[0].numpy(),
            "landmarks3d": instance.shape[0, self.morphable.landmark3d_index].numpy(),
        }
        subject.update({f"gt_{k}": np.asarray(v, dtype=np.float32) for k, v in drawn.items()})
        return subject


def generate_split(
    face_model: FaceModel, data_cfg: DataConfig, loss_cfg: LossConfig, split: str, count: int, progress: bool = True,
    *, feature_dilation_px: int, render: RenderConfig,
) -> dict:
    """Render subjects 0..count-1 of `split` ('train' | 'val'): the arrays of
    `SubjectRenderer` stacked over subjects ([S, ...])."""
    render = SubjectRenderer(face_model, data_cfg, loss_cfg, feature_dilation_px, render)
    subjects = [render(split, i) for i in tqdm(range(count), desc=f"synthetic {split}", unit="subject",
                                                 disable=not progress)]
    return {k: np.stack([s[k] for s in subjects]) for k in subjects[0]}


def load_or_generate(
    face_model: FaceModel, cfg: Config, cache_dir: str, splits: dict[str, int], progress: bool = True
) -> dict[str, dict]:
    """{split: arrays} for `splits` ({name: subject count}) from the cache, generating
    what is missing.

    Each split is written to a temporary folder and renamed into place when complete,
    so an interrupted generation leaves no half cache behind.
    """
    dilation = cfg.preprocess.feature_dilation_px
    root = os.path.join(cache_dir, f"synthetic-{cache_key(face_model, cfg.data, cfg.loss, dilation, cfg.render)}")
    if os.path.isdir(root):  # a killed generation's folder.tmp<pid> (the cache may be shared: pid-checked)
        remove_stale_temporaries(root, shared_below=None)
    result = {}
    for split, count in splits.items():
        folder = os.path.join(root, f"{split}-{count}")
        if not os.path.isdir(folder):
            arrays = generate_split(face_model, cfg.data, cfg.loss, split, count, progress, feature_dilation_px=dilation,
                                    render=cfg.render)
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


def view_mask(num_views: int, present_views: list) -> torch.Tensor:
    """bool [num_views]: the views listed in `data.synthetic.present_views` (empty:
    all). UserError for an index outside 0..num_views-1."""
    if not present_views:
        return torch.ones(num_views, dtype=torch.bool)
    bad = [v for v in present_views if not 0 <= int(v) < num_views]
    if bad:
        raise UserError(f"data.synthetic.present_views={present_views}: view indices must be in 0..{num_views - 1}")
    mask = torch.zeros(num_views, dtype=torch.bool)
    mask[[int(v) for v in present_views]] = True
    return mask


def _sample(subject: dict, name: str, present: torch.Tensor) -> dict:
    """The DESIGN.md sample dict of one subject's arrays (`SubjectRenderer` layout):
    rgb float [Vw, 3, H, W] in [0, 1]; parsing long [Vw, H, W]; skin_weight float
    [Vw, H, W]; landmarks float [Vw, 68, 2] px; view_mask bool [Vw] (`present`, the
    views the sample offers; the others are still stored but masked everywhere);
    landmarks3d float [P, 3] mm; gt_shape float [V, 3] mm; gt_coeffs dict of float
    tensors; name str."""
    t = lambda key: torch.from_numpy(np.array(subject[key]))  # noqa: E731
    rgb = t("rgb").permute(0, 3, 1, 2).float() / 255.0
    return {
        "rgb": rgb,
        "parsing": t("parsing").long(),
        "skin_weight": t("skin_weight"),
        "landmarks": t("landmarks"),
        "view_mask": present.clone(),
        "landmarks3d": t("landmarks3d"),
        "gt_shape": t("gt_shape"),
        "gt_coeffs": {k[3:]: t(k) for k in subject if k.startswith("gt_") and k != "gt_shape"},
        "name": name,
    }


class SyntheticMultiView(Dataset):
    """Samples (see `_sample`) over stacked arrays from `load_or_generate` / `generate_split`;
    present_views as `data.synthetic.present_views` (empty: all views)."""

    def __init__(self, arrays: dict, split: str, present_views: list):
        self.arrays = arrays
        self.split = split
        self.present = view_mask(arrays["rgb"].shape[1], present_views)

    def __len__(self) -> int:
        return self.arrays["rgb"].shape[0]

    def __getitem__(self, index: int) -> dict:
        subject = {k: v[index] for k, v in self.arrays.items()}
        return _sample(subject, f"synthetic-{self.split}-{index:05d}", self.present)


class FreshSyntheticMultiView(Dataset):
    """`length` training samples rendered on the fly, new subjects every epoch: at
    epoch e (`set_epoch`, called by the training loop before it iterates, so forked
    DataLoader workers see it) index i is subject e * length + i of the 'train' split.
    Deterministic by (seed, epoch, index), hence resumable mid-epoch."""

    def __init__(self, renderer: SubjectRenderer, length: int, present_views: list):
        self.renderer, self.length, self.epoch = renderer, length, 0
        self.present = view_mask(len(renderer.syn.yaw_deg), present_views)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        subject_id = self.epoch * self.length + index
        return _sample(self.renderer("train", subject_id), f"synthetic-train-{subject_id:07d}", self.present)


def build_synthetic(face_model: FaceModel, cfg: Config, cache_dir: str, progress: bool = True) -> tuple[Dataset, Dataset]:
    """(train, val) datasets: val (and train unless `data.synthetic.fresh_train`)
    generated on first use and cached under `cache_dir`; skin-attention maps use
    `preprocess.feature_dilation_px` like photos. Both offer only the views of
    `data.synthetic.present_views` (training on one view and validating on it)."""
    syn = cfg.data.synthetic
    present = list(syn.present_views)
    if syn.fresh_train:
        arrays = load_or_generate(face_model, cfg, cache_dir, {"val": syn.num_val}, progress)
        renderer = SubjectRenderer(face_model, cfg.data, cfg.loss, cfg.preprocess.feature_dilation_px, cfg.render)
        return FreshSyntheticMultiView(renderer, syn.num_train, present), SyntheticMultiView(arrays["val"], "val", present)
    arrays = load_or_generate(face_model, cfg, cache_dir, {"train": syn.num_train, "val": syn.num_val}, progress)
    return SyntheticMultiView(arrays["train"], "train", present), SyntheticMultiView(arrays["val"], "val", present)
