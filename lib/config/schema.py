"""Every default of the project, in one typed schema.

YAML files in `configs/` and `section.key=value` command-line overrides change these
values; nothing else holds a default. Units: millimetres, pixels, degrees where named
`_deg`, epochs where named `_epoch(s)`. `RANGES` (end of file) holds the allowed range
of every number, checked by the loader together with the types.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class FaceModelConfig:
    """Which 3D Morphable Model to use (see doc/face_models.md)."""

    source: str = "builtin"  # builtin | bfm | bfm_official | ict | npz
    # BFM_model_front.mat (bfm), folder of official BFM09 files (bfm_official),
    # ICT-FaceKit FaceXModel folder or its .tar.xz (ict), or a converted .npz (npz).
    path: str = ""
    # Face model for photos (test_sample.py --input, prepare.py): "auto" takes the
    # converted ICT-FaceKit model at `converted` when it exists and `source` is the
    # synthetic builtin, else `source`; "config" always takes `source` / `path`.
    photos: str = "auto"
    # Where `python -m lib.facemodel.ict ICT-FaceKit` writes the converted model
    # (relative to the working directory, like every path here).
    converted: str = "pretrain/ict_facekit.npz"


@dataclass
class ModelConfig:
    """The DF-MVR network (MulEn-UNet fusion + RedNet-50 + heads)."""

    width: float = 1.0  # channel multiplier; 1.0 is the paper's network
    unet_channels: list = field(default_factory=lambda: [64, 128, 256, 512, 1024])
    fused_channels: int = 256  # channels of the fused map fed to RedNet (at width 1)
    rednet_layers: list = field(default_factory=lambda: [3, 4, 6, 3])  # RedNet-50
    involution: str = "auto"  # auto | unfold | lean | triton
    # Ablations (doc/network.md): RedNet's spatial op, "involution" (the paper) or
    # "conv3x3" (a plain 3x3 convolution with the same stride in its place); attention
    # gates on the skips (false: the skips are concatenated ungated).
    rednet_op: str = "involution"
    attention_gates: bool = True
    expression_per_view: bool = True  # False: one expression shared by the views (the seed's code)
    # How the parsing map enters the network: "label" (the seed's one channel, class
    # index 0..9 as a float), "one_hot" (10 channels; learns faster, doc/network.md) or
    # "none" (RGB only: the ablation without the parsing channel).
    parsing_input: str = "label"
    num_views: int = 3
    # Pose-head output bounds (doc/network.md): rotation = limit * tanh(raw) radians;
    # translation = limit * tanh(raw * scale / limit) mm from the canonical placement.
    rotation_limit_deg: float = 90.0
    translation_limit_mm: float = 200.0
    translation_scale_mm: float = 50.0  # mm per unit raw output near 0
    # "bounded": the tanh bounds above; "seed": the seed's raw heads (rotation radians,
    # translation in decimetres in its camera frame), for ported seed checkpoints.
    pose_output: str = "bounded"


@dataclass
class RenderConfig:
    """The differentiable renderer (see doc/renderer.md)."""

    cull_backfaces: bool = True
    backend: str = "auto"  # auto | torch | numba; auto: numba for CPU tensors when installed


@dataclass
class SyntheticDataConfig:
    """Multi-view faces rendered from the face model with known ground truth."""

    num_train: int = 512
    num_val: int = 32
    seed: int = 0
    yaw_deg: list = field(default_factory=lambda: [-35.0, 0.0, 35.0])  # left, front, right
    yaw_jitter_deg: float = 5.0
    pitch_jitter_deg: float = 5.0
    roll_jitter_deg: float = 3.0
    translation_jitter_mm: float = 10.0
    scale_jitter: float = 0.05
    id_std: float = 1.0  # coefficient spread in units of the basis' standard deviation
    exp_std: float = 0.5
    tex_std: float = 1.0
    light_std: float = 0.15  # spread of the 9 SH coefficients (shared by R, G, B)
    light_tint_std: float = 0.04  # per-channel deviation from monochrome light
    # Render the training set on the fly, new subjects every epoch (no memorising a
    # fixed pool); validation subjects stay fixed and cached.
    fresh_train: bool = False
    # Views (indices into yaw_deg) the samples offer to training and validation; the
    # others are masked (view_mask false). [1]: the front view alone.
    present_views: list = field(default_factory=lambda: [0, 1, 2])


@dataclass
class AugmentConfig:
    """Photometric augmentation of the training photos (the seed's, doc/seed.md): one
    random draw per sample, the same for its views, applied to the image that is both
    the network input and the photometric target. Factors are drawn uniformly from
    [1 - x, 1 + x] (PIL ImageEnhance: brightness, contrast, colour, sharpness, in that
    order); then a Gaussian blur with probability blur_prob. Draws depend only on
    (train.seed, epoch, sample index): reproducible with any number of workers."""

    enabled: bool = False
    brightness: float = 0.5
    contrast: float = 0.5
    saturation: float = 0.5
    sharpness: float = 0.5
    blur_prob: float = 0.3
    blur_radius_px: float = 2.0  # PIL ImageFilter.GaussianBlur's default, at 224 px


@dataclass
class DataConfig:
    dataset: str = "synthetic"  # synthetic | pixel_face | folders
    root: str = ""  # dataset root for pixel_face / folders
    # Length unit of Pixel-Face's nicp_106_pts.txt and val_obj meshes (mm | cm | dm | m);
    # the released files are in BFM decimetres (the seed multiplies them by 100).
    pixel_face_unit: str = "dm"
    # Folder with the seed's split lists (shallow_path_train.npy, shallow_path_val.npy:
    # one '<...>/<split>/<subject>/<expression>/<folder>' per sample); empty: every
    # sample found under <root>/train and <root>/val.
    pixel_face_lists: str = ""
    val_root: str = ""  # folders: views to validate on (loss terms only); empty: the training folders
    image_size: int = 224
    num_workers: int = 0
    cache_dir: str = ""  # empty: <out>/cache
    synthetic: SyntheticDataConfig = field(default_factory=SyntheticDataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class PreprocessConfig:
    """Photos -> aligned crops, 68 landmarks, parsing maps (see doc/preprocess.md)."""

    landmarks: str = "mediapipe"  # mediapipe | mediapipe_dlib | dlib (doc/preprocess.md: measured choice)
    aligned: bool = False  # inputs are already aligned 224x224 crops: pass through
    parser: str = "landmarks"  # landmarks | bisenet
    bisenet_weights: str = ""  # face-parsing.PyTorch 79999_iter.pth, for parser=bisenet
    feature_dilation_px: int = 5  # skin-attention: features grown by this many px (at 224; seed: 10x10 kernel)


@dataclass
class LossConfig:
    """Loss weights (seed / Deep3DFaceRecon values) and the terms' own settings."""

    photometric: float = 1.92  # Deep3DFaceRecon's; the seed uses 24 (configs/pixel_face.yaml)
    landmark: float = 1.6e-3  # Deep3DFaceRecon's, on squared distances; the seed: 0.02 unsquared
    # "squared" (Deep3DFaceRecon) or "unsquared" (the seed) pixel distance per landmark.
    landmark_distance: str = "squared"
    landmark3d: float = 1.0
    # Views whose shape the 3D landmark term measures: "all" or "front" (the seed's code).
    landmark3d_views: str = "all"
    coefficient: float = 3e-4
    id_weight: float = 1.0  # inside the coefficient regulariser
    exp_weight: float = 0.8
    tex_weight: float = 1.7e-2
    lighting: float = 10.0  # SH monochrome regulariser
    reflectance: float = 5.0  # albedo uniformity over the skin
    parsing: float = 1.0
    # Keeps fitted coefficients inside the face model's range (fitting only; zero
    # inside, quadratic outside the limits below; doc/fitting.md "Fits that stay faces").
    plausibility: float = 1.0
    plausible_quantile: float = 0.999  # the range holds this fraction of the model's faces
    landmark_heavy_weight: float = 20.0  # nose bridge, eyes, inner mouth (the seed's set)
    # Skin attention (background, skin, features): the seed's 32, 128, 254 of 255. Only
    # their ratios matter (the photometric term divides by the weight sum).
    skin_weights: list = field(default_factory=lambda: [32 / 255, 128 / 255, 254 / 255])
    # Uniform mass mixed into the rendered soft labels before the parsing NLL, so the
    # log stays finite where the render gives the target class zero probability.
    parsing_smoothing: float = 0.01


@dataclass
class TrainConfig:
    epochs: int = 280
    batch_size: int = 12
    lr: float = 1e-4
    step_epoch: int = 50  # constant learning rate before, cosine decay after
    mask_epoch: int = 100  # parsing loss switched on from this epoch
    save_every: int = 8  # epochs between kept checkpoints (last.pt every epoch)
    val_every: int = 1
    seed: int = 22
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = True  # bf16/fp16 autocast on CUDA only
    sync_bn: bool = False
    nan_patience: int = 5  # stop after this many non-finite steps in a row
    log_images_every: int = 1  # epochs between TensorBoard image grids
    # batch_size is the global batch: each of the world_size ranks takes batch_size / world_size.
    last_every_minutes: float = 10.0  # also write last.pt mid-epoch this often (0: off)
    progress: bool = True  # tqdm bars (generation and training)
    # torch intra-op threads per process (0: torch's default, one per core). Small
    # networks gain little from threads, and on a shared CPU they can spin-wait.
    num_threads: int = 0
    # CPU only: train.py starts this many local processes itself (DDP over gloo, each
    # with batch_size / processes): small networks use several cores far better this
    # way than through intra-op threads. Ignored under torchrun and on GPUs.
    processes: int = 1


@dataclass
class EvalConfig:
    """NoW-style scan-to-mesh evaluation (see doc/evaluation.md)."""

    crop_radius_factor: float = 1.4  # as NoW's evaluation code and the seed's copy of it (1.2 is commented out there)
    refine_rigid: bool = True
    scan_points: int = 100000  # points sampled from synthetic ground-truth meshes
    checkpoint: str = ""
    refine_iterations: int = 10  # Levenberg-Marquardt steps of the rigid + scale refinement
    refine_points: int = 10000  # cropped scan points the refinement uses (0: all)
    seed: int = 0  # scan sampling and refinement subset
    heatmap_max_mm: float = 4.0  # error mapped to the top of the heat-map colour scale
    heatmap_size: int = 384  # heat-map render side, pixels
    curve_max_mm: float = 8.0  # x range of the cumulative error curve (NoW plots 0-8 mm)
    num_samples: int = 0  # evaluate only the first N validation samples (0: all)
    # Where a Pixel-Face scan's 7 NoW points come from: "points101" (the sample's
    # nicp_106_pts.txt at positions 47, 50, 53, 56, 41, 79, 85: any mesh topology) or
    # "mesh" (the validation mesh's vertices 2215, 5828, 10455, 14065, 8192, 5522, 10795:
    # the seed's gt_al_index.npy, for meshes in BFM09-front topology).
    pixel_face_landmarks: str = "points101"


@dataclass
class FitConfig:
    """Analysis-by-synthesis fitting used by test_sample.py (see doc/fitting.md)."""

    steps_pose: int = 30  # L-BFGS evaluations, landmarks only
    steps_shape: int = 200  # L-BFGS evaluations, landmarks + prior
    steps_appearance: int = 150  # Adam steps on the full objective (renders)
    steps_refine: int = 40  # after a network prediction
    lr: float = 0.05  # Adam step for identity / expression / albedo coefficients (unit variance)
    lr_rotation: float = 0.01  # radians per step
    lr_translation: float = 1.0  # mm per step
    lr_lighting: float = 0.02  # SH coefficients per step
    crop_size: int = 224  # px, side of the face crops that are fitted and drawn (photos are aligned to it)
    render_size: int = 112  # px (longer side) of the renders compared with the photos
    landmark_scale: float = 5.0  # fitting's landmark weight = loss.landmark x this
    prior_scale: float = 0.1  # fitting's coefficient-prior weight = loss.coefficient x this
    side_view_deg: float = 15.0  # views with |yaw| above this count as side views
    side_jaw_weight: float = 1.0  # landmark weight factor of the jaw contour on side views
    # Jaw landmarks re-selected on the silhouette per pose (lib/fitting/contour.py), for
    # detected landmarks (they follow the silhouette, doc/preprocess.md); synthetic
    # subjects' landmarks are the fixed vertices and are fitted without. bench/contour.py.
    contour_marching: bool = True
    contour_band_mm: float = 6.0  # half-height of a jaw landmark's line of candidate vertices
    contour_inner_fraction: float = 0.35  # lines run from this fraction of the landmark's |x| out to it
    texture_size: int = 512  # px, square UV texture baked from the views
    texture_min_cosine: float = 0.2  # texels seen more obliquely than this are not baked
    texture_cosine_power: float = 2.0  # blending weight = cosine ** power
    # Views whose facial detail agrees less than this (correlation, lib/fitting/report.py)
    # are flagged as possibly different people (measured in doc/fitting.md).
    min_view_agreement: float = 0.2
    demo_subjects: int = 3  # synthetic subjects when test_sample.py gets no --input
    novel_yaw_deg: float = 50.0  # view angle of the shaded render on each sheet
    # torch threads while fitting (0: torch's default, one per core). Fitting's tensors
    # are small; on the shared 2-core machine 2 threads were over 10x slower than 1.
    num_threads: int = 1


@dataclass
class VideoConfig:
    """Choosing views from a head-turn video (test_sample.py --video, the demo; doc/video.md)."""

    max_frames: int = 90  # frames examined, spread evenly over the video (decoding every one is slow)
    target_yaw_deg: list = field(default_factory=lambda: [-35.0, 0.0, 35.0])  # left, front, right (data.synthetic's yaws)
    yaw_window_deg: float = 5.0  # the sharpest frame within this of a target yaw wins
    max_yaw_error_deg: float = 20.0  # a target with no frame this close is left out (fewer views)
    sharpness_size: int = 128  # px side of the face box rescaled before measuring sharpness
    steps_pose: int = 20  # L-BFGS evaluations of the per-frame pose (landmarks only) for the yaw
    steps_shape: int = 60  # then of shared identity, per-frame expression and pose


@dataclass
class DemoConfig:
    """The browser demo (demo.py)."""

    host: str = "127.0.0.1"  # localhost only; 0.0.0.0 serves the network (no authentication)
    port: int = 7860


@dataclass
class Config:
    face_model: FaceModelConfig = field(default_factory=FaceModelConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    data: DataConfig = field(default_factory=DataConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    fit: FitConfig = field(default_factory=FitConfig)
    video: VideoConfig = field(default_factory=VideoConfig)
    demo: DemoConfig = field(default_factory=DemoConfig)


@dataclass(frozen=True)
class Range:
    """Allowed values of a number (or of every entry of a list of numbers).

    low / high: inclusive bounds (None: unbounded); above: True makes `low` exclusive
    (the value must be greater than it). Non-finite values (nan, inf) are never allowed.
    """

    low: float | None = None
    high: float | None = None
    above: bool = False

    def admits(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.above else value < self.low):
            return False
        return self.high is None or value <= self.high

    def describe(self) -> str:
        if self.low is not None and self.high is not None:
            return f"between {self.low:g} and {self.high:g}"
        if self.low is not None:
            return f"greater than {self.low:g}" if self.above else f"at least {self.low:g}"
        return f"at most {self.high:g}" if self.high is not None else "a finite number"


POSITIVE = Range(0, above=True)
NON_NEGATIVE = Range(0)
COUNT = Range(1)  # at least one
FINITE = Range()
SEED = Range(0, 2**32 - 1)  # numpy's seed range
FRACTION = Range(0, 1)

RANGES: dict[str, Range] = {
    "model.width": POSITIVE,
    "model.unet_channels": COUNT,
    "model.fused_channels": COUNT,
    "model.rednet_layers": COUNT,
    "model.num_views": COUNT,
    "model.rotation_limit_deg": Range(0, 180, above=True),
    "model.translation_limit_mm": POSITIVE,
    "model.translation_scale_mm": POSITIVE,
    "data.synthetic.num_train": COUNT,
    "data.synthetic.num_val": NON_NEGATIVE,
    "data.synthetic.seed": SEED,
    "data.synthetic.yaw_deg": Range(-90, 90),
    "data.synthetic.present_views": NON_NEGATIVE,  # indices into yaw_deg (upper bound checked by the dataset)
    "data.synthetic.yaw_jitter_deg": NON_NEGATIVE,
    "data.synthetic.pitch_jitter_deg": NON_NEGATIVE,
    "data.synthetic.roll_jitter_deg": NON_NEGATIVE,
    "data.synthetic.translation_jitter_mm": NON_NEGATIVE,
    "data.synthetic.scale_jitter": FRACTION,
    "data.synthetic.id_std": NON_NEGATIVE,
    "data.synthetic.exp_std": NON_NEGATIVE,
    "data.synthetic.tex_std": NON_NEGATIVE,
    "data.synthetic.light_std": NON_NEGATIVE,
    "data.synthetic.light_tint_std": NON_NEGATIVE,
    "data.augment.brightness": FRACTION,  # factors drawn in [1 - x, 1 + x]
    "data.augment.contrast": FRACTION,
    "data.augment.saturation": FRACTION,
    "data.augment.sharpness": FRACTION,
    "data.augment.blur_prob": FRACTION,
    "data.augment.blur_radius_px": NON_NEGATIVE,
    "data.image_size": Range(16),  # smaller crops hold no usable face
    "data.num_workers": NON_NEGATIVE,
    "preprocess.feature_dilation_px": NON_NEGATIVE,
    "loss.photometric": NON_NEGATIVE,
    "loss.landmark": NON_NEGATIVE,
    "loss.landmark3d": NON_NEGATIVE,
    "loss.coefficient": NON_NEGATIVE,
    "loss.id_weight": NON_NEGATIVE,
    "loss.exp_weight": NON_NEGATIVE,
    "loss.tex_weight": NON_NEGATIVE,
    "loss.lighting": NON_NEGATIVE,
    "loss.reflectance": NON_NEGATIVE,
    "loss.parsing": NON_NEGATIVE,
    "loss.landmark_heavy_weight": NON_NEGATIVE,
    "loss.skin_weights": NON_NEGATIVE,
    "loss.parsing_smoothing": Range(0, 0.5),
    "loss.plausibility": NON_NEGATIVE,
    "loss.plausible_quantile": Range(0, 1 - 1e-9, above=True),  # 1 would put the range at infinity
    "train.epochs": COUNT,
    "train.batch_size": COUNT,
    "train.lr": POSITIVE,
    "train.step_epoch": NON_NEGATIVE,
    "train.mask_epoch": NON_NEGATIVE,
    "train.save_every": COUNT,
    "train.val_every": COUNT,
    "train.seed": SEED,
    "train.nan_patience": COUNT,
    "train.log_images_every": NON_NEGATIVE,
    "train.last_every_minutes": NON_NEGATIVE,
    "train.num_threads": NON_NEGATIVE,
    "train.processes": COUNT,
    "eval.crop_radius_factor": POSITIVE,
    "eval.scan_points": COUNT,
    "eval.refine_iterations": NON_NEGATIVE,
    "eval.refine_points": NON_NEGATIVE,
    "eval.seed": SEED,
    "eval.heatmap_max_mm": POSITIVE,
    "eval.heatmap_size": Range(16),
    "eval.curve_max_mm": POSITIVE,
    "eval.num_samples": NON_NEGATIVE,
    "fit.steps_pose": NON_NEGATIVE,
    "fit.steps_shape": NON_NEGATIVE,
    "fit.steps_appearance": NON_NEGATIVE,
    "fit.steps_refine": NON_NEGATIVE,
    "fit.lr": POSITIVE,
    "fit.lr_rotation": POSITIVE,
    "fit.lr_translation": POSITIVE,
    "fit.lr_lighting": POSITIVE,
    "fit.crop_size": Range(32),  # lib.preprocess.image_io.MIN_SIDE
    "fit.render_size": Range(16),
    "fit.landmark_scale": NON_NEGATIVE,
    "fit.prior_scale": NON_NEGATIVE,
    "fit.side_view_deg": Range(0, 90),
    "fit.side_jaw_weight": NON_NEGATIVE,
    "fit.contour_band_mm": POSITIVE,
    "fit.contour_inner_fraction": FRACTION,
    "fit.texture_size": Range(16),
    "fit.texture_min_cosine": FRACTION,
    "fit.texture_cosine_power": NON_NEGATIVE,
    "fit.min_view_agreement": Range(-1, 1),
    "fit.demo_subjects": COUNT,
    "fit.novel_yaw_deg": Range(-90, 90),
    "fit.num_threads": NON_NEGATIVE,
    "video.max_frames": COUNT,
    "video.target_yaw_deg": Range(-90, 90),
    "video.yaw_window_deg": NON_NEGATIVE,
    "video.max_yaw_error_deg": NON_NEGATIVE,
    "video.sharpness_size": Range(16),
    "video.steps_pose": NON_NEGATIVE,
    "video.steps_shape": NON_NEGATIVE,
    "demo.port": Range(1, 65535),
}
"""Dotted key -> allowed range, for every int / float / list-of-numbers setting."""

RESUME_SAFE: tuple[str, ...] = (
    "train.epochs", "train.save_every", "train.val_every", "train.log_images_every", "train.last_every_minutes",
    "train.progress", "train.num_threads", "train.processes", "train.device", "train.nan_patience",
    "data.num_workers", "data.cache_dir", "eval", "fit", "video", "demo",
)
"""Settings (a dotted key, or a whole section) that may differ when train.py resumes
a run: how long, how often to save / validate / log, on what hardware, and the
sections training does not read for the weights. Every other change is refused on
resume (it would silently mix two runs in one folder)."""
