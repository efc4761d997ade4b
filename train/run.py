"""One training run, epoch by epoch (train/loop.py makes it): the model and what of it trains, the
optimizer and where a resumed run stands, the batches, the best epoch, the checkpoint after each."""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from flower_edge.common.errors import ConfigError, TrainingDiverged
from flower_edge.common.output import resolved
from flower_edge.common.processes import interrupts_deferred

from .checkpoint import resume_state, save_checkpoint, training_payload, with_metrics
from .device import autocast_args
from .features import FeatureCache, SharedFeatures
from .loaders import make_loader
from .model import FlowerNet, build_model
from .optim import make_optimizer, make_scheduler
from .steps import FromBlock, Step, evaluate, train_one_epoch
from .transforms import eval_transform, training_augmentation


def frozen_until(model: FlowerNet, config) -> int:
    """Index of the first trained block: blocks before it stay frozen (and can be cached)."""
    if config.mode == "freeze":
        return model.num_blocks
    if config.finetune_blocks == 0 or config.finetune_blocks >= model.num_blocks:
        return 0
    return model.num_blocks - config.finetune_blocks


def _what_is_trained(model: FlowerNet, start: int, config) -> str:
    if start == model.num_blocks:
        return f"training: the head only ({config.arch} frozen)"
    trained = "all blocks" if start == 0 else f"the last {model.num_blocks - start} of {model.num_blocks} blocks"
    return f"training: the head and {trained} of {config.arch}"


