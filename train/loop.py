"""The training loop: data, model, optimizer, scheduler, resume, then epochs of train and evaluate.

    flower-train ../shared/data/flowers5 --epochs 10 -o flower.pth
    python -c "from flower_edge.train import TrainConfig, train; train(TrainConfig('synthetic'))"

Its helpers each have a module: the photos and their splits (``data.py``), the transforms
(``transforms.py``), the frozen blocks' cache (``features.py``), the optimizer and schedule
(``optim.py``), the checkpoint's payload, card and resume (``checkpoint.py``), device and precision
(``device.py``), ranks (``distributed.py``), and what the run reports (``report.py``).
"""

from __future__ import annotations

import copy
import math
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from flower_edge.common.errors import CheckpointError, ConfigError, TrainingDiverged
from flower_edge.common.output import resolved
from flower_edge.common.processes import exclusive, interrupts_deferred, remove_stale
from flower_edge.runtime.card import ModelCard

from .backbones import check_weights, get_backbone
from .checkpoint import (
    check_output,
    check_resumable,
    load_checkpoint,
    make_card,
    resume_state,
    save_checkpoint,
    training_payload,
    with_metrics,
)
from .config import TrainConfig
from .data import DataSource, make_loader, open_data
from .device import autocast_args, check_workers, resolve_device, seed_everything, to_device
from .distributed import Dist, setup, teardown
from .features import FeatureCache, SharedFeatures
from .model import FlowerNet, build_model
from .optim import make_optimizer, make_scheduler
from .report import Reporter, Task
from .transforms import eval_transform, training_augmentation


@dataclass
class TrainResult:
    checkpoint: Path
    card: ModelCard
    history: list[dict[str, float]]
    best_epoch: int
    seconds: float
    valid_correct: list[bool] | None = None
    """Whether the last epoch's model answered each valid photo right, in the split's order."""


def frozen_until(model: FlowerNet, config: TrainConfig) -> int:
    """Index of the first trained block: blocks before it stay frozen (and can be cached)."""
    if config.mode == "freeze":
        return model.num_blocks
    if config.finetune_blocks == 0 or config.finetune_blocks >= model.num_blocks:
        return 0
    return model.num_blocks - config.finetune_blocks


