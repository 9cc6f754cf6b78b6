"""The prepared GPU check (issue 18): every CUDA path run once and measured, one table.

    python bench/gpu.py                 # on a GPU machine: the whole check, about 3-4 minutes
    python bench/gpu.py --cpu-smoke     # tiny versions of every row on the CPU (a minute or two)
    python bench/gpu.py --sections raster network   # some sections only
    python bench/gpu.py --markdown gpu_table.md     # the table also as Markdown

Sections (doc/gpu.md says what each row means):

- tests:     `pytest -m cuda` in a child process (passed / failed / skipped)
- raster:    the torch rasterizer (`render_mesh`, backend torch) on a BFM-size mesh at
             224 px: forward and forward + backward ms per view, batch 3 and 36
- network:   the paper's network (configs/pixel_face.yaml), forward + backward at
             batch 12 and 24, float32 vs bf16 autocast, NCHW vs channels_last; the
             involution paths (unfold, lean) at batch 12 in bf16
- objective: on a synthetic face model of BFM09's layout and sizes (35,709 vertices,
             80 / 64 / 80 modes, the real `BFM_model_front.mat` keys, built here): the
             face model + renderer + every loss alone, then one whole training step
             (`Trainer`'s own step: network, objective, backward, fused Adam) in
             three-view samples per second; bf16 vs float32 agreement of the objective
             (every term) and of its gradient on the same weights and batch
- data:      the training data path of photo datasets (Pixel-Face, folders) without
             the GPU work: `Trainer`'s own DataLoader (its workers, collate and pinned
             memory) over `PreparedViews` reading a filled preprocessing cache, batches
             moved to the device; three-view samples per second at data.num_workers
             4 (the paper preset) and 8
- ddp:       `torchrun --nproc_per_node=1 train.py` on configs/tiny.yaml for one epoch
             (2 steps): nccl process group, DistributedDataParallel, SyncBatchNorm

Each section runs in its own child process with a time limit, and each row inside it
in its own try block, so a failing row (or a crashed CUDA context) prints its error
in the table and the check goes on. Without CUDA and without --cpu-smoke every row
says "no CUDA". With --cpu-smoke every row runs a tiny version on the CPU (small
mesh, configs/tiny.yaml's network at 32 px, a 25 x 25 grid face model): the same
code paths, so a GPU session only has to run the real sizes.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import machine  # noqa: E402

SECTIONS = ("tests", "raster", "network", "objective", "data", "ddp")
SECTION_LIMIT_S = {"tests": 60, "raster": 25, "network": 90, "objective": 60, "data": 35, "ddp": 60}
"""Wall-clock limit per child process on the GPU (seconds; the sum keeps the whole
check under 6 minutes even when every section runs to its limit)."""
SMOKE_LIMIT_S = 600
"""Limit per child process in --cpu-smoke mode on a shared 2-core machine."""

TARGET_SAMPLES_PER_S = 300.0  # issue 18: 1.2 M three-view samples in about an hour
TARGET_RASTER_MS = 0.3  # issue 18: above this (fwd + bwd per view, batch 36) write a kernel
AGREEMENT_RTOL = 0.03  # |bf16 - fp32| / |fp32| allowed for the weighted total
AGREEMENT_MIN_COSINE = 0.9  # cosine of the bf16 and fp32 gradients of all network weights
# (measured 0.98 on the tiny CPU network; a broken dtype path gives about 0 or NaN)

ROW_PREFIX = "ROW "


@dataclasses.dataclass
class Row:
    """One line of the table. peak_mib: the peak GPU memory of the measured call
    (None where not measured, e.g. on the CPU); status: ok, no CUDA, FAIL (a check
    failed) or error (an exception)."""

    section: str
    name: str
    result: str = ""
    peak_mib: float | None = None
    status: str = "ok"


@dataclasses.dataclass(frozen=True)
class Sizes:
    """What a run measures: the real sizes on a GPU, tiny ones for --cpu-smoke."""

    raster_grid: int
    raster_image: int
    raster_batches: tuple
    net_config: str
    net_batches: tuple
    face_grid: int
    step_batches: tuple
    data_samples: int  # samples in the data section's epoch
    data_workers: tuple
    repeats: int
    warmup: bool  # one untimed call first (CUDA context, cuDNN autotuning, numba compilation)


GPU_SIZES = Sizes(raster_grid=189, raster_image=224, raster_batches=(3, 36), net_config="pixel_face.yaml",
                  net_batches=(12, 24), face_grid=189, step_batches=(12, 24), data_samples=240,
                  data_workers=(4, 8), repeats=3, warmup=True)
SMOKE_SIZES = Sizes(raster_grid=25, raster_image=32, raster_batches=(1, 2), net_config="tiny.yaml",
                    net_batches=(2,), face_grid=25, step_batches=(2,), data_samples=8, data_workers=(0, 2),
                    repeats=1, warmup=False)


# ----------------------------------------------------------------------- helpers


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, sizes: Sizes) -> tuple[float, float | None]:
    """(median seconds of `sizes.repeats` calls of fn(), after a warm-up call when
    `sizes.warmup`; peak GPU MiB over the measured calls, None on the CPU)."""
    if sizes.warmup:
        fn()
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(sizes.repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return float(np.median(times)), peak


def guarded(section: str, name: str, fn) -> Row:
    """fn() -> Row, or a Row carrying the exception's last line (the check goes on)."""
    try:
        return fn()
    except Exception as err:  # noqa: BLE001 - a row's failure is a result, not the end of the check
        if torch.cuda.is_available():
            torch.cuda.empty_cache()  # after an out-of-memory error the next rows still fit
        message = str(err).strip().splitlines()[-1] if str(err).strip() else ""
        traceback.print_exc(file=sys.stderr)
        return Row(section, name, f"{type(err).__name__}: {message}"[:160], status="error")


