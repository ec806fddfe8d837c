"""Reproducible, resumable training streams.

Training is counted in iterations, not epochs. The stream of samples is a pure function of the
seed: epoch ``e`` visits the dataset in the order ``randperm(N, seed + e)``, split across
ranks, and the augmentation of a sample is seeded by (seed, epoch, index). So the batch of
iteration ``k`` is the same whether the run started at 0 or resumed at ``k``, whatever the
number of DataLoader workers.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Dataset, Sampler


class TrainStream(Sampler):
    """An endless sequence of ``(epoch, index)`` keys for one rank, starting at a sample offset.

    Args:
        size: number of samples in the dataset.
        seed: the run's seed.
        rank, world_size: this process's share under DistributedDataParallel; epochs are padded
            (by repeating the head of the permutation) to a multiple of ``world_size``, as
            ``DistributedSampler`` does.
        start: number of keys of this rank already consumed (iteration x per-rank batch).
    """

    def __init__(self, size: int, seed: int, rank: int = 0, world_size: int = 1, start: int = 0):
        if size < 1:
            raise ValueError("the training split is empty")
        self.size, self.seed, self.rank, self.world_size, self.start = size, seed, rank, world_size, start
        self.per_rank = -(-size // world_size)

    def _epoch(self, epoch: int) -> list[int]:
        g = torch.Generator().manual_seed(self.seed + epoch)
        order = torch.randperm(self.size, generator=g).tolist()
        order += order[: self.per_rank * self.world_size - self.size]
        return order[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, offset = divmod(self.start, self.per_rank)
        while True:
            for index in self._epoch(epoch)[offset:]:
                yield epoch, index
            epoch, offset = epoch + 1, 0


class SeededDataset(Dataset):
    """Indexed by ``(epoch, index)``; draws each sample's augmentation from its own seed.

    The global torch RNG is forked around the inner ``__getitem__``, so the main process's
    RNG (dropout) is untouched when ``num_workers=0`` and the result does not depend on the
    worker that loads it.
    """

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        epoch, index = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed((self.seed * 1_000_003 + epoch) * 10_000_019 + index)
            return self.dataset[index]
