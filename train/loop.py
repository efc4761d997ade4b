"""The training loop: data, model, optimizer, scheduler, resume, then epochs of train and evaluate.

    flower-train ../shared/data/flowers5 --epochs 10 -o flower.pth
    python -c "from flower_edge.train import TrainConfig, train; train(TrainConfig('synthetic'))"

When the start of the backbone is frozen (``--freeze``, or ``--finetune-blocks N`` short of all),
its output is computed once per cached augmented view and reused across epochs: on a CPU this turns
an hour of fine-tuning into minutes. On a CPU those frozen blocks run through onnxruntime, several
times faster than eager PyTorch there, after a parity check against PyTorch.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import random
import tempfile
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, DistributedSampler

from flower_edge.runtime.card import ModelCard
from flower_edge.runtime.errors import CheckpointError, ConfigError
from flower_edge.runtime.files import interrupts_deferred, remove_stale

from .backbones import check_weights, get_backbone
from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig
from .data import DataSource, ImageDataset, decode_all, eval_transform, open_data, train_transform
from .distributed import Dist, setup, teardown
from .model import FlowerNet, build_model

log = logging.getLogger(__name__)


class Reporter:
    """What the loop tells the outside world; the CLI draws progress bars from it."""

    def source(self, source: DataSource) -> None: ...

    def task(self, description: str, total: int) -> "Task":
        return Task()

    def epoch(self, record: dict[str, float]) -> None: ...

    def saved(self, path: str, epoch: int) -> None:
        """The checkpoint at ``path`` now holds ``epoch`` (written whole, atomically)."""

    def message(self, text: str) -> None: ...


class Task:
    def advance(self, n: int = 1, **fields: float) -> None: ...

    def close(self) -> None: ...


@dataclass
class TrainResult:
    checkpoint: Path
    card: ModelCard
    history: list[dict[str, float]]
    best_epoch: int
    seconds: float


def tool_version() -> str:
    try:
        return version("flower-edge")
    except PackageNotFoundError:
        return "unknown"


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA GPU is visible to PyTorch; use --device cpu or auto")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_card(config: TrainConfig, source: DataSource) -> ModelCard:
    spec = get_backbone(config.arch)
    size = config.image_size
    return ModelCard(
        arch=config.arch,
        labels=source.labels,
        class_ids=source.class_ids,
        input_size=(3, size, size),
        resize_size=config.eval_resize,
        crop_size=size,
        interpolation=config.interpolation,
        mean=spec.mean,
        std=spec.std,
        provenance={
            "data": source.description,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "tool": f"flower-edge {tool_version()}",
            "weights": config.weights,
        },
    )


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


def lr_factor(config: TrainConfig, steps_per_epoch: int) -> Callable[[int], float]:
    """Learning-rate multiplier per optimizer step, for LambdaLR (its state is just the step)."""
    total = config.epochs * steps_per_epoch

    def step(i: int) -> float:
        return config.gamma ** (i // (config.step_size * steps_per_epoch))

    def cosine(i: int) -> float:
        return 0.5 * (1 + math.cos(math.pi * min(i, total) / total))

    def onecycle(i: int) -> float:
        # Warm up from lr/25 for 15% of the steps, then cosine down to nearly zero.
        warm = max(1, int(0.15 * total))
        if i < warm:
            return 1 / 25 + (1 - 1 / 25) * i / warm
        t = min(1.0, (i - warm) / max(1, total - warm))
        return 1e-4 + (1 - 1e-4) * 0.5 * (1 + math.cos(math.pi * t))

    return {"step": step, "cosine": cosine, "onecycle": onecycle}[config.scheduler]


def make_optimizer(model: FlowerNet, start: int, config: TrainConfig) -> torch.optim.Optimizer:
    backbone = [p for block in list(model.features)[start:] for p in block.parameters()]
    groups = [{"params": list(model.head.parameters()), "lr": config.lr}]
    if backbone:
        groups.append({"params": backbone, "lr": config.lr * config.backbone_lr_scale})
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, weight_decay=config.weight_decay)
    return torch.optim.Adam(groups, weight_decay=config.weight_decay)


def train(config: TrainConfig, reporter: Reporter | None = None, resume: str | None = None) -> TrainResult:
    """Train a classifier as ``config`` says and write its checkpoint; returns where and how well."""
    reporter = reporter or Reporter()
    started = time.perf_counter()
    get_backbone(config.arch)  # an unknown arch fails before any slow work
    check_weights(config.weights)
    _check_writable(Path(config.output))
    for stale in remove_stale(Path(config.output).parent, f".{Path(config.output).name}."):
        reporter.message(f"removed {stale.name}: a checkpoint write that a killed run left unfinished")
    ckpt = load_checkpoint(resume) if resume else None
    if ckpt is not None:
        _check_resumable(ckpt["config"], config)
    world = setup(config.device)
    try:
        return _train(config, reporter if world.main else Reporter(), ckpt, resume, world, started)
    finally:
        teardown(world)


def _train(config: TrainConfig, reporter: Reporter, ckpt, resume: str | None, world: Dist,
           started: float) -> TrainResult:
    seed_everything(config.seed)
    device = resolve_device(config.device)
    if world.enabled and device.type == "cuda":
        device = torch.device("cuda", world.local_rank)

    source = open_data(config.data, valid_fraction=config.valid_fraction,
                       labels_file=Path(config.labels) if config.labels else None, task=reporter.task)
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

    model = build_model(config.arch, card.num_classes, config.hidden, config.dropout,
                        weights="none" if ckpt else config.weights)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = config.bn_momentum
    start = frozen_until(model, config)
    reporter.message(_what_is_trained(model, start, config))
    for block in list(model.features)[:start]:
        block.requires_grad_(False)
    # channels-last speeds up depthwise convolutions on CPU (1.5x measured here) as on GPU.
    channels_last = True
    model.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)

    train_samples = world.shard(source.splits["train"], pad=True)  # every rank as many steps
    steps_per_epoch = math.ceil(len(train_samples) / config.batch_size)
    optimizer = make_optimizer(model, start, config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(config, steps_per_epoch))
    history: list[dict[str, float]] = []
    first_epoch, best_acc, best_epoch = 1, -1.0, 0
    best_state = None
    if ckpt is not None:
        state = ckpt["resume"]
        model.load_state_dict(state["model_state"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history = list(ckpt["history"])
        first_epoch = int(ckpt["epoch"]) + 1
        best_epoch = int(ckpt["best_epoch"])
        best_acc = float(ckpt["card"].metrics.get("valid_top1", -1.0))
        best_state = ckpt["model_state"]
        torch.set_rng_state(state["torch_rng"])
        if first_epoch > config.epochs:
            raise ConfigError(
                f"--resume: {resume} already finished epoch {first_epoch - 1}; "
                f"ask for more with --epochs {first_epoch - 1 + config.epochs}"
            )
        reporter.message(f"resuming {resume} at epoch {first_epoch} of {config.epochs}")

    # The averaged weights are what validation sees and what the checkpoint keeps (--ema).
    ema = (AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema), use_buffers=True)
           if config.ema else None)
    if ema is not None and ckpt is not None and "ema_state" in ckpt["resume"]:
        ema.load_state_dict(ckpt["resume"]["ema_state"])
    amp = _autocast(device, config.amp)
    scaler = torch.amp.GradScaler("cuda", enabled=amp.get("dtype") == torch.float16)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    workers = config.workers if config.workers is not None else (min(8, os.cpu_count() or 1) if device.type == "cuda" else 0)

    # Each rank evaluates its own shard of valid and test; the sums are all-reduced.
    valid_samples = world.shard(source.splits["valid"])
    test_samples = world.shard(source.splits["test"]) if source.splits.get("test") else None
    if start > 0:
        cache = FeatureCache(model.prefix(start).eval(), card, config, device, workers, reporter)
        train_views = cache.train_views(train_samples, config.cache_views)
        valid_batches = cache.eval_split(valid_samples)
        test_batches = cache.eval_split(test_samples) if test_samples is not None else None
    else:
        train_views = None
        valid_batches = _loader(valid_samples, eval_transform(card), config, workers, False)
        test_batches = (_loader(test_samples, eval_transform(card), config, workers, False)
                        if test_samples is not None else None)
    # DistributedDataParallel averages the gradients of the trained part over the ranks.
    trainable = _FromBlock(model, start).to(device)
    if world.enabled:
        trainable = DistributedDataParallel(trainable, device_ids=[device.index] if device.type == "cuda" else None)

    for epoch in range(first_epoch, config.epochs + 1):
        if train_views is not None:
            batches = _cached_batches(train_views[(epoch - 1) % len(train_views)], config.batch_size)
        else:
            batches = _loader(source.splits["train"], _augment(card, config), config, workers, True, epoch, world)
        train_loss, train_acc = _train_one_epoch(
            trainable, model, start, batches, optimizer, scheduler, scaler, loss_fn, amp, device,
            channels_last, reporter.task(f"epoch {epoch}/{config.epochs}", len(train_samples)), world, ema)
        evaluated = ema.module if ema is not None else model
        world.sync_buffers(model)
        if ema is not None:
            world.sync_buffers(ema.module)  # its averaged statistics came from each rank's own
        valid = evaluate(evaluated, start, valid_batches, device, amp, channels_last,
                         reporter.task("validating", len(valid_samples)), world)
        record = {"epoch": epoch, "train_loss": train_loss, "train_top1": train_acc,
                  "valid_loss": valid["loss"], "valid_top1": valid["top1"], "valid_top5": valid["top5"],
                  "lr": optimizer.param_groups[0]["lr"]}
        history.append(record)
        if valid["top1"] > best_acc:
            best_acc, best_epoch = valid["top1"], epoch
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in evaluated.state_dict().items()}
        reporter.epoch(record)
        card = _with_metrics(card, history, best_epoch)
        if world.main:
            with interrupts_deferred():  # Ctrl-C during the write: after it, and reported truly
                save_checkpoint(config.output, _payload(model, optimizer, scheduler, config, card, history,
                                                        epoch, best_epoch, best_state, ema))
                reporter.saved(config.output, epoch)
        world.barrier()  # the checkpoint is complete before any rank goes on

    if test_batches is not None and best_state is not None:
        latest = copy.deepcopy(model.state_dict())
        model.load_state_dict(best_state)
        test = evaluate(model, start, test_batches, device, amp, channels_last,
                        reporter.task("testing", len(test_samples)), world)
        model.load_state_dict(latest)
        card = _with_metrics(card, history, best_epoch, test)
        if world.main:
            with interrupts_deferred():
                save_checkpoint(config.output, _payload(model, optimizer, scheduler, config, card, history,
                                                        history[-1]["epoch"], best_epoch, best_state, ema))
        world.barrier()
    return TrainResult(Path(config.output), card, history, best_epoch, time.perf_counter() - started)


def _check_writable(output: Path) -> None:
    """Fail before hours of training, not after the first epoch."""
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"--output {output}: cannot create its folder ({e.strerror})") from None
    if output.is_dir():
        raise ConfigError(f"--output {output}: is a folder; give a file name like {output / 'flower.pth'}")
    if not os.access(output.parent, os.W_OK):
        raise ConfigError(f"--output {output}: its folder is not writable")


def _check_resumable(old: TrainConfig, new: TrainConfig) -> None:
    for name in ("arch", "hidden", "mode", "finetune_blocks", "image_size", "batch_size", "scheduler", "optimizer"):
        if getattr(new, name) is not None and getattr(old, name) != getattr(new, name):
            raise ConfigError(
                f"--resume: the checkpoint was trained with {name}={getattr(old, name)!r}, "
                f"not {getattr(new, name)!r}; resume with the same settings"
            )


def _with_metrics(card: ModelCard, history: list[dict], best_epoch: int,
                  test: dict[str, float] | None = None) -> ModelCard:
    best = history[best_epoch - 1] if best_epoch else {}
    metrics = {"epoch": float(best_epoch)} if best else {}
    metrics.update({k: float(v) for k, v in best.items() if k.startswith("valid_")})
    if test:
        metrics.update({"test_top1": test["top1"], "test_top5": test["top5"]})
    return replace(card, metrics=metrics)


def _payload(model, optimizer, scheduler, config, card, history, epoch, best_epoch, best_state,
             ema: AveragedModel | None = None) -> dict:
    payload = {
        "card": card.to_dict(),
        "config": config.to_dict(),
        "model_state": best_state,
        "epoch": epoch,
        "best_epoch": best_epoch,
        "history": history,
        "resume": {
            "model_state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
        },
    }
    if ema is not None:
        payload["resume"]["ema_state"] = {k: v.detach().cpu() for k, v in ema.state_dict().items()}
    return payload


def _augment(card: ModelCard, config: TrainConfig):
    return train_transform(card, (config.aug_scale, 1.0), config.rotation, config.color_jitter)


def _autocast(device: torch.device, enabled: bool) -> dict[str, Any]:
    if device.type != "cuda" or not enabled:
        return {}
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"device_type": "cuda", "dtype": dtype}


def _loader(samples, transform, config: TrainConfig, workers: int, shuffle: bool, epoch: int = 0,
            world: Dist = Dist(), images=None) -> DataLoader:
    dataset = ImageDataset(samples, transform, images)
    if shuffle and world.enabled:  # a fresh global shuffle each epoch, dealt out to the ranks
        sampler = DistributedSampler(dataset, world.world, world.rank, shuffle=True, seed=config.seed)
        sampler.set_epoch(epoch)
        return DataLoader(dataset, batch_size=config.batch_size, sampler=sampler, num_workers=workers,
                          pin_memory=torch.cuda.is_available())
    generator = torch.Generator().manual_seed(config.seed + len(samples) + epoch) if shuffle else None
    return DataLoader(dataset, batch_size=config.batch_size, shuffle=shuffle,
                      num_workers=workers, generator=generator, drop_last=False,
                      pin_memory=torch.cuda.is_available(), persistent_workers=False)


def _cached_batches(view: tuple[torch.Tensor, torch.Tensor], batch_size: int) -> Iterator:
    x, y = view
    order = torch.randperm(len(x))
    for i in range(0, len(x), batch_size):
        idx = order[i:i + batch_size]
        yield x[idx], y[idx]


class _FromBlock(nn.Module):
    """The trained part of the model as one module (what DistributedDataParallel wraps)."""

    def __init__(self, model: FlowerNet, start: int) -> None:
        super().__init__()
        self.model, self.start = model, start

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, classes)
        return self.model.forward_from(x, self.start) if self.start else self.model(x)


def _train_one_epoch(trainable: nn.Module, model: FlowerNet, start: int, batches, optimizer, scheduler,
                     scaler, loss_fn, amp: dict, device, channels_last: bool, task: Task,
                     world: Dist, ema: AveragedModel | None = None) -> tuple[float, float]:
    model.train()
    for block in list(model.features)[:start]:
        block.eval()  # frozen blocks keep their running statistics
    total_loss, correct, seen = 0.0, 0, 0
    for x, y in batches:
        x = _to_device(x, device, channels_last)
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
        total_loss += loss.item() * n
        correct += (logits.argmax(1) == y).sum().item()
        seen += n
        task.advance(n, loss=total_loss / seen, acc=correct / seen)
    task.close()
    total_loss, correct, seen = world.sum([total_loss, correct, seen], device)
    return total_loss / max(seen, 1), correct / max(seen, 1)


@torch.no_grad()
def evaluate(model: FlowerNet, start: int, batches, device, amp: dict, channels_last: bool,
             task: Task | None = None, world: Dist = Dist()) -> dict[str, float]:
    """Loss, top-1 and top-5 accuracy of ``model`` over (input, label) batches: over every rank's
    batches together when distributed."""
    model.eval()
    loss_sum, top1, top5, seen = 0.0, 0, 0, 0
    for x, y in batches:
        x = _to_device(x, device, channels_last)
        y = y.to(device)
        with torch.autocast(**amp) if amp else nullcontext():
            logits = (model.forward_from(x, start) if start else model(x)).float()
        loss_sum += nn.functional.cross_entropy(logits, y, reduction="sum").item()
        k = min(5, logits.shape[1])
        ranked = logits.topk(k, dim=1).indices  # (B, k)
        top1 += (ranked[:, 0] == y).sum().item()
        top5 += (ranked == y[:, None]).any(1).sum().item()
        seen += len(y)
        if task:
            task.advance(len(y))
    if task:
        task.close()
    loss_sum, top1, top5, seen = world.sum([loss_sum, top1, top5, seen], device)
    return {"loss": loss_sum / seen, "top1": top1 / seen, "top5": top5 / seen}


def _to_device(x: torch.Tensor, device, channels_last: bool) -> torch.Tensor:
    x = x.to(device, non_blocking=True).float()
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


class FeatureCache:
    """Runs the frozen prefix of the model once over each split and keeps its outputs (fp16)."""

    def __init__(self, prefix: nn.Module, card: ModelCard, config: TrainConfig, device: torch.device,
                 workers: int, reporter: Reporter) -> None:
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
        amp = _autocast(self.device, self.config.amp)

        @torch.no_grad()
        def run(x: torch.Tensor) -> torch.Tensor:
            x = _to_device(x, self.device, self.device.type == "cuda")
            with torch.autocast(**amp) if amp else nullcontext():
                return self.prefix(x)

        return run

    def _pass(self, samples, transform, description: str, images=None) -> tuple[torch.Tensor, torch.Tensor]:
        loader = _loader(samples, transform, self.config, self.workers, False, images=images)
        task = self.reporter.task(description, len(samples))
        xs, ys = [], []
        for x, y in loader:
            xs.append(self.run(x).to(self.store, torch.float16))
            ys.append(y.to(self.store))
            task.advance(len(y))
        task.close()
        return torch.cat(xs), torch.cat(ys)

    def train_views(self, samples, views: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The first view is the plain evaluation preprocessing, the others are augmented.

        The plain view shows the model photos exactly as validation and deployment will, so it
        never learns on zoomed crops alone (flowers5, last 2 blocks: 78.6% with a plain view and
        mild crops, 74.4% with heavily augmented views only).
        """
        transforms = [eval_transform(self.card)] + [_augment(self.card, self.config)] * (views - 1)
        images = decode_all(samples, task=self.reporter.task) if views > 1 else None
        return [self._pass(samples, t, f"caching frozen features, view {v + 1}/{views}", images)
                for v, t in enumerate(transforms)]

    def eval_split(self, samples) -> list[tuple[torch.Tensor, torch.Tensor]]:
        x, y = self._pass(samples, eval_transform(self.card), "caching frozen features, evaluation")
        size = self.config.batch_size * 2
        return [(x[i:i + size], y[i:i + size]) for i in range(0, len(x), size)]


def _onnxruntime_prefix(prefix: nn.Module, size: int) -> Callable[[torch.Tensor], torch.Tensor]:
    import onnxruntime as ort

    prefix = copy.deepcopy(prefix).cpu().float().eval()
    sample = torch.randn(2, 3, size, size)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = Path(tmp) / "prefix.onnx"
        torch.onnx.export(prefix, (sample,), str(path), input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, dynamo=False)
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.log_severity_level = 3
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {"x": x.float().numpy()})[0])

    with torch.no_grad():
        expected = prefix(sample)
    diff = (run(sample) - expected).abs().max().item()
    if diff > 1e-3:
        raise RuntimeError(f"onnxruntime differs from PyTorch by {diff:.2e}")
    return run