# ------------------------------------------------------------- BFM-size face model


def bfm_size_face_model(grid: int):
    """A FaceModel with the layout and sizes of BFM09 as the seed uses it, no BFM file:
    the arrays of a `BFM_model_front.mat` (decimetres, 1-based indices, texture
    0..255; 80 identity / 64 expression / 80 texture modes) built for the face-like
    grid mesh of `lib.render.synthetic`, then read by the project's BFM loader.

    The 189 x 189 grid is cut to BFM's 35,709 vertices, so the loader attaches BFM's NoW and
    Pixel-Face 101-point index sets (the 3D landmark term then uses 101 points, as
    in training on Pixel-Face). The bases are smooth random fields (a few mm per
    unit coefficient), the 68 landmarks the vertices nearest to the built-in
    model's design positions. Geometry is not a real face: sizes and code paths are.
    """
    from lib.facemodel.bfm import BFM_FRONT_VERTICES, MAX_MODES, face_model_from_front
    from lib.facemodel.builtin import LANDMARK_DESIGN_XY_MM
    from lib.render.synthetic import BFM_FRONT_GRID, face_like_mesh

    vertices, faces = (t.double().numpy() for t in face_like_mesh(grid))
    if grid == BFM_FRONT_GRID:
        keep = BFM_FRONT_VERTICES
        vertices = vertices[:keep]
        faces = faces[(faces < keep).all(axis=1)]
    rng = np.random.default_rng(0)
    v = len(vertices)
    xy = vertices[:, :2] / 100.0  # about -1..1 over the face

    def smooth_basis(modes: int, peak: float) -> np.ndarray:
        """[3V, K]: mode k = a random direction times cos(f_k . xy + phase_k), peak `peak`."""
        frequency = rng.normal(0, 2.0, (2, modes))
        phase = rng.uniform(0, 2 * np.pi, modes)
        direction = rng.normal(size=(3, modes))
        direction /= np.linalg.norm(direction, axis=0)
        wave = np.cos(xy @ frequency + phase)  # [V, K]
        return (wave[:, None, :] * direction[None] * peak).reshape(3 * v, modes)

    design = LANDMARK_DESIGN_XY_MM
    landmarks = np.linalg.norm(vertices[None, :, :2] - design[:, None], axis=-1).argmin(axis=1)
    mat = {
        "meanshape": (vertices / 100.0).reshape(1, -1),
        "meantex": np.tile([200.0, 150.0, 125.0], v)[None] + rng.normal(0, 3, (1, 3 * v)),
        "idBase": smooth_basis(MAX_MODES["idBase"], 0.02),  # dm: 2 mm per unit coefficient
        "exBase": smooth_basis(MAX_MODES["exBase"], 0.01),
        "texBase": smooth_basis(MAX_MODES["texBase"], 8.0),
        "tri": (faces + 1).astype(np.float64),
        "keypoints": (landmarks + 1)[None].astype(np.float64),
    }
    return face_model_from_front(mat, "<synthetic BFM-size model>", name="bfm-size synthetic")