def _what_is_trained(model: FlowerNet, start: int, config: TrainConfig) -> str:
    if start == model.num_blocks:
        return f"training: the head only ({config.arch} frozen)"
    trained = "all blocks" if start == 0 else f"the last {model.num_blocks - start} of {model.num_blocks} blocks"
    return f"training: the head and {trained} of {config.arch}"


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

    # Data: the splits, the card they define, and the depth the run trains at.
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

    # Model: the blocks before `start` stay frozen; channels-last speeds up depthwise convolutions
    # on CPU (1.5x measured here) as on GPU.
    model = build_model(
        config.arch, card.num_classes, config.hidden, config.dropout, weights="none" if ckpt else config.weights
    )
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = config.bn_momentum
    start = frozen_until(model, config)
    reporter.message(_what_is_trained(model, start, config))
    for block in list(model.features)[:start]:
        block.requires_grad_(False)
    model.to(device, memory_format=torch.channels_last)

    # Optimizer, schedule, and where a resumed run stands.
    train_samples = world.shard(source.splits["train"], pad=True)  # every rank as many steps
    optimizer = make_optimizer(model, start, config)
    scheduler = make_scheduler(optimizer, config, math.ceil(len(train_samples) / config.batch_size))
    state = resume_state(ckpt, model, optimizer, scheduler)
    if state.first_epoch > config.epochs:
        raise ConfigError(
            f"--resume: {resume} already finished epoch {state.first_epoch - 1}; "
            f"ask for more with --epochs {state.first_epoch - 1 + config.epochs}"
        )
    if ckpt is not None:
        reporter.message(f"resuming {resume} at epoch {state.first_epoch} of {config.epochs}")
    # The averaged weights are what validation sees and what the checkpoint keeps (--ema).
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema), use_buffers=True) if config.ema else None
    if ema is not None and ckpt is not None and "ema_state" in ckpt["resume"]:
        ema.load_state_dict(ckpt["resume"]["ema_state"])
    amp = autocast_args(device, config.amp)
    scaler = torch.amp.GradScaler("cuda", enabled=amp.get("dtype") == torch.float16)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    workers = (
        config.workers if config.workers is not None else (min(8, os.cpu_count() or 1) if device.type == "cuda" else 0)
    )

    # Batches: the frozen part's output cached once, or photos read each epoch when all is trained.
    # Each rank evaluates its own shard of valid and test; the sums are all-reduced.
    valid_samples = world.shard(source.splits["valid"])
    test_samples = world.shard(source.splits["test"]) if source.splits.get("test") else None
    loader = dict(seed=config.seed, workers=workers)
    cache = None
    if start > 0:
        if shared is not None:
            train_views, valid_view = shared.views(
                model.prefix(start).eval(), start, card, config, device, workers, reporter, train_samples, valid_samples
            )
            test_view = None
        else:
            cache = FeatureCache(model.prefix(start).eval(), card, config, device, workers, reporter)
            train_views, valid_view, test_view = cache.build(train_samples, valid_samples, test_samples)
        valid_batches = _Rebatched(valid_view, config.batch_size * 2)
        test_batches = _Rebatched(test_view, config.batch_size * 2) if test_view is not None else None
    else:
        train_views = None
        valid_batches = make_loader(valid_samples, eval_transform(card), config.batch_size, **loader)
        test_batches = (
            make_loader(test_samples, eval_transform(card), config.batch_size, **loader)
            if test_samples is not None
            else None
        )
    # DistributedDataParallel averages the gradients of the trained part over the ranks.
    trainable = _FromBlock(model, start).to(device)
    if world.enabled:
        trainable = DistributedDataParallel(trainable, device_ids=[device.index] if device.type == "cuda" else None)

    history, best_epoch, best_acc, best_state = state.history, state.best_epoch, state.best_acc, state.best_state
    on_disk = state.first_epoch - 1 if resume and resolved(resume) == resolved(config.output) else None

    def checkpoint(epoch: int) -> None:
        nonlocal on_disk
        if world.main:
            with interrupts_deferred():  # Ctrl-C during the write: after it, and reported truly
                save_checkpoint(
                    config.output,
                    training_payload(
                        model, optimizer, scheduler, config, card, history, epoch, best_epoch, best_state, ema
                    ),
                )
                reporter.saved(config.output, epoch)
        on_disk = epoch
        world.barrier()  # the checkpoint is complete before any rank goes on

    def diverged(epoch: int, what: str) -> TrainingDiverged:
        kept = (
            f"{config.output} holds epoch {on_disk}, the last finite one"
            if on_disk
            else "no checkpoint was written by this run"
        )
        return TrainingDiverged(
            f"epoch {epoch}: {what} is not a finite number, so training stopped; lower --lr "
            f"(it was {config.lr:g}); {kept}"
        )

    for epoch in range(state.first_epoch, config.epochs + 1):
        if train_views is not None:
            batches = train_views[(epoch - 1) % len(train_views)].batches(config.batch_size, shuffle=True, epoch=epoch)
        else:
            batches = make_loader(
                source.splits["train"],
                training_augmentation(card, config),
                config.batch_size,
                shuffle=True,
                epoch=epoch,
                world=world,
                **loader,
            )
        try:
            train_loss, train_acc = train_one_epoch(
                trainable,
                model,
                start,
                batches,
                optimizer,
                scheduler,
                scaler,
                loss_fn,
                amp,
                device,
                reporter.task(f"epoch {epoch}/{config.epochs}", len(train_samples)),
                world,
                ema,
            )
        except TrainingDiverged as e:
            raise diverged(epoch, str(e)) from None
        evaluated = ema.module if ema is not None else model
        world.sync_buffers(model)
        if ema is not None:
            world.sync_buffers(ema.module)  # its averaged statistics came from each rank's own
        valid = evaluate(
            evaluated, start, valid_batches, device, amp, True, reporter.task("validating", len(valid_samples)), world
        )
        if not math.isfinite(valid["loss"]):
            raise diverged(epoch, "the validation loss")
        record = {
            "epoch": epoch,
            "train_loss": train_loss,
            "train_top1": train_acc,
            "valid_loss": valid["loss"],
            "valid_top1": valid["top1"],
            "valid_top5": valid["top5"],
            "lr": optimizer.param_groups[0]["lr"],
        }
        history.append(record)
        if valid["top1"] > best_acc:
            best_acc, best_epoch = valid["top1"], epoch
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in evaluated.state_dict().items()}
        reporter.epoch(record)
        card = with_metrics(card, history, best_epoch)
        checkpoint(epoch)

    if test_batches is not None and best_state is not None:
        latest = copy.deepcopy(model.state_dict())
        model.load_state_dict(best_state)
        test = evaluate(
            model, start, test_batches, device, amp, True, reporter.task("testing", len(test_samples)), world
        )
        model.load_state_dict(latest)
        card = with_metrics(card, history, best_epoch, test)
        checkpoint(history[-1]["epoch"])
    if cache is not None:
        cache.close()  # a spilled cache's files; on an error their finalizer removes them
    return TrainResult(
        Path(config.output),
        card,
        history,
        best_epoch,
        time.perf_counter() - started,
        valid.get("correct") if state.first_epoch <= config.epochs else None,
    )