class Run:
    """One training run: the model and what of it trains, the optimizer and where a resumed run
    stands, the batches (the frozen part's output cached once, or photos read each epoch when all
    is trained), the history and the best epoch so far, the checkpoint after each epoch."""

    def __init__(self, config, reporter, world, device, source, card, ckpt, resume) -> None:
        self.config, self.reporter, self.world, self.device = config, reporter, world, device
        self.source, self.card, self.resume = source, card, resume
        # The blocks before `start` stay frozen; channels-last speeds up depthwise convolutions on
        # CPU (1.5x measured here) as on GPU.
        model = build_model(
            config.arch, card.num_classes, config.hidden, config.dropout, weights="none" if ckpt else config.weights
        )
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.momentum = config.bn_momentum
        self.start = start = frozen_until(model, config)
        reporter.message(_what_is_trained(model, start, config))
        for block in list(model.features)[:start]:
            block.requires_grad_(False)
        self.model = model.to(device, memory_format=torch.channels_last)
        self.train_samples = world.shard(source.splits["train"], pad=True)  # every rank as many steps
        self.step, self.state = self._optimizer(ckpt)
        self.history, self.best_epoch = self.state.history, self.state.best_epoch
        self.best_acc, self.best_state = self.state.best_acc, self.state.best_state
        self.on_disk = self.state.first_epoch - 1 if resume and resolved(resume) == resolved(config.output) else None
        self.valid: dict = {}
        self.cache: FeatureCache | None = None

    def _optimizer(self, ckpt):
        """The optimizer step and where a resumed run stands (train/checkpoint.py resume_state)."""
        config, model, start = self.config, self.model, self.start
        optimizer = make_optimizer(model, start, config.optimizer_options())
        scheduler = make_scheduler(optimizer, config.schedule(), math.ceil(len(self.train_samples) / config.batch_size))
        state = resume_state(ckpt, model, optimizer, scheduler)
        if state.first_epoch > config.epochs:
            raise ConfigError(
                f"--resume: {self.resume} already finished epoch {state.first_epoch - 1}; "
                f"ask for more with --epochs {state.first_epoch - 1 + config.epochs}"
            )
        if ckpt is not None:
            self.reporter.message(f"resuming {self.resume} at epoch {state.first_epoch} of {config.epochs}")
        # The averaged weights are what validation sees and what the checkpoint keeps (--ema).
        ema = (
            AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema), use_buffers=True)
            if config.ema
            else None
        )
        if ema is not None and ckpt is not None and "ema_state" in ckpt["resume"]:
            ema.load_state_dict(ckpt["resume"]["ema_state"])
        amp = autocast_args(self.device, config.amp)
        scaler = torch.amp.GradScaler("cuda", enabled=amp.get("dtype") == torch.float16)
        loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
        # DistributedDataParallel averages the gradients of the trained part over the ranks.
        trainable: nn.Module = FromBlock(model, start).to(self.device)
        if self.world.enabled:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            trainable = DistributedDataParallel(trainable, device_ids=device_ids)
        step = Step(trainable, model, start, optimizer, scheduler, scaler, loss_fn, amp, self.device, self.world, ema)
        return step, state

    def batches(self, shared: SharedFeatures | None) -> None:
        """The training views (cached) and the valid and test batches. Each rank evaluates its own
        shard of valid and test; the sums are all-reduced."""
        config, card, world, start = self.config, self.card, self.world, self.start
        workers = config.workers
        if workers is None:
            workers = min(8, os.cpu_count() or 1) if self.device.type == "cuda" else 0
        self.valid_samples = world.shard(self.source.splits["valid"])
        test = self.source.splits.get("test")
        self.test_samples = world.shard(test) if test else None
        self.loader = dict(seed=config.seed, workers=workers)
        self.train_views = None
        if start == 0:
            self.valid_batches = make_loader(self.valid_samples, eval_transform(card), config.batch_size, **self.loader)
            self.test_batches = (
                make_loader(self.test_samples, eval_transform(card), config.batch_size, **self.loader)
                if self.test_samples is not None
                else None
            )
            return
        prefix = self.model.prefix(start).eval()
        if shared is not None:
            self.train_views, valid_view = shared.views(
                prefix, start, card, config, self.device, workers, self.reporter, self.train_samples, self.valid_samples
            )
            test_view = None
        else:
            self.cache = FeatureCache(prefix, card, config.cache_options(), self.device, workers, self.reporter)
            self.train_views, valid_view, test_view = self.cache.build(
                self.train_samples, self.valid_samples, self.test_samples
            )
        self.valid_batches = _Rebatched(valid_view, config.batch_size * 2)
        self.test_batches = _Rebatched(test_view, config.batch_size * 2) if test_view is not None else None

    def epoch(self, epoch: int) -> None:
        """Train, evaluate, keep the best, write the checkpoint."""
        config, step = self.config, self.step
        if self.train_views is not None:
            view = self.train_views[(epoch - 1) % len(self.train_views)]
            batches = view.batches(config.batch_size, shuffle=True, epoch=epoch)
        else:
            augment = training_augmentation(self.card, config.augmentation())
            batches = make_loader(
                self.source.splits["train"],
                augment,
                config.batch_size,
                shuffle=True,
                epoch=epoch,
                world=self.world,
                **self.loader,
            )
        try:
            task = self.reporter.task(f"epoch {epoch}/{config.epochs}", len(self.train_samples))
            train_loss, train_acc = train_one_epoch(step, batches, task)
        except TrainingDiverged as e:
            raise self.diverged(epoch, str(e)) from None
        evaluated = step.ema.module if step.ema is not None else self.model
        self.world.sync_buffers(self.model)
        if step.ema is not None:
            self.world.sync_buffers(step.ema.module)  # its averaged statistics came from each rank's own
        task = self.reporter.task("validating", len(self.valid_samples))
        valid = self.valid = evaluate(
            evaluated, self.start, self.valid_batches, self.device, step.amp, True, task, self.world
        )
        if not math.isfinite(valid["loss"]):
            raise self.diverged(epoch, "the validation loss")
        record = {
            "epoch": epoch,
            "train_loss": train_loss,
            "train_top1": train_acc,
            "valid_loss": valid["loss"],
            "valid_top1": valid["top1"],
            "valid_top5": valid["top5"],
            "lr": step.optimizer.param_groups[0]["lr"],
        }
        self.history.append(record)
        if valid["top1"] > self.best_acc:
            self.best_acc, self.best_epoch = valid["top1"], epoch
            self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in evaluated.state_dict().items()}
        self.reporter.epoch(record)
        self.card = with_metrics(self.card, self.history, self.best_epoch)
        self.checkpoint(epoch)

    def test(self) -> None:
        """The best epoch's model on the test split, when there is one; its figures into the card."""
        if self.test_batches is None or self.best_state is None or self.test_samples is None:
            return
        model = self.model
        latest = copy.deepcopy(model.state_dict())
        model.load_state_dict(self.best_state)
        task = self.reporter.task("testing", len(self.test_samples))
        test = evaluate(model, self.start, self.test_batches, self.device, self.step.amp, True, task, self.world)
        model.load_state_dict(latest)
        self.card = with_metrics(self.card, self.history, self.best_epoch, test)
        self.checkpoint(self.history[-1]["epoch"])

    def checkpoint(self, epoch: int) -> None:
        step, config = self.step, self.config
        if self.world.main:
            with interrupts_deferred():  # Ctrl-C during the write: after it, and reported truly
                payload = training_payload(
                    self.model,
                    step.optimizer,
                    step.scheduler,
                    config,
                    self.card,
                    self.history,
                    epoch,
                    self.best_epoch,
                    self.best_state,
                    step.ema,
                )
                save_checkpoint(config.output, payload)
                self.reporter.saved(config.output, epoch)
        self.on_disk = epoch
        self.world.barrier()  # the checkpoint is complete before any rank goes on

    def diverged(self, epoch: int, what: str) -> TrainingDiverged:
        config = self.config
        kept = (
            f"{config.output} holds epoch {self.on_disk}, the last finite one"
            if self.on_disk
            else "no checkpoint was written by this run"
        )
        return TrainingDiverged(
            f"epoch {epoch}: {what} is not a finite number, so training stopped; lower --lr "
            f"(it was {config.lr:g}); {kept}"
        )


@dataclass(frozen=True)
class _Rebatched:
    """A cached split read afresh, in order, on each pass (validation each epoch)."""

    view: object
    size: int

    def __iter__(self):
        return self.view.batches(self.size)