def synthetic_samples(face_model, count: int, size: int, views: int = 3, seed: int = 0) -> list[dict]:
    """`count` sample dicts as the datasets return them (data/samples.py): random
    photos, parsing and skin weights, target landmarks = the mean face's under the
    canonical pose plus 2 px noise, 3D landmarks = the mean face's at the points the
    objective's 3D term uses."""
    from lib.facemodel.derived import landmark3d_vertices
    from lib.morphable import FaceCoefficients, MorphableModel

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        mean = MorphableModel(face_model)(FaceCoefficients.zeros(face_model, 1), (size, size))
    index, _ = landmark3d_vertices(face_model)
    samples = []
    for i in range(count):
        samples.append({
            "rgb": torch.rand(views, 3, size, size, generator=gen),
            "parsing": torch.randint(0, 10, (views, size, size), generator=gen),
            "skin_weight": torch.rand(views, size, size, generator=gen),
            "landmarks": mean.landmarks.expand(views, -1, -1) + 2 * torch.randn(views, 68, 2, generator=gen),
            "view_mask": torch.ones(views, dtype=torch.bool),
            "landmarks3d": mean.shape[0, index],
            "name": f"sample{i}",
        })
    return samples


def batch_on(samples: list[dict], device: torch.device) -> dict:
    """The tensors of `samples` stacked into a batch on `device`."""
    keys = [k for k, value in samples[0].items() if torch.is_tensor(value)]
    return {k: torch.stack([s[k] for s in samples]).to(device) for k in keys}


def paper_config(sizes: Sizes, overrides: tuple = ()):
    """configs/pixel_face.yaml (GPU) or configs/tiny.yaml (smoke) with `overrides`."""
    from lib.config import load_config

    return load_config(str(ROOT / "configs" / sizes.net_config),
                       ["train.progress=false", "data.num_workers=0", *overrides])


# ----------------------------------------------------------------------- sections


def tests_rows(device: torch.device, smoke: bool) -> list[Row]:
    """`pytest -m cuda` in a child process; counts from its summary line."""

    def run() -> Row:
        # Test modules that cannot be imported there (a package of requirements.txt
        # missing on the GPU machine, e.g. mediapipe) are reported, not fatal: none of
        # them holds a CUDA test, and `passed == 0` below catches one that would.
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider",
                               "--continue-on-collection-errors"], cwd=ROOT, capture_output=True, text=True)
        counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)", done.stdout)}
        result = ", ".join(f"{counts.get(k, 0)} {k}" for k in ("passed", "failed", "skipped"))
        unimportable = counts.get("error", 0) + counts.get("errors", 0)
        if unimportable:
            result += f", {unimportable} test modules not importable here"
        if counts.get("failed", 0) or done.returncode not in (0, 1, 5):  # 1 with collection errors, 5: none ran
            tail = [line for line in done.stdout.splitlines() if line.startswith("FAILED")][:3]
            return Row("tests", "pytest -m cuda", result + ("; " + "; ".join(tail) if tail else ""), status="FAIL")
        if device.type == "cuda" and counts.get("passed", 0) == 0:
            return Row("tests", "pytest -m cuda", result + " (none ran on the GPU)", status="FAIL")
        return Row("tests", "pytest -m cuda", result)

    return [guarded("tests", "pytest -m cuda", run)]