@dataclass(frozen=True)
class _Rebatched:
    """A cached split read afresh, in order, on each pass (validation each epoch)."""

    view: object
    size: int

    def __iter__(self):
        return self.view.batches(self.size)


class _FromBlock(nn.Module):
    """The trained part of the model as one module (what DistributedDataParallel wraps)."""

    def __init__(self, model: FlowerNet, start: int) -> None:
        super().__init__()
        self.model, self.start = model, start

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, classes)
        return self.model.forward_from(x, self.start) if self.start else self.model(x)


def train_one_epoch(
    trainable: nn.Module,
    model: FlowerNet,
    start: int,
    batches,
    optimizer,
    scheduler,
    scaler,
    loss_fn,
    amp: dict,
    device,
    task: Task,
    world: Dist,
    ema: AveragedModel | None = None,
) -> tuple[float, float]:
    """One pass over ``batches``, stepping the optimizer, schedule and EMA; mean loss and top-1."""
    model.train()
    for block in list(model.features)[:start]:
        block.eval()  # frozen blocks keep their running statistics
    total_loss, correct, seen = 0.0, 0, 0
    for x, y in batches:
        x = to_device(x, device, True)
        y = y.to(device, non_blocking=True)
        with torch.autocast(**amp) if amp else nullcontext():
            logits = trainable(x)  # (B, classes)
            loss = loss_fn(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        if ema is not None:
            ema.update_parameters(model)
        n = len(y)
        value = loss.item()
        if not math.isfinite(value):
            if scaler.is_enabled():  # float16: the scaler skipped this step and lowers its scale
                continue
            raise TrainingDiverged(f"the training loss ({value}, step {seen // max(n, 1) + 1})")
        total_loss += value * n
        correct += (logits.argmax(1) == y).sum().item()
        seen += n
        task.advance(n, loss=total_loss / seen, acc=correct / seen)
    task.close()
    total_loss, correct, seen = world.sum([total_loss, correct, seen], device)
    return total_loss / max(seen, 1), correct / max(seen, 1)


@torch.no_grad()
def evaluate(
    model: FlowerNet,
    start: int,
    batches,
    device,
    amp: dict,
    channels_last: bool,
    task: Task | None = None,
    world: Dist = Dist(),
) -> dict[str, float]:
    """Loss, top-1 and top-5 accuracy of ``model`` over (input, label) batches: over every rank's
    batches together when distributed."""
    model.eval()
    loss_sum, top1, top5, seen = 0.0, 0, 0, 0
    correct: list[bool] = []
    for x, y in batches:
        x = to_device(x, device, channels_last)
        y = y.to(device)
        with torch.autocast(**amp) if amp else nullcontext():
            logits = (model.forward_from(x, start) if start else model(x)).float()
        loss_sum += nn.functional.cross_entropy(logits, y, reduction="sum").item()
        k = min(5, logits.shape[1])
        ranked = logits.topk(k, dim=1).indices  # (B, k)
        top1 += (ranked[:, 0] == y).sum().item()
        correct += (ranked[:, 0] == y).tolist()
        top5 += (ranked == y[:, None]).any(1).sum().item()
        seen += len(y)
        if task:
            task.advance(len(y))
    if task:
        task.close()
    loss_sum, top1, top5, seen = world.sum([loss_sum, top1, top5, seen], device)
    return {"loss": loss_sum / seen, "top1": top1 / seen, "top5": top5 / seen, "correct": correct}
