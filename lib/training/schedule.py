"""The seed's learning-rate schedule: constant, then cosine decay after `step_epoch`.

The seed steps it once per epoch; the training loop evaluates it at every step
(fractional epochs), the same curve sampled finely, so that short runs of a few long
epochs also anneal to the floor instead of spending their last epoch at the lr of its
start (8 epochs, cosine from 4: 0.15 x lr for the whole last epoch)."""
from __future__ import annotations

import math

LR_CLIP = 1e-6  # the seed's floor of the cosine


def learning_rate(epoch: float, base_lr: float, step_epoch: int, total_epochs: int, clip: float = LR_CLIP) -> float:
    """lr at 0-based `epoch` (fractional inside an epoch: epoch + step / steps per
    epoch): base_lr before step_epoch, then
    clip + 0.5 (base_lr - clip) (1 + cos(pi (epoch - step_epoch) / (total_epochs - step_epoch)))."""
    if epoch < step_epoch or total_epochs <= step_epoch:
        return base_lr
    progress = (epoch - step_epoch) / (total_epochs - step_epoch)
    return clip + 0.5 * (base_lr - clip) * (1.0 + math.cos(math.pi * progress))


def set_learning_rate(optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