def raster_rows(device: torch.device, sizes: Sizes) -> list[Row]:
    """Forward and forward + backward ms per view of the torch rasterizer path."""
    from lib.geometry import euler_to_matrix, rigid_transform
    from lib.render import render_mesh
    from lib.render.synthetic import face_like_mesh

    vertices, faces = face_like_mesh(sizes.raster_grid)
    image = (sizes.raster_image, sizes.raster_image)
    rows = []
    for batch in sizes.raster_batches:
        name = f"rasterizer torch, batch {batch}, {vertices.shape[0]} v, {image[0]} px"

        def run(batch=batch, name=name) -> Row:
            yaw = torch.deg2rad(torch.linspace(-35.0, 35.0, batch))
            angles = torch.stack([torch.zeros(batch), yaw, torch.zeros(batch)], -1)
            posed = rigid_transform(vertices.expand(batch, -1, -1), euler_to_matrix(angles), torch.zeros(batch, 3))
            posed, f = posed.to(device), faces.to(device)
            colors = torch.rand(batch, vertices.shape[0], 3, generator=torch.Generator().manual_seed(0)).to(device)

            def forward():
                with torch.no_grad():
                    render_mesh(posed, f, {"rgb": colors}, image, cull_backfaces=True, backend="torch")

            def both():
                verts, cols = posed.clone().requires_grad_(), colors.clone().requires_grad_()
                out = render_mesh(verts, f, {"rgb": cols}, image, cull_backfaces=True, backend="torch")
                out.images["rgb"].sum().backward()

            fwd, _ = timed(forward, device, sizes)
            total, peak = timed(both, device, sizes)
            fwd_ms, total_ms = 1000 * fwd / batch, 1000 * total / batch
            result = f"fwd {fwd_ms:.3f} ms/view, fwd+bwd {total_ms:.3f} ms/view"
            if device.type == "cuda" and batch == max(sizes.raster_batches):
                met = "met" if total_ms <= TARGET_RASTER_MS else "NOT met: a kernel is due (doc/gpu.md)"
                result += f" (target {TARGET_RASTER_MS} ms: {met})"
            return Row("raster", name, result, peak)

        rows.append(guarded("raster", name, run))
    return rows


def network_variants(cfg, sizes: Sizes) -> list[tuple]:
    """(batch, bf16, channels_last, involution, cudnn.benchmark) of each network row:
    batch x dtype x memory format; then at the first batch in bf16 the involution
    paths, and cuDNN's autotuner."""
    auto = cfg.model.involution
    first = sizes.net_batches[0]
    variants = [(b, amp, cl, auto, False) for b in sizes.net_batches for amp in (False, True) for cl in (False, True)]
    variants += [(first, True, False, inv, False) for inv in ("unfold", "lean")]
    return variants + [(first, True, cl, auto, True) for cl in (False, True)]


def network_rows(device: torch.device, sizes: Sizes) -> list[Row]:
    """Forward + backward of the paper's network, one row per `network_variants`."""
    cfg = paper_config(sizes)
    size = cfg.data.image_size
    rows = []
    for batch, amp, channels_last, involution, autotune in network_variants(cfg, sizes):
        name = (f"network {size} px, batch {batch}, {'bf16' if amp else 'fp32'}, "
                f"{'channels_last' if channels_last else 'NCHW'}, involution {involution}"
                + (", cudnn.benchmark" if autotune else ""))

        def run(batch=batch, amp=amp, channels_last=channels_last, involution=involution, autotune=autotune,
                name=name) -> Row:
            with cudnn_benchmark(autotune):
                seconds, peak = network_step_seconds(cfg, sizes, device, size, batch, amp, channels_last, involution)
            return Row("network", name, f"fwd+bwd {seconds:.3f} s, {batch / seconds:.1f} samples/s", peak)

        rows.append(guarded("network", name, run))
    return rows


@contextlib.contextmanager
def cudnn_benchmark(enabled: bool):
    """torch.backends.cudnn.benchmark set to `enabled` inside the block."""
    saved = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = saved


def network_step_seconds(cfg, sizes: Sizes, device: torch.device, size: int, batch: int, amp: bool,
                          channels_last: bool, involution: str) -> tuple[float, float | None]:
    """`timed` forward + backward of a fresh network (loss: the coefficients' squares)."""
    from bench.model import BFM09_SIZES
    from models.mvrnet import MVRNet

    torch.manual_seed(0)
    model = MVRNet(dataclasses.replace(cfg.model, involution=involution), BFM09_SIZES, size).to(device).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    gen = torch.Generator().manual_seed(0)
    rgb = torch.rand(batch, 3, 3, size, size, generator=gen).to(device)
    parsing = torch.randint(0, 10, (batch, 3, size, size), generator=gen).to(device)

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            coeffs = model(rgb, parsing)
            loss = sum(t.float().square().mean() for t in coeffs.as_dict().values())
        model.zero_grad(set_to_none=True)
        loss.backward()

    return timed(step, device, sizes)


