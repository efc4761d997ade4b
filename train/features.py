"""The feature cache: the frozen start of the backbone, run once per cached view instead of every epoch.

    cache = FeatureCache(model.prefix(start).eval(), card, config, device, workers, reporter)
    train, valid, test = cache.build(train_samples, valid_samples, test_samples)
    for x, y in train[(epoch - 1) % len(train)].batches(64, shuffle=True, epoch=epoch): ...
    for x, y in valid.batches(128): ...
    cache.close()                                            # removes the files of a spilled cache

When the start of the backbone is frozen (``--freeze``, or ``--finetune-blocks N`` short of all),
its output is computed once per cached augmented view and reused across epochs: on a CPU this turns
an hour of fine-tuning into minutes. On a CPU those frozen blocks run through onnxruntime, several
times faster than eager PyTorch there, after a parity check against PyTorch.

Where the views live is chosen by their size against ``--cache-memory`` (default: 3 GB, or half
the memory available when training starts if that is less): in memory; else spilled to fp16 files
on disk, read back row by row with ``pread`` (so the page cache, not the process, holds them); else,
when the disk has no room either, not cached at all (the frozen blocks run on every batch of every
epoch: slower, in bounded memory). Memory then holds a batch and a label per photo, whatever the
count.
"""

from __future__ import annotations

import copy
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from flower_edge.common.processes import remove_stale
from flower_edge.runtime.card import ModelCard

from .config import CacheOptions, TrainConfig
from .data import Sample, default_cache_dir
from .device import autocast_args, to_device
from .feature_views import DiskView, MemoryView, StreamView, View
from .loaders import DECODED_BUDGET, decode_all, make_loader
from .transforms import eval_transform, training_augmentation

if TYPE_CHECKING:
    from .report import Reporter

log = logging.getLogger(__name__)

DEFAULT_BUDGET = 3 << 30
"""Memory the cache and the decoded photos take by default: Flowers102's 6 views (0.75 GB) and photos
(1.7 GB) fit; a larger cache spills to disk, where the page cache still keeps it in memory while
memory is free (reclaimable, and outside the process), at about the speed of the in-memory cache."""
DISK_MARGIN = 1 << 30
"""Free disk space a spilled cache leaves untouched."""
ORT_CHUNK = 4
"""Photos per onnxruntime call of the frozen blocks: 1.5x the speed of 64 at a time and 600 MB less
memory (Lite0's first 14 blocks, 2-core AMD EPYC: 517 img/s at 4, 567 at 2, 456 at 1, 345 at 64)."""
PREFIX = "features-"


