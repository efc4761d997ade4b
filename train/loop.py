"""The training loop: data, model, optimizer, scheduler, resume, then epochs of train and evaluate.

    flower-train ../shared/data/flowers5 --epochs 10 -o flower.pth
    python -c "from flower_edge.train import TrainConfig, train; train(TrainConfig('synthetic'))"

Its helpers each have a module: one run epoch by epoch (``run.py``), one optimizer step and one
evaluation (``steps.py``), the photos and their splits (``data.py``), the transforms
(``transforms.py``), the frozen blocks' cache (``features.py``), the optimizer and schedule
(``optim.py``), the checkpoint's payload, card and resume (``checkpoint.py``), device and precision
(``device.py``), ranks (``distributed.py``), and what the run reports (``report.py``).
"""

from __future__ import annotations

import os
import time
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from flower_edge.common.errors import CheckpointError
from flower_edge.common.processes import exclusive, remove_stale
from flower_edge.runtime.card import ModelCard

from .backbones import check_weights, get_backbone
from .checkpoint import (
    check_output,
    check_resumable,
    load_checkpoint,
    make_card,
)
from .config import TrainConfig
from .data import DataSource, open_data
from .device import check_workers, resolve_device, seed_everything
from .distributed import Dist, setup, teardown
from .features import SharedFeatures
from .report import Reporter
from .run import Run


@dataclass
class TrainResult:
    checkpoint: Path
    card: ModelCard
    history: list[dict[str, float]]
    best_epoch: int
    seconds: float
    valid_correct: list[bool] | None = None
    """Whether the last epoch's model answered each valid photo right, in the split's order."""


def train(
    config: TrainConfig,
    reporter: Reporter | None = None,
    resume: str | None = None,
    *,
    source: DataSource | None = None,
    shared: SharedFeatures | None = None,
) -> TrainResult:
    """Train a classifier as ``config`` says and write its checkpoint; returns where and how well.

    ``source``: the splits to use instead of opening ``config.data`` (a cross-validation fold);
    ``shared``: where the fold's cached features come from (train/cv.py computes them once)."""
    reporter = reporter or Reporter()
    started = time.perf_counter()
    get_backbone(config.arch)  # an unknown arch fails before any slow work
    check_weights(config.weights)
    check_workers(config.workers)
    check_output(config)
    main_rank = int(os.environ.get("RANK", "0")) == 0  # under torchrun rank 0 alone writes
    with exclusive(config.output, "flower-train") if main_rank else nullcontext():
        for stale in remove_stale(Path(config.output).parent, f".{Path(config.output).name}."):
            reporter.message(f"removed {stale.name}: a checkpoint write that a killed run left unfinished")
        ckpt = load_checkpoint(resume) if resume else None
        if ckpt is not None:
            check_resumable(ckpt["config"], config)
        world = setup(config.device)
        try:
            return _train(config, reporter if world.main else Reporter(), ckpt, resume, world, started, source, shared)
        finally:
            teardown(world)


def _train(
    config: TrainConfig,
    reporter: Reporter,
    ckpt,
    resume: str | None,
    world: Dist,
    started: float,
    source: DataSource | None,
    shared: SharedFeatures | None,
) -> TrainResult:
    seed_everything(config.seed)
    device = resolve_device(config.device)
    if world.enabled and device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
    config, source, card = _data(config, reporter, ckpt, resume, source)
    run = Run(config, reporter, world, device, source, card, ckpt, resume)
    run.batches(shared)
    for epoch in range(run.state.first_epoch, config.epochs + 1):
        run.epoch(epoch)
    run.test()
    if run.cache is not None:
        run.cache.close()  # a spilled cache's files; on an error their finalizer removes them
    return TrainResult(
        Path(config.output),
        run.card,
        run.history,
        run.best_epoch,
        time.perf_counter() - started,
        run.valid.get("correct") if run.state.first_epoch <= config.epochs else None,
    )


def _data(config: TrainConfig, reporter: Reporter, ckpt, resume: str | None, source: DataSource | None):
    """The splits, the config resolved for them (the default depth follows the training set, a
    resumed run keeps its own), and the card they define."""
    source = source or open_data(
        config.data,
        valid_fraction=config.valid_fraction,
        labels_file=Path(config.labels) if config.labels else None,
        task=reporter.task,
        follow_symlinks=config.follow_symlinks,
    )
    reporter.source(source)
    if ckpt is not None and config.finetune_blocks is None:  # the default resumes what it began
        config = replace(config, finetune_blocks=ckpt["config"].finetune_blocks)
    config = config.resolved(len(source.splits["train"]))
    card = make_card(config, source)
    if ckpt is not None and ckpt["card"].class_ids != card.class_ids:
        raise CheckpointError(
            f"{resume}: trained on classes {', '.join(ckpt['card'].class_ids[:5])}..., "
            f"but {config.data} has {', '.join(card.class_ids[:5])}..."
        )
    return config, source, card