def _objective(trainer, batch: dict, amp: bool):
    """The training objective as `Trainer` evaluates it (network under autocast,
    coefficients in float32, then `multiview_losses`, the one objective),
    with bf16 autocast on or off on the batch's device (CPU too, unlike training).
    Returns the LossResult."""
    from lib.losses import multiview_losses

    with torch.autocast(batch["rgb"].device.type, dtype=torch.bfloat16, enabled=amp):
        coeffs = trainer.model(batch["rgb"], batch["parsing"], batch["view_mask"])
    coeffs = coeffs.map(lambda t: t.float())
    return multiview_losses(trainer.morphable, coeffs, batch, trainer.cfg.loss, trainer.cfg.render, True)


def objective_rows(device: torch.device, sizes: Sizes) -> list[Row]:
    """Face model + renderer + losses alone, whole training steps, bf16 vs fp32."""
    from lib.losses import multiview_losses
    from lib.losses.total import TERM_WEIGHTS
    from lib.training import Trainer
    from models.checkpoint import build_model, load_checkpoint, save_checkpoint

    face_model = bfm_size_face_model(sizes.face_grid)
    described = f"{face_model.num_vertices} v / {len(face_model.faces)} tris"
    largest = max(sizes.step_batches)
    cfg0 = paper_config(sizes)
    samples = synthetic_samples(face_model, largest, cfg0.data.image_size)
    rows = []
    out = tempfile.TemporaryDirectory(prefix="gpu_check_")
    trainers: dict = {}

    def trainer_for(batch: int, amp: bool):
        if (batch, amp) not in trainers:
            trainers.clear()  # one network on the GPU at a time
            if device.type == "cuda":
                torch.cuda.empty_cache()
            cfg = paper_config(sizes, (f"train.batch_size={batch}", f"train.amp={str(amp).lower()}"))
            torch.manual_seed(0)
            model = build_model(cfg, face_model)
            trainers[(batch, amp)] = Trainer(model, face_model, samples[:batch], None, cfg, out.name,
                                             save_checkpoint, load_checkpoint, device=device)
        return trainers[(batch, amp)]

    # Face model, renderer and every loss, forward + backward, from fixed coefficients.
    batch0 = sizes.step_batches[0]
    name = f"face model + renderer + losses, batch {batch0} x 3 views, {described}"

    def objective_alone() -> Row:
        trainer = trainer_for(batch0, True)
        batch = batch_on(samples[:batch0], device)
        with torch.no_grad():
            coeffs = trainer.model(batch["rgb"], batch["parsing"], batch["view_mask"])
        leaf = coeffs.map(lambda t: t.float().requires_grad_())

        def step():
            result = multiview_losses(trainer.morphable, leaf, batch, trainer.cfg.loss, trainer.cfg.render, True)
            result.total.backward()

        seconds, peak = timed(step, device, sizes)
        return Row("objective", name, f"fwd+bwd {1000 * seconds:.1f} ms ({1000 * seconds / (3 * batch0):.2f} ms/view)",
                   peak)

    rows.append(guarded("objective", name, objective_alone))

    def step_row(batch: int, amp: bool, name: str) -> Row:
        trainer = trainer_for(batch, amp)
        data = batch_on(samples[:batch], device)
        skipped = []

        def step():
            if trainer._train_step(data, use_parsing=True) is None:
                skipped.append(1)

        seconds, peak = timed(step, device, sizes)
        dtype = str(trainer.amp_dtype).replace("torch.", "") if trainer.amp_dtype else "fp32"
        result = f"{dtype}: {seconds:.3f} s/step, {batch / seconds:.1f} three-view samples/s"
        status = "ok"
        if skipped:
            result, status = result + f"; {len(skipped)} steps skipped as non-finite", "FAIL"
        elif device.type == "cuda" and amp and batch == largest:
            met = "met" if batch / seconds >= TARGET_SAMPLES_PER_S else "NOT met (doc/gpu.md)"
            result += f" (target {TARGET_SAMPLES_PER_S:.0f}: {met})"
        return Row("objective", name, result, peak, status)

    def agreement(name: str, check_gradient: bool) -> Row:
        trainer = trainer_for(batch0, True)
        batch = batch_on(samples[:batch0], device)
        net = trainer.net
        results, grads = {}, {}
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        for amp in (False, True):
            torch.manual_seed(0)
            net.zero_grad(set_to_none=True)
            result = _objective(trainer, batch, amp)
            result.total.backward()
            results[amp] = result
            grads[amp] = torch.cat([p.grad.reshape(-1).float() for p in net.parameters() if p.grad is not None])
        net.zero_grad(set_to_none=True)
        peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
        reference, low = results[False].terms, results[True].terms
        total = reference["total"].item()
        rel_total = abs(low["total"].item() - total) / max(abs(total), 1e-12)
        # Each term's change weighted as in the total, relative to the total: a tiny
        # regulariser's large relative change does not matter, a large term's does.
        weight = lambda k: getattr(trainer.cfg.loss, TERM_WEIGHTS[k])  # noqa: E731
        change = {k: weight(k) * abs(low[k].item() - reference[k].item()) / max(abs(total), 1e-12)
                  for k in reference if k != "total"}
        worst = max(change, key=change.get)
        cosine = torch.nn.functional.cosine_similarity(grads[False], grads[True], dim=0).item()
        result = (f"total {total:.5g} vs {low['total'].item():.5g} (rel {rel_total:.1e}); largest weighted "
                  f"term change {change[worst]:.1e} of the total ({worst}); gradient cosine {cosine:.4f}")
        ok = rel_total <= AGREEMENT_RTOL and (cosine >= AGREEMENT_MIN_COSINE or not check_gradient)
        return Row("objective", name, result, peak, "ok" if ok else "FAIL")

    # The objective-alone row leaves the weights as initialised: the first agreement
    # row compares there (gradient checked); the second, after the first step row's
    # optimizer steps, reports the gradient cosine only. On the tiny CPU network it is
    # 0.98 at initialisation and about 0 one Adam step later: that network's gradient
    # is then ill-conditioned (1e-3 relative input noise alone gives 0.69 in float32,
    # float64 agrees with float32), so bf16's rounding decorrelates it (doc/gpu.md).
    fresh = f"bf16 vs fp32 objective, batch {batch0}, initial weights"
    stepped = f"bf16 vs fp32 objective, batch {batch0}, after the steps above"
    rows.append(guarded("objective", fresh, lambda: agreement(fresh, check_gradient=True)))
    for index, (batch, amp) in enumerate([(b, True) for b in sizes.step_batches] + [(batch0, False)]):
        name = f"training step, batch {batch}, train.amp={str(amp).lower()} (Trainer step, fused Adam)"
        rows.append(guarded("objective", name, lambda batch=batch, amp=amp, name=name: step_row(batch, amp, name)))
        if index == 0:
            rows.append(guarded("objective", stepped, lambda: agreement(stepped, check_gradient=False)))
    trainers.clear()
    out.cleanup()
    return rows