def available_memory() -> int:
    """Bytes of memory available to a new allocation now (Linux's MemAvailable; else all of it)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


class FeatureCache:
    """Runs the frozen prefix of the model once over each split and keeps its outputs (fp16)."""

    def __init__(
        self,
        prefix: nn.Module,
        card: ModelCard,
        options: CacheOptions,
        device: torch.device,
        workers: int,
        reporter: Reporter,
    ) -> None:
        self.prefix, self.card, self.options = prefix, card, options
        self.device, self.workers, self.reporter = device, workers, reporter
        self.store = device if device.type == "cuda" else torch.device("cpu")
        self.run = self._engine()
        self.folder = default_cache_dir() / "features"
        self.mode = "memory"
        self._tmp: tempfile.TemporaryDirectory | None = None

    def build(
        self, train: Sequence[Sample], valid: Sequence[Sample], test: Sequence[Sample] | None = None
    ) -> tuple[list[View], View, View | None]:
        """The training views, then valid's and test's.

        The first training view is the plain evaluation preprocessing, the others are augmented: the
        plain view shows the model photos exactly as validation and deployment will, so it never
        learns on zoomed crops alone (flowers5, last 2 blocks: 78.6% with a plain view and mild crops,
        74.4% with heavily augmented views only). Photos are decoded once for all the views when they
        fit in what the budget leaves (at most ``DECODED_BUDGET`` bytes; half the budget when the cache
        spills).
        """
        views = self.options.views
        shape = tuple(self.run(torch.zeros(1, 3, self.card.crop_size, self.card.crop_size)).shape[1:])
        row = int(np.prod(shape)) * 2
        rows = len(train) * views + len(valid) + len(test or ())
        self.mode = self._choose(rows * row, rows)
        # decoded photos share the budget with an in-memory cache; beside a spilled one (a large data
        # set) they get half of it: 10^5 photos then train in under 6 GB (README)
        left = self._budget() - rows * row if self.mode == "memory" else self._budget() // 2
        images = (
            decode_all(train, min(DECODED_BUDGET, left), task=self.reporter.task)
            if views > 1 and self.mode != "stream"
            else None
        )
        plain, augmented = eval_transform(self.card), training_augmentation(self.card, self.options.augmentation)
        transforms = [plain] + [augmented] * (views - 1)
        train_views = [
            self._view(train, t, f"caching frozen features, view {v + 1}/{views}", images, shape)
            for v, t in enumerate(transforms)
        ]
        del images
        valid_view = self._view(valid, plain, "caching frozen features, evaluation", None, shape)
        test_view = self._view(test, plain, "caching frozen features, test", None, shape) if test else None
        return train_views, valid_view, test_view

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def _budget(self) -> int:
        gb = self.options.memory_gb
        return int(gb * (1 << 30)) if gb is not None else min(DEFAULT_BUDGET, available_memory() // 2)

    def _choose(self, need: int, rows: int) -> str:
        """memory, disk or stream, said in one line with the reason."""
        budget, gb = self._budget(), 1 << 30
        size = f"{need / gb:.1f} GB ({rows:,} photo passes)"
        if need <= budget:
            self.reporter.message(f"feature cache: {size} in memory (budget {budget / gb:.1f} GB, --cache-memory)")
            return "memory"
        self.folder.mkdir(parents=True, exist_ok=True)
        remove_stale(self.folder, PREFIX)
        free = shutil.disk_usage(self.folder).free
        if need + DISK_MARGIN <= free:
            self._tmp = tempfile.TemporaryDirectory(prefix=f"{PREFIX}{os.getpid()}-", dir=self.folder)
            self.reporter.message(
                f"feature cache: {size} is over the memory budget of {budget / gb:.1f} GB "
                f"(--cache-memory); spilled to disk in {self._tmp.name}, removed at the end"
            )
            return "disk"
        self.reporter.message(
            f"feature cache: {size} fits neither the memory budget of {budget / gb:.1f} GB "
            f"(--cache-memory) nor {self.folder} ({free / gb:.1f} GB free); not cached: the frozen "
            "blocks run on every batch (slower, bounded memory)"
        )
        return "stream"

    def _view(self, samples, transform, description: str, images, shape) -> View:
        if self.mode == "stream":
            return StreamView(samples, transform, self)
        loader = make_loader(
            samples, transform, self.options.batch_size, seed=self.options.seed, workers=self.workers, images=images
        )
        task = self.reporter.task(description, len(samples))
        xs, ys = [], []
        out = None
        if self.mode == "disk":
            path = Path(self._tmp.name) / f"{len(os.listdir(self._tmp.name))}.f16"  # type: ignore[union-attr]
            out = open(path, "wb")
        try:
            for x, y in loader:
                features = self.run(x).to(self.store, torch.float16)
                if out is not None:
                    out.write(features.cpu().numpy().tobytes())
                else:
                    xs.append(features)
                ys.append(y.to(self.store))
                task.advance(len(y))
        finally:
            if out is not None:
                out.close()
        task.close()
        y_all = torch.cat(ys) if ys else torch.zeros(0, dtype=torch.int64)
        if out is not None:
            return DiskView(path, shape, y_all)
        return MemoryView(torch.cat(xs) if xs else torch.zeros(0, *shape, dtype=torch.float16), y_all)

    def _engine(self) -> Callable[[torch.Tensor], torch.Tensor]:
        engine = self.options.engine
        if engine == "auto":
            engine = "onnxruntime" if self.device.type == "cpu" else "torch"
        if engine == "onnxruntime":
            try:
                return _onnxruntime_prefix(self.prefix, self.card.crop_size)
            except Exception as e:  # export or parity failed: PyTorch still gives the right answer
                log.warning("onnxruntime feature cache unavailable (%s); using PyTorch", e)
                self.reporter.message(f"onnxruntime cache unavailable ({e}); using PyTorch")
        amp = autocast_args(self.device, self.options.amp)

        @torch.no_grad()
        def run(x: torch.Tensor) -> torch.Tensor:
            x = to_device(x, self.device, self.device.type == "cuda")
            with torch.autocast(**amp) if amp else nullcontext():
                return self.prefix(x)

        return run


def _onnxruntime_prefix(prefix: nn.Module, size: int) -> Callable[[torch.Tensor], torch.Tensor]:
    from flower_edge.runtime.session import open_session

    prefix = copy.deepcopy(prefix).cpu().float().eval()
    sample = torch.randn(2, 3, size, size)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = Path(tmp) / "prefix.onnx"
        torch.onnx.export(
            prefix,
            (sample,),
            str(path),
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
            dynamo=False,
        )
        session = open_session(path, threads=min(torch.get_num_threads(), os.cpu_count() or 1))

    def run(x: torch.Tensor) -> torch.Tensor:  # a few photos a call: their activations stay in the CPU's caches
        x = x.float().numpy()
        return torch.from_numpy(
            np.concatenate([session.run(None, {"x": x[i : i + ORT_CHUNK]})[0] for i in range(0, len(x), ORT_CHUNK)])
        )

    with torch.no_grad():
        expected = prefix(sample)
    diff = (run(sample) - expected).abs().max().item()
    if diff > 1e-3:
        raise RuntimeError(f"onnxruntime differs from PyTorch by {diff:.2e}")
    return run


class SharedFeatures:
    """One feature cache over a pool of photos, cut into the splits of every run that asks for them.

    Cross-validation trains K models on K splits of the same photos with the same frozen blocks; the
    first fold runs those blocks over every photo and view once, and each fold then reads its rows
    (train/cv.py). The valid rows come from the plain view, the evaluation preprocessing."""

    def __init__(self, pool: Sequence[Sample]) -> None:
        self.pool = list(pool)
        self.index = {sample.path: i for i, sample in enumerate(self.pool)}
        self.cache: FeatureCache | None = None
        self.train_views: list[View] = []
        self.key: tuple | None = None

    def views(
        self,
        prefix: nn.Module,
        start: int,
        card: ModelCard,
        config: TrainConfig,
        device: torch.device,
        workers: int,
        reporter: Reporter,
        train: Sequence[Sample],
        valid: Sequence[Sample],
    ) -> tuple[list[View], View]:
        key = (start, replace(config, output=""))  # the folds differ in nothing but their checkpoints
        if self.cache is None:
            self.cache, self.key = FeatureCache(prefix, card, config.cache_options(), device, workers, reporter), key
            self.train_views = self.cache.build(self.pool, [])[0]
        elif key != self.key:
            raise ValueError(f"shared features were cached for {self.key}, not {key}")
        return (
            [view.subset(self._rows(train)) for view in self.train_views],
            self.train_views[0].subset(self._rows(valid)),
        )

    def _rows(self, samples: Sequence[Sample]) -> list[int]:
        return [self.index[sample.path] for sample in samples]

    def close(self) -> None:
        if self.cache is not None:
            self.cache.close()
