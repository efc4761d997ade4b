"""The optimizer and the learning-rate schedule of a training run, as TrainConfig says.

optimizer = make_optimizer(model, start, config.optimizer_options())  # the head at --lr, trained blocks scaled
scheduler = make_scheduler(optimizer, config.schedule(), steps_per_epoch)
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .config import OptimizerOptions, Schedule
from .model import FlowerNet


def make_optimizer(model: FlowerNet, start: int, options: OptimizerOptions) -> torch.optim.Optimizer:
    """AdamW (or Adam) over the head and the blocks from ``start`` on, at ``backbone_lr_scale`` of --lr."""
    backbone = [p for block in list(model.features)[start:] for p in block.parameters()]
    groups = [{"params": list(model.head.parameters()), "lr": options.lr}]
    if backbone:
        groups.append({"params": backbone, "lr": options.lr * options.backbone_lr_scale})
    if options.name == "adamw":
        return torch.optim.AdamW(groups, weight_decay=options.weight_decay)
    return torch.optim.Adam(groups, weight_decay=options.weight_decay)


def make_scheduler(
    optimizer: torch.optim.Optimizer, schedule: Schedule, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Stepped once per optimizer step; its state (the step) goes into the checkpoint."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(schedule, steps_per_epoch))


def lr_factor(schedule: Schedule, steps_per_epoch: int) -> Callable[[int], float]:
    """Learning-rate multiplier per optimizer step, for LambdaLR (its state is just the step)."""
    total = schedule.epochs * steps_per_epoch

    def step(i: int) -> float:
        return schedule.gamma ** (i // (schedule.step_size * steps_per_epoch))

    def cosine(i: int) -> float:
        return 0.5 * (1 + math.cos(math.pi * min(i, total) / total))

    def onecycle(i: int) -> float:
        # Warm up from lr/25 for 15% of the steps, then cosine down to nearly zero.
        warm = max(1, int(0.15 * total))
        if i < warm:
            return 1 / 25 + (1 - 1 / 25) * i / warm
        t = min(1.0, (i - warm) / max(1, total - warm))
        return 1e-4 + (1 - 1e-4) * 0.5 * (1 + math.cos(math.pi * t))

    return {"step": step, "cosine": cosine, "onecycle": onecycle}[schedule.name]