class _CannedPreprocessor:
    """Stands in for `lib.preprocess.Preprocessor` when filling the data section's
    cache: the same settings (hence the same cache key) and output arrays, a random
    crop instead of detection, alignment and parsing."""

    def __init__(self, crop_size: int, skin_weights):
        from lib.config.schema import PreprocessConfig

        self.cfg, self.crop_size = PreprocessConfig(aligned=True), crop_size
        self.skin_weights = tuple(float(w) for w in skin_weights)
        self.rng = np.random.default_rng(0)

    def __call__(self, image: np.ndarray, path: str):
        from types import SimpleNamespace

        size = self.crop_size
        return SimpleNamespace(
            crop=self.rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
            landmarks=self.rng.uniform(0, size, (68, 2)).astype(np.float32),
            parsing=self.rng.integers(0, 10, (size, size), dtype=np.uint8),
            skin_weight=self.rng.uniform(0, 1, (size, size)).astype(np.float32),
            alignment=SimpleNamespace(matrix=np.eye(2, 3)),
        )


PHOTO_BYTES = 100_000  # a photo file's size (its bytes are hashed once, when the dataset is built)


def data_rows(device: torch.device, sizes: Sizes) -> list[Row]:
    """Samples per second through the Trainer's loader over a filled cache."""
    from data.cache import PreprocessCache
    from data.samples import PreparedViews, ViewGroup
    from lib.training import Trainer
    from models.checkpoint import load_checkpoint, save_checkpoint

    folder = tempfile.TemporaryDirectory(prefix="gpu_check_data_")
    rng = np.random.default_rng(0)
    groups = []
    for i in range(sizes.data_samples):
        paths = []
        for view in range(3):
            path = os.path.join(folder.name, f"s{i}_v{view}.jpg")
            with open(path, "wb") as f:
                f.write(rng.bytes(PHOTO_BYTES))
            paths.append(path)
        groups.append(ViewGroup(f"s{i}", tuple(paths)))
    batch = max(sizes.step_batches)
    cfg = paper_config(sizes, (f"train.batch_size={batch}",))
    cache = PreprocessCache(os.path.join(folder.name, "cache"), _CannedPreprocessor(cfg.data.image_size, cfg.loss.skin_weights),
                            loader=lambda path: np.zeros((8, 8, 3), np.uint8))
    dataset = PreparedViews(groups, cache, progress=False)  # fills the cache, as at the start of training
    face_model = bfm_size_face_model(SMOKE_SIZES.face_grid)  # the loader does not depend on it
    rows = []
    for workers in sizes.data_workers:
        name = f"data: Trainer loader, {len(dataset)} samples, batch {batch}, {workers} workers, to {device.type}"

        def run(workers=workers) -> Row:
            run_cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, num_workers=workers))
            trainer = Trainer(torch.nn.Linear(1, 1), face_model, dataset, None, run_cfg, folder.name,
                              save_checkpoint, load_checkpoint, device=device)
            trainer.sampler.set_epoch(0)
            start = time.perf_counter()
            first, count = None, 0
            for cpu_batch in trainer.train_loader:
                moved = [v.to(device, non_blocking=True) for v in cpu_batch.values() if torch.is_tensor(v)]
                sync(device)
                count += moved[0].shape[0]
                first = first if first is not None else time.perf_counter()
            end = time.perf_counter()
            steady = (count - batch) / (end - first) if count > batch and end > first else float("nan")
            return Row("data", name, f"{steady:.0f} samples/s after the first batch ({1000 * (first - start):.0f} ms: "
                                     f"worker start); {count / (end - start):.0f} samples/s over the epoch")

        rows.append(guarded("data", name, run))
    folder.cleanup()
    return rows


