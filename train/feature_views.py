"""The passes of a split's cached features that training reads: in memory, in a file, or computed
on the fly (train/features.py makes them; each gives ``batches`` and a ``subset`` for a fold).

    for x, y in view.batches(64, shuffle=True, epoch=3): ...
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from .data import Sample
from .loaders import make_loader

if TYPE_CHECKING:
    from .features import FeatureCache

Batch = tuple[torch.Tensor, torch.Tensor]
"""(features, labels): (B, C, h, w) fp16 and (B,) int64."""


class MemoryView:
    """One pass of a split's features, held in memory (``rows``: the rows of ``x`` it is, in order)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, rows: torch.Tensor | None = None) -> None:
        self.x, self.y, self.rows = x, y, rows

    def __len__(self) -> int:
        return len(self.y) if self.rows is None else len(self.rows)

    def subset(self, rows: Sequence[int]) -> MemoryView:
        """The same features, only ``rows`` (positions in this view), sharing the memory."""
        return MemoryView(self.x, self.y, _compose(self.rows, rows))

    def batches(self, size: int, shuffle: bool = False, epoch: int = 0) -> Iterator[Batch]:
        order = torch.randperm(len(self)) if shuffle else None
        for i in range(0, len(self), size):
            if order is None and self.rows is None:
                yield self.x[i : i + size], self.y[i : i + size]
            else:
                idx = order[i : i + size] if order is not None else torch.arange(i, min(i + size, len(self)))
                if self.rows is not None:
                    idx = self.rows[idx]
                yield self.x[idx], self.y[idx]


class DiskView:
    """One pass of a split's features in a file of fp16 rows; only the labels stay in memory."""

    def __init__(self, path: Path, shape: tuple[int, ...], y: torch.Tensor, rows: torch.Tensor | None = None) -> None:
        self.path, self.shape, self.y, self.rows = path, shape, y, rows
        self.row = int(np.prod(shape)) * 2

    def __len__(self) -> int:
        return len(self.y) if self.rows is None else len(self.rows)

    def subset(self, rows: Sequence[int]) -> DiskView:
        """The same file, only ``rows`` (positions in this view)."""
        return DiskView(self.path, self.shape, self.y, _compose(self.rows, rows))

    def batches(self, size: int, shuffle: bool = False, epoch: int = 0) -> Iterator[Batch]:
        order = torch.randperm(len(self)) if shuffle else None
        fd = os.open(self.path, os.O_RDONLY)
        try:
            for i in range(0, len(self), size):
                if order is None and self.rows is None:  # consecutive rows: one read
                    n = min(size, len(self) - i)
                    x = np.empty((n, *self.shape), np.float16)
                    _read(fd, memoryview(x).cast("B"), i * self.row)
                    yield torch.from_numpy(x), self.y[i : i + n]
                else:
                    idx = order[i : i + size] if order is not None else torch.arange(i, min(i + size, len(self)))
                    if self.rows is not None:
                        idx = self.rows[idx]
                    x = np.empty((len(idx), *self.shape), np.float16)
                    for j, row in enumerate(idx.tolist()):
                        _read(fd, memoryview(x[j]).cast("B"), row * self.row)
                    yield torch.from_numpy(x), self.y[idx]
        finally:
            os.close(fd)


def _compose(rows: torch.Tensor | None, subset: Sequence[int]) -> torch.Tensor:
    picked = torch.as_tensor(list(subset), dtype=torch.int64)
    return picked if rows is None else rows[picked]


def _read(fd: int, into: memoryview, offset: int) -> None:
    while len(into):
        n = os.preadv(fd, [into], offset)
        if n <= 0:
            raise OSError(f"feature cache file ends early at byte {offset}")
        into, offset = into[n:], offset + n


@dataclass
class StreamView:
    """One pass of a split computed on the fly: the frozen blocks run on every batch (no cache)."""

    samples: Sequence[Sample]
    transform: Callable
    cache: FeatureCache

    def __len__(self) -> int:
        return len(self.samples)

    def subset(self, rows: Sequence[int]) -> StreamView:
        return StreamView([self.samples[i] for i in rows], self.transform, self.cache)

    def batches(self, size: int, shuffle: bool = False, epoch: int = 0) -> Iterator[Batch]:
        loader = make_loader(
            self.samples,
            self.transform,
            size,
            seed=self.cache.options.seed,
            workers=self.cache.workers,
            shuffle=shuffle,
            epoch=epoch,
        )
        for x, y in loader:
            yield self.cache.run(x).to(self.cache.store, torch.float16), y.to(self.cache.store)


View = MemoryView | DiskView | StreamView
