"""One optimizer step at a time, and one evaluation: the inner loops of training.

step = Step(trainable, model, start, optimizer, scheduler, scaler, loss_fn, amp, device, world, ema)
loss, top1 = train_one_epoch(step, batches, task)
figures = evaluate(model, start, batches, device, amp, channels_last=True)
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from flower_edge.common.errors import TrainingDiverged

from .device import to_device
from .distributed import Dist
from .model import FlowerNet
from .report import Task


@dataclass(frozen=True)
class Step:
    """What one optimizer step needs: the trained part, the optimizer, schedule, scaler, loss, EMA."""

    trainable: nn.Module
    model: FlowerNet
    start: int
    optimizer: torch.optim.Optimizer
    scheduler: object
    scaler: torch.amp.GradScaler
    loss_fn: nn.Module
    amp: dict
    device: torch.device
    world: Dist
    ema: AveragedModel | None = None


class FromBlock(nn.Module):
    """The trained part of the model as one module (what DistributedDataParallel wraps)."""

    def __init__(self, model: FlowerNet, start: int) -> None:
        super().__init__()
        self.model, self.start = model, start

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, classes)
        return self.model.forward_from(x, self.start) if self.start else self.model(x)


def train_one_epoch(step: Step, batches, task: Task) -> tuple[float, float]:
    """One pass over ``batches``, stepping the optimizer, schedule and EMA; mean loss and top-1."""
    model, device = step.model, step.device
    model.train()
    for block in list(model.features)[: step.start]:
        block.eval()  # frozen blocks keep their running statistics
    total_loss, correct, seen = 0.0, 0, 0
    for x, y in batches:
        x = to_device(x, device, True)
        y = y.to(device, non_blocking=True)
        with torch.autocast(**step.amp) if step.amp else nullcontext():
            logits = step.trainable(x)  # (B, classes)
            loss = step.loss_fn(logits.float(), y)
        step.optimizer.zero_grad(set_to_none=True)
        step.scaler.scale(loss).backward()
        step.scaler.step(step.optimizer)
        step.scaler.update()
        step.scheduler.step()
        if step.ema is not None:
            step.ema.update_parameters(model)
        n = len(y)
        value = loss.item()
        if not math.isfinite(value):
            if step.scaler.is_enabled():  # float16: the scaler skipped this step and lowers its scale
                continue
            raise TrainingDiverged(f"the training loss ({value}, step {seen // max(n, 1) + 1})")
        total_loss += value * n
        correct += (logits.argmax(1) == y).sum().item()
        seen += n
        task.advance(n, loss=total_loss / seen, acc=correct / seen)
    task.close()
    total_loss, correct, seen = step.world.sum([total_loss, correct, seen], device)
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