def ddp_rows(device: torch.device, smoke: bool) -> list[Row]:
    """torchrun --nproc_per_node=1 train.py on configs/tiny.yaml, one epoch."""
    name = "torchrun --nproc_per_node=1 train.py (tiny, 1 epoch, sync_bn)"

    def run() -> Row:
        with tempfile.TemporaryDirectory(prefix="gpu_check_ddp_") as out:
            command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
                       str(ROOT / "train.py"), "--config", str(ROOT / "configs" / "tiny.yaml"), "--out", out,
                       f"train.device={device.type}", "train.epochs=1", "train.sync_bn=true", "train.progress=false",
                       "train.log_images_every=0"]
            start = time.perf_counter()
            done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
            seconds = time.perf_counter() - start
            text = done.stdout + done.stderr
            group = re.search(r"DDP over (\S+)", text)
            checkpoint = os.path.isfile(os.path.join(out, "checkpoints", "last.pt"))
        expected = "nccl" if device.type == "cuda" else "gloo"
        ok = done.returncode == 0 and checkpoint and group is not None and expected in group.group(1)
        result = (f"exit {done.returncode}, {group.group(0) if group else 'no process group'}, "
                  f"checkpoint {'written' if checkpoint else 'missing'}, {seconds:.0f} s")
        if not ok:
            last = [line for line in text.strip().splitlines() if line.strip()][-1:] or [""]
            result += f"; {last[0][:100]}"
        return Row("ddp", name, result, status="ok" if ok else "FAIL")

    return [guarded("ddp", name, run)]


def section_rows(section: str, device: torch.device, smoke: bool) -> list[Row]:
    """The rows of one section, computed in this process."""
    sizes = SMOKE_SIZES if smoke else GPU_SIZES
    if section == "tests":
        return tests_rows(device, smoke)
    if section == "raster":
        return raster_rows(device, sizes)
    if section == "network":
        return network_rows(device, sizes)
    if section == "objective":
        return objective_rows(device, sizes)
    if section == "data":
        return data_rows(device, sizes)
    if section == "ddp":
        return ddp_rows(device, smoke)
    raise ValueError(f"unknown section {section!r}; one of {', '.join(SECTIONS)}")


