"""A deterministic, resumable, rank-sharded sampler.

The permutation of epoch e depends only on (seed, e), so an interrupted run that
resumes mid-epoch sees exactly the batches it would have seen, and every rank agrees
on the order (each takes every world_size-th index, the list padded to equal length
as DistributedSampler does).
"""
from __future__ import annotations

import torch
from torch.utils.data import Sampler


class ShardedEpochSampler(Sampler):
    def __init__(self, length: int, rank: int, world_size: int, seed: int, shuffle: bool = True):
        self.length, self.rank, self.world_size, self.seed, self.shuffle = length, rank, world_size, seed, shuffle
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Select epoch `epoch`'s order and skip its first `skip` indices of this rank."""
        self.epoch, self.skip = epoch, skip

    def shard(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.length, generator=g).tolist()
        else:
            order = list(range(self.length))
        per_rank = -(-self.length // self.world_size)
        order = (order * self.world_size)[: per_rank * self.world_size]
        return order[self.rank:: self.world_size]

    def __iter__(self):
        return iter(self.shard()[self.skip:])

    def __len__(self) -> int:
        return len(self.shard()) - self.skip
