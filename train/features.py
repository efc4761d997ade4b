"""The feature cache: the frozen start of the backbone, run once per cached view instead of every epoch.

    cache = FeatureCache(model.prefix(start).eval(), card, config, device, workers, reporter)
    views = cache.train_views(samples, config.cache_views)   # [(features fp16, labels), ...]
    valid = cache.eval_split(valid_samples)                  # batches of (features, labels)

When the start of the backbone is frozen (``--freeze``, or ``--finetune-blocks N`` short of all),
its output is computed once per cached augmented view and reused across epochs: on a CPU this turns
an hour of fine-tuning into minutes. On a CPU those frozen blocks run through onnxruntime, several
times faster than eager PyTorch there, after a parity check against PyTorch.
"""

from __future__ import annotations

import copy
import logging
import os
import tempfile
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import torch
from torch import nn

from flower_edge.runtime.card import ModelCard

from .config import TrainConfig
from .data import DECODED_BUDGET, decode_all, make_loader
from .device import autocast_args, to_device
from .transforms import eval_transform, training_augmentation

if TYPE_CHECKING:
    from .report import Reporter

log = logging.getLogger(__name__)

View = tuple[torch.Tensor, torch.Tensor]
"""(features, labels) of every photo of a split: (N, C, h, w) fp16 and (N,) int64."""


class FeatureCache:
    """Runs the frozen prefix of the model once over each split and keeps its outputs (fp16)."""

    def __init__(self, prefix: nn.Module, card: ModelCard, config: TrainConfig, device: torch.device,
                 workers: int, reporter: "Reporter") -> None:
        self.prefix, self.card, self.config = prefix, card, config
        self.device, self.workers, self.reporter = device, workers, reporter
        self.store = device if device.type == "cuda" else torch.device("cpu")
        self.run = self._engine()

    def _engine(self) -> Callable[[torch.Tensor], torch.Tensor]:
        engine = self.config.cache_engine
        if engine == "auto":
            engine = "onnxruntime" if self.device.type == "cpu" else "torch"
        if engine == "onnxruntime":
            try:
                return _onnxruntime_prefix(self.prefix, self.card.crop_size)
            except Exception as e:  # export or parity failed: PyTorch still gives the right answer
                log.warning("onnxruntime feature cache unavailable (%s); using PyTorch", e)
                self.reporter.message(f"onnxruntime cache unavailable ({e}); using PyTorch")
        amp = autocast_args(self.device, self.config.amp)

        @torch.no_grad()
        def run(x: torch.Tensor) -> torch.Tensor:
            x = to_device(x, self.device, self.device.type == "cuda")
            with torch.autocast(**amp) if amp else nullcontext():
                return self.prefix(x)

        return run

    def _pass(self, samples, transform, description: str, images=None) -> View:
        loader = make_loader(samples, transform, self.config.batch_size, seed=self.config.seed,
                             workers=self.workers, images=images)
        task = self.reporter.task(description, len(samples))
        xs, ys = [], []
        for x, y in loader:
            xs.append(self.run(x).to(self.store, torch.float16))
            ys.append(y.to(self.store))
            task.advance(len(y))
        task.close()
        return torch.cat(xs), torch.cat(ys)

    def train_views(self, samples, views: int) -> list[View]:
        """The first view is the plain evaluation preprocessing, the others are augmented.

        The plain view shows the model photos exactly as validation and deployment will, so it
        never learns on zoomed crops alone (flowers5, last 2 blocks: 78.6% with a plain view and
        mild crops, 74.4% with heavily augmented views only). Photos are decoded once for all the
        views when they fit in ``DECODED_BUDGET`` bytes.
        """
        transforms = [eval_transform(self.card)] + [training_augmentation(self.card, self.config)] * (views - 1)
        images = decode_all(samples, DECODED_BUDGET, task=self.reporter.task) if views > 1 else None
        return [self._pass(samples, t, f"caching frozen features, view {v + 1}/{views}", images)
                for v, t in enumerate(transforms)]

    def eval_split(self, samples) -> list[View]:
        x, y = self._pass(samples, eval_transform(self.card), "caching frozen features, evaluation")
        size = self.config.batch_size * 2
        return [(x[i:i + size], y[i:i + size]) for i in range(0, len(x), size)]


def cached_batches(view: View, batch_size: int) -> Iterator[View]:
    """One epoch over a cached view: its photos' features in a fresh random order."""
    x, y = view
    order = torch.randperm(len(x))
    for i in range(0, len(x), batch_size):
        idx = order[i:i + batch_size]
        yield x[idx], y[idx]


def _onnxruntime_prefix(prefix: nn.Module, size: int) -> Callable[[torch.Tensor], torch.Tensor]:
    from flower_edge.runtime.session import open_session

    prefix = copy.deepcopy(prefix).cpu().float().eval()
    sample = torch.randn(2, 3, size, size)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = Path(tmp) / "prefix.onnx"
        torch.onnx.export(prefix, (sample,), str(path), input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, dynamo=False)
        session = open_session(path, threads=min(torch.get_num_threads(), os.cpu_count() or 1))

    def run(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {"x": x.float().numpy()})[0])

    with torch.no_grad():
        expected = prefix(sample)
    diff = (run(sample) - expected).abs().max().item()
    if diff > 1e-3:
        raise RuntimeError(f"onnxruntime differs from PyTorch by {diff:.2e}")
    return run