def section_in_child(section: str, smoke: bool) -> list[Row]:
    """section_rows in a child process under its time limit; rows it finished are
    kept, and a crash or a timeout becomes one error row with its last words."""
    limit = SMOKE_LIMIT_S if smoke else SECTION_LIMIT_S[section]
    command = [sys.executable, str(Path(__file__).resolve()), "--child", section] + (["--cpu-smoke"] if smoke else [])
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=limit)
        stdout, stderr, failure = done.stdout, done.stderr, None if done.returncode == 0 else f"exit {done.returncode}"
    except subprocess.TimeoutExpired as err:
        decode = lambda b: b.decode(errors="replace") if isinstance(b, bytes) else (b or "")  # noqa: E731
        stdout, stderr, failure = decode(err.stdout), decode(err.stderr), f"timed out after {limit} s"
    rows = [Row(**json.loads(line[len(ROW_PREFIX):])) for line in stdout.splitlines() if line.startswith(ROW_PREFIX)]
    if failure:
        last = [line for line in stderr.strip().splitlines() if line.strip()][-1:] or [""]
        rows.append(Row(section, "(section process)", f"{failure}: {last[0][:140]}", status="error"))
    return rows


def format_table(rows: list[Row]) -> str:
    """The check's table: section, row, result, peak GPU MiB, status."""
    head = ("section", "row", "result", "peak MiB", "status")
    cells = [(r.section, r.name, r.result, "-" if r.peak_mib is None else f"{r.peak_mib:.0f}", r.status) for r in rows]
    widths = [max(len(head[i]), *(len(c[i]) for c in cells)) if cells else len(head[i]) for i in range(5)]
    line = lambda c: " | ".join(str(v).ljust(w) for v, w in zip(c, widths)).rstrip()  # noqa: E731
    return "\n".join([line(head), "-+-".join("-" * w for w in widths), *map(line, cells)])


def markdown_table(rows: list[Row]) -> str:
    """The table as Markdown (for doc/gpu.md)."""
    lines = ["| section | row | result | peak MiB | status |", "| --- | --- | --- | --- | --- |"]
    for r in rows:
        peak = "-" if r.peak_mib is None else f"{r.peak_mib:.0f}"
        lines.append(f"| {r.section} | {r.name} | {r.result.replace('|', '/')} | {peak} | {r.status} |")
    return "\n".join(lines)


def run_check(sections: tuple, smoke: bool, isolate: bool = True) -> list[Row]:
    """The rows of `sections`: "no CUDA" rows without a GPU (unless smoke); each
    section in a child process when `isolate`."""
    device = torch.device("cuda" if torch.cuda.is_available() and not smoke else "cpu")
    rows = []
    for section in sections:
        if device.type != "cuda" and not smoke:
            rows.append(Row(section, "(every row)", "run on a GPU, or with --cpu-smoke here", status="no CUDA"))
            continue
        rows.extend(section_in_child(section, smoke) if isolate else section_rows(section, device, smoke))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny versions of every row on the CPU")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--markdown", metavar="FILE", help="also write the machine line and table as Markdown")
    parser.add_argument("--child", choices=SECTIONS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu_smoke else "cpu")
        for row in section_rows(args.child, device, args.cpu_smoke):
            print(ROW_PREFIX + json.dumps(dataclasses.asdict(row)), flush=True)
        return 0
    started = time.perf_counter()
    header = f"machine: {machine()}"
    mode = "CPU smoke run (tiny sizes; not GPU numbers)" if args.cpu_smoke else "GPU check"
    print(f"{header}\n{mode}; sections: {', '.join(args.sections)}", flush=True)
    rows = run_check(tuple(args.sections), args.cpu_smoke)
    print(format_table(rows))
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(f"{header}\n\n{mode}\n\n{markdown_table(rows)}\n")
    bad = [r for r in rows if r.status in ("FAIL", "error")]
    print(f"{len(rows)} rows, {len(bad)} failed or errors, {time.perf_counter() - started:.0f} s")
    return 1 if bad else 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
