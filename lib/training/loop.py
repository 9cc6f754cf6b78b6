"""The training loop: data order, schedule, AMP, NaN guard, validation, logging,
checkpoints and automatic resume. It receives the network and the checkpoint
functions from the entry point, so lib never imports models/ or data/.

Nothing is lost to a kill -9 at any moment (tests/test_reliability.py): checkpoints and
metrics.jsonl are replaced atomically, a mid-epoch last.pt carries the running sums
of the epoch's loss terms (a resumed epoch logs the mean over all its steps), and a
torn or unreadable metrics line is dropped with a warning instead of failing resume.

Files (rank 0 only) under `out_dir`: checkpoints/last.pt (every epoch and every
`train.last_every_minutes` mid-epoch), checkpoints/epoch_XXXX.pt (every
`train.save_every` epochs), metrics.jsonl (one line per epoch), train.log,
tensorboard/ (scalars and image grids), vis/ (the validation grids as PNG), curves.png
(loss and validation error per epoch).
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import time
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from lib.config.schema import Config, TrainConfig
from lib.errors import UserError
from lib.facemodel.schema import FaceModel
from lib.losses import multiview_losses
from lib.morphable import FaceCoefficients, MorphableModel
from lib.training.logger import RunLogger
from lib.training.distributed import DistInfo, all_reduce_sum, barrier, convert_sync_batchnorm
from lib.training.sampler import ShardedEpochSampler
from lib.training.schedule import learning_rate, set_learning_rate
from lib.training.validation import Validator, validation_summary
from lib.visualize.grid import overlay_grid

BATCH_KEYS = ("rgb", "parsing", "skin_weight", "landmarks", "view_mask", "landmarks3d", "gt_shape")
LIST_KEYS = ("name", "mesh_path")


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (all devices) for a reproducible run."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _to_device(batch: dict, device: torch.device) -> dict:
    return {k: batch[k].to(device, non_blocking=True) for k in BATCH_KEYS if k in batch}


def _collate(samples: list[dict]) -> dict:
    """Stack the tensor fields the loop uses; names and mesh paths (Pixel-Face
    validation scans) as lists; other fields are dropped."""
    keys = [k for k in BATCH_KEYS if k in samples[0] and samples[0][k] is not None]
    batch = {k: torch.stack([s[k] for s in samples]) for k in keys}
    batch.update({k: [s[k] for s in samples] for k in LIST_KEYS if k in samples[0]})
    return batch


def check_batch_split(tc: TrainConfig, world_size: int) -> None:
    """UserError unless the global train.batch_size splits into equal per-process
    batches that BatchNorm can use (at least 2 samples, or synchronised BatchNorm)."""
    if tc.batch_size % world_size:
        raise UserError(
            f"train.batch_size={tc.batch_size} must be divisible by the {world_size} processes (it is the global batch)"
        )
    per_rank = tc.batch_size // world_size
    if per_rank < 2 and not (tc.sync_bn and world_size > 1):
        raise UserError(
            f"train.batch_size={tc.batch_size} leaves {per_rank} sample per process ({world_size} processes): "
            "BatchNorm needs at least 2; raise the batch size or set train.sync_bn=true"
        )


class Trainer:
    """Trains `model` (rgb, parsing, view_mask -> FaceCoefficients) on the datasets.

    save_checkpoint(path, state) must write atomically; load_checkpoint(path) must load
    without executing code (models.checkpoint provides both).
    """

    def __init__(
        self,
        model: nn.Module,
        face_model: FaceModel,
        train_set: Dataset,
        val_set: Dataset | None,
        cfg: Config,
        out_dir: str,
        save_checkpoint: Callable[[str, dict], None],
        load_checkpoint: Callable[[str], dict],
        info: DistInfo = DistInfo(),
        device: torch.device = torch.device("cpu"),
    ):
        tc = cfg.train
        check_batch_split(tc, info.world_size)
        self.cfg, self.tc, self.info, self.device, self.out_dir = cfg, tc, info, device, out_dir
        self.save_fn, self.load_fn = save_checkpoint, load_checkpoint
        self.ckpt_dir = os.path.join(out_dir, "checkpoints")
        self.morphable = MorphableModel(face_model).to(device)
        model = model.to(device)
        if tc.sync_bn and info.enabled:
            model = convert_sync_batchnorm(model, device)
        self.net = model
        if info.enabled:
            ids = [device.index] if device.type == "cuda" else None
            self.model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        else:
            self.model = model
        # fused: one kernel for all parameters instead of ~10 small ops per tensor
        # (about 7 ms of a 190 ms step of the embedded preset on one core).
        self.optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=tc.lr, fused=True)
        self.amp_dtype = None
        if device.type == "cuda" and tc.amp:
            self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        per_rank = tc.batch_size // info.world_size
        if len(train_set) < tc.batch_size:
            raise UserError(
                f"train.batch_size={tc.batch_size} is larger than the {len(train_set)} training samples; "
                "lower it or add samples"
            )
        self.sampler = ShardedEpochSampler(len(train_set), info.rank, info.world_size, tc.seed)
        self.train_loader = DataLoader(
            train_set, batch_size=per_rank, sampler=self.sampler, num_workers=cfg.data.num_workers,
            collate_fn=_collate, pin_memory=device.type == "cuda",
            drop_last=True,  # a last batch of one sample would break BatchNorm
        )
        self.val_loader = None
        if val_set is not None and len(val_set):
            self.val_indices = list(range(info.rank, len(val_set), info.world_size))
            shard = Subset(val_set, self.val_indices)
            self.val_loader = DataLoader(shard, batch_size=per_rank, collate_fn=_collate, num_workers=cfg.data.num_workers)
        self.epoch, self.step, self.nan_streak = 0, 0, 0
        # Sums of the running epoch's loss terms over this rank's finished steps (rank 0:
        # plus the sums restored from a mid-epoch checkpoint, which are global) and their count.
        self.epoch_sums: dict[str, float] = {}
        self.epoch_count = 0
        self.history: list[dict] = []
        self.logger = RunLogger(out_dir, info.is_main)
        self.validator = Validator(self.morphable, cfg)

    # ----------------------------------------------------------------- checkpoints
    def _state(self) -> dict:
        state = {
            "model": self.net.state_dict(),
            "config": dataclasses.asdict(self.cfg),
            "epoch": self.epoch,
            "step": self.step,
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": {"torch": torch.get_rng_state()},
            "metrics": self.history[-1] if self.history else {},
            "nan_streak": self.nan_streak,
            "epoch_sums": self._global_epoch_sums(),
        }
        if torch.cuda.is_available():
            state["rng"]["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def save(self, name: str = "last.pt") -> None:
        """Every rank calls it (the running sums are gathered); rank 0 writes."""
        state = self._state()
        if self.info.is_main:
            self.save_fn(os.path.join(self.ckpt_dir, name), state)

    def _global_epoch_sums(self) -> dict:
        """{'count': steps, term: sum} of the running epoch over all ranks (collective)."""
        names = sorted(self.epoch_sums)
        local = [self.epoch_sums[k] for k in names] + [float(self.epoch_count)]
        packed = all_reduce_sum(torch.tensor(local, dtype=torch.float64), self.info).tolist()
        return {"count": packed[-1], **dict(zip(names, packed[:-1]))}

    def try_resume(self) -> bool:
        """Restore from checkpoints/last.pt when it exists; True if it did."""
        path = os.path.join(self.ckpt_dir, "last.pt")
        if not os.path.isfile(path):
            return False
        state = self.load_fn(path)
        try:
            self.net.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (KeyError, RuntimeError, ValueError) as err:
            # torch's first line only names the class; the next one says what differs.
            lines = [line.strip() for line in str(err).splitlines() if line.strip()] or [type(err).__name__]
            detail = lines[1] if len(lines) > 1 else lines[0]
            detail = detail if len(detail) <= 200 else detail[:200] + "..."
            raise UserError(f"{path}: not a checkpoint of this network ({detail}); give another --out") from None
        if "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.step = int(state["epoch"]), int(state.get("step", 0))
        self.nan_streak = int(state.get("nan_streak", 0))
        # The sums are global: rank 0 carries them on, the others start from zero.
        sums = dict(state.get("epoch_sums") or {}) if self.info.is_main and self.step > 0 else {}
        self.epoch_count = int(sums.pop("count", 0))
        self.epoch_sums = {k: float(v) for k, v in sums.items()}
        rng = state.get("rng") or {}
        if "torch" in rng:
            torch.set_rng_state(rng["torch"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.history = [h for h in self.logger.read_history() if h["epoch"] <= self.epoch]
        return True

    def log(self, text: str) -> None:
        """One line to the console and train.log (rank 0)."""
        self.logger.line(text)

    def _record(self, metrics: dict) -> None:
        self.history.append(metrics)
        self.logger.epoch(self.history)

    # -------------------------------------------------------------------- training
    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=self.amp_dtype)

    def _forward(self, batch: dict) -> FaceCoefficients:
        with self._autocast():
            coeffs = self.model(batch["rgb"], batch["parsing"], batch["view_mask"])
        return coeffs.map(lambda t: t.float())

    def _all_finite(self, value: torch.Tensor) -> bool:
        """True when `value` is finite on every rank (all ranks must agree to skip).
        One host synchronisation (the final read), which on a GPU stalls the queue."""
        bad = (~torch.isfinite(value).all()).to(torch.float32).reshape(1)
        return all_reduce_sum(bad, self.info).item() == 0

    def _train_step(self, batch: dict, use_parsing: bool) -> dict | None:
        """One optimisation step; None when it was skipped for a non-finite value."""
        coeffs = self._forward(batch)
        result = multiview_losses(self.morphable, coeffs, batch, self.cfg.loss, self.cfg.render, use_parsing)
        self.optimizer.zero_grad(set_to_none=True)
        if not self._all_finite(result.total):
            return None
        self.scaler.scale(result.total).backward()
        self.scaler.unscale_(self.optimizer)
        params = [p for p in self.net.parameters() if p.grad is not None]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, float("inf")) if params else torch.zeros(())
        if not self._all_finite(grad_norm):
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.update()
            return None
        self.scaler.step(self.optimizer)
        self.scaler.update()
        # A finite gradient can still take a huge step (train.lr far too high) whose
        # weights overflow: stop here with the guard's message, before the next step's
        # forward pass fails somewhere less clear.
        weights = torch.nn.utils.get_total_norm([p.detach() for p in params], float("inf"))
        if not self._all_finite(weights):
            raise UserError(
                f"training stopped: the weights became non-finite after step {self.step + 1} of epoch "
                f"{self.epoch + 1} (train.lr={self.tc.lr}); the last good state is in "
                f"{os.path.join(self.ckpt_dir, 'last.pt')}; lower train.lr"
            )
        names = list(result.terms)  # read together: one host synchronisation, not one per term
        return dict(zip(names, torch.stack([result.terms[k] for k in names]).tolist()))

    def _note_skip(self, epoch: int, index: int) -> None:
        self.nan_streak += 1
        self.log(f"warning: non-finite loss or gradient at epoch {epoch + 1} step {index + 1}; step skipped "
                 f"({self.nan_streak} in a row)")
        if self.nan_streak >= self.tc.nan_patience:
            raise UserError(
                f"training stopped: {self.nan_streak} non-finite steps in a row (train.nan_patience="
                f"{self.tc.nan_patience}) at epoch {epoch + 1}; the last good state is in "
                f"{os.path.join(self.ckpt_dir, 'last.pt')}; lower train.lr or check the data"
            )

    def _steps_per_epoch(self) -> int:
        """Batches in a whole epoch of this rank (drop_last)."""
        return len(self.sampler.shard()) // self.train_loader.batch_size

    def _run_epoch(self, epoch: int, bar: tqdm) -> dict:
        self.model.train()
        steps = max(self._steps_per_epoch(), 1)  # the whole epoch's, also when resuming mid-epoch
        use_parsing = epoch >= self.tc.mask_epoch
        self.sampler.set_epoch(epoch, skip=self.step * self.train_loader.batch_size)
        if hasattr(self.train_loader.dataset, "set_epoch"):  # datasets drawing new samples per epoch
            self.train_loader.dataset.set_epoch(epoch)
        if self.step == 0:
            self.epoch_sums, self.epoch_count = {}, 0
        last_save = time.monotonic()
        for batch in self.train_loader:
            lr = learning_rate(epoch + self.step / steps, self.tc.lr, self.tc.step_epoch, self.tc.epochs)
            set_learning_rate(self.optimizer, lr)
            terms = self._train_step(_to_device(batch, self.device), use_parsing)
            if terms is None:
                self._note_skip(epoch, self.step)
            else:
                self.nan_streak = 0
                for k, v in terms.items():
                    self.epoch_sums[k] = self.epoch_sums.get(k, 0.0) + v
                self.epoch_count += 1
                bar.set_postfix(epoch=epoch + 1, loss=f"{terms['total']:.4g}")
            self.step += 1
            bar.update(1)
            minutes = self.tc.last_every_minutes
            due = minutes > 0 and time.monotonic() - last_save > 60 * minutes
            if self.info.enabled:  # rank 0's clock decides: saving gathers the sums from every rank
                due = all_reduce_sum(torch.tensor([float(due and self.info.is_main)]), self.info).item() > 0
            if due:
                self.save()
                last_save = time.monotonic()
        # Mean over every rank's steps of the whole epoch; ranks carry the same term names.
        totals = self._global_epoch_sums()
        total_steps = max(totals.pop("count"), 1.0)
        return {f"train/{k}": v / total_steps for k, v in totals.items()}

    @torch.no_grad()
    def validate(self, epoch: int, images: bool) -> dict:
        """Metrics over the whole validation set, all ranks (`Validator.metrics`).
        Writes the image grid of the first batch when `images`."""
        self.model.eval()
        sums = self.validator.new_sums()
        position = 0
        for i, cpu_batch in enumerate(self.val_loader):
            batch = _to_device(cpu_batch, self.device)
            coeffs = self._forward(batch)
            b = batch["rgb"].shape[0]
            indices = self.val_indices[position : position + b]
            position += b
            result = self.validator.batch(sums, batch, cpu_batch, coeffs, indices)
            if i == 0 and images and self.info.is_main:
                self._log_images(epoch, batch, result)
        names = sorted(sums)
        packed = all_reduce_sum(torch.tensor([sums[k] for k in names], dtype=torch.float64), self.info)
        return self.validator.metrics(dict(zip(names, packed.tolist())))

    def _log_images(self, epoch: int, batch: dict, result) -> None:
        views = batch["rgb"].shape[1]
        rows = min(views * 2, result.images.shape[0])
        inputs = batch["rgb"].reshape(-1, *batch["rgb"].shape[2:]).permute(0, 2, 3, 1)[:rows].float().cpu()
        target_lm = batch["landmarks"].reshape(-1, 68, 2)[:rows].cpu()
        self.logger.grid(epoch, overlay_grid(inputs, result.images[:rows].cpu(), result.coverage[:rows].cpu(),
                                             result.instance.landmarks[:rows].cpu(), target_lm))

    def fit(self) -> list[dict]:
        """Train to cfg.train.epochs, resuming from checkpoints/last.pt if present.
        Returns the per-epoch metrics (also in metrics.jsonl)."""
        tc = self.tc
        if self.info.is_main:
            os.makedirs(self.ckpt_dir, exist_ok=True)
        self.logger.open()
        if self.try_resume():
            self.log(f"resumed from {os.path.join(self.ckpt_dir, 'last.pt')}: epoch {self.epoch}, step {self.step}")
        elif self.val_loader is not None:
            start = self.validate(0, images=False)
            self.log(f"before training: val{validation_summary(start)}")
            self._record({"epoch": 0, **start})
        steps_per_epoch = self._steps_per_epoch()
        bar = tqdm(total=tc.epochs * steps_per_epoch, initial=self.epoch * steps_per_epoch + self.step,
                   desc="train", unit="step", disable=not (tc.progress and self.info.is_main), dynamic_ncols=True)
        try:
            while self.epoch < tc.epochs:
                epoch = self.epoch
                started = time.monotonic()
                metrics = {"epoch": epoch + 1, **self._run_epoch(epoch, bar)}
                metrics["lr"] = self.optimizer.param_groups[0]["lr"]
                last = epoch + 1 == tc.epochs
                if self.val_loader is not None and ((epoch + 1) % tc.val_every == 0 or last):
                    images = tc.log_images_every > 0 and ((epoch + 1) % tc.log_images_every == 0 or last)
                    metrics.update(self.validate(epoch + 1, images))
                metrics["time_s"] = time.monotonic() - started
                self.epoch, self.step = epoch + 1, 0
                self._record(metrics)
                self.save()
                if (epoch + 1) % tc.save_every == 0 or last:
                    self.save(f"epoch_{epoch + 1:04d}.pt")
                self.log(self._summary(metrics))
                self.logger.curves(self.history)
                barrier(self.info)
        finally:
            bar.close()
            self.logger.close()
        return self.history

    def _summary(self, m: dict) -> str:
        text = f"epoch {m['epoch']}/{self.tc.epochs} loss {m.get('train/total', float('nan')):.4g}"
        parts = [f"{k[6:]} {v:.3g}" for k, v in m.items() if k.startswith("train/") and k != "train/total"]
        text += " (" + ", ".join(parts) + ")"
        if any(k.startswith("val/") for k in m):
            text += " | val" + validation_summary(m)
        return text + f" | lr {m['lr']:.2e} | {m['time_s']:.1f} s"
