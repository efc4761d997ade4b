"""Checkpoint I/O: one self-describing ``.pth`` file per training run.

    model, card, ckpt = load_model("flower.pth")      # no flags: the file says how to rebuild it

The file is a plain dict of tensors, numbers and strings, so it loads with
``torch.load(weights_only=True)`` and never unpickles code. It holds the best model's weights, its
model card (arch, classes, preprocessing) and ``head`` (the classifier's shape): all that rebuilds the
model, with no flag and no training option. Then the training config, the history, and the
latest epoch's weights, optimizer and scheduler state for ``--resume``. It is written to a
temporary file and renamed into place. What is written (``training_payload``) and what is read back
(``load_checkpoint``, ``model_from_checkpoint``, ``resume_state``) sit side by side here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from flower_edge.common.errors import CardError, CheckpointError, ConfigError
from flower_edge.common.files import atomic_write
from flower_edge.common.output import check_output_file
from flower_edge.runtime.card import ModelCard

from .backbones import get_backbone
from .config import TrainConfig
from .model import FlowerNet, ModelArgs, build_model

if TYPE_CHECKING:
    from .data import DataSource

FORMAT = "flower-edge/checkpoint"
FORMAT_VERSION = 1
_REQUIRED = ("card", "config", "model_state", "epoch", "history", "resume")


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    marked = {"format": FORMAT, "format_version": FORMAT_VERSION, **payload}
    return atomic_write(path, lambda f: torch.save(marked, f))


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate a checkpoint; CheckpointError with one clear line otherwise."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"{path}: is not a file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, foreign pickle, random bytes: torch raises many kinds
        reason = "refuses to load it without unpickling code" if "weights_only" in str(e) else "truncated or corrupt"
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({reason})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a flower-edge checkpoint (no '{FORMAT}' format marker)")
    if ckpt.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format {ckpt['format_version']} is newer than this flower-edge "
            f"reads ({FORMAT_VERSION}); upgrade flower-edge"
        )
    missing = [k for k in _REQUIRED if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: flower-edge checkpoint is missing {missing[0]!r}")
    try:
        ckpt["card"] = ModelCard.from_dict(ckpt["card"])
    except CardError as e:
        raise CheckpointError(f"{path}: {e}") from None
    # The card names the arch and the classes; "head" declares the rest of the model. Files written
    # before it existed keep the head's shape among the training options.
    head = ckpt.get("head", {k: ckpt["config"][k] for k in ("hidden", "dropout") if k in ckpt["config"]})
    try:
        ckpt["model_args"] = ModelArgs.from_dict(
            {**head, "arch": ckpt["card"].arch, "num_classes": ckpt["card"].num_classes}
        )
    except (TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"{path}: its head does not describe a model ({type(e).__name__}: {e})") from None
    ckpt["config"] = TrainConfig.from_dict(ckpt["config"])
    return ckpt


def model_from_checkpoint(ckpt: dict[str, Any]) -> FlowerNet:
    """The checkpoint's best model, rebuilt from what the checkpoint declares about it."""
    args: ModelArgs = ckpt["model_args"]
    model = build_model(args.arch, args.num_classes, args.hidden, args.dropout, weights="none")
    try:
        model.load_state_dict(ckpt["model_state"])
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint weights do not fit {args.arch}: {str(e).splitlines()[0]}") from None
    return model


def load_model(path: str | os.PathLike) -> tuple[FlowerNet, ModelCard, dict[str, Any]]:
    """The best model of a checkpoint, in eval mode, with its card and the whole checkpoint."""
    ckpt = load_checkpoint(path)
    model = model_from_checkpoint(ckpt)
    return model.eval(), ckpt["card"], ckpt


def training_payload(
    model: FlowerNet,
    optimizer: torch.optim.Optimizer,
    scheduler,
    config: TrainConfig,
    card: ModelCard,
    history: list[dict],
    epoch: int,
    best_epoch: int,
    best_state: dict[str, torch.Tensor] | None,
    ema: nn.Module | None = None,
) -> dict[str, Any]:
    """What ``save_checkpoint`` writes after an epoch: the best weights for deployment, and the
    latest ones with the optimizer, scheduler and random state for ``--resume``."""
    payload = {
        "card": card.to_dict(),
        "config": config.to_dict(),
        "head": model.args.head(),
        "model_state": best_state,
        "epoch": epoch,
        "best_epoch": best_epoch,
        "history": history,
        "resume": {
            "model_state": _on_cpu(model.state_dict()),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
        },
    }
    if ema is not None:
        payload["resume"]["ema_state"] = _on_cpu(ema.state_dict())
    return payload


@dataclass
class ResumeState:
    """Where a resumed run stands: the next epoch, the history so far, and the best epoch's weights."""

    first_epoch: int = 1
    history: list[dict] | None = None
    best_epoch: int = 0
    best_acc: float = -1.0
    best_state: dict[str, torch.Tensor] | None = None


def resume_state(
    ckpt: dict[str, Any] | None, model: FlowerNet, optimizer: torch.optim.Optimizer, scheduler
) -> ResumeState:
    """Load a checkpoint's latest weights, optimizer, scheduler and random state into this run's
    objects (nothing to load without one)."""
    if ckpt is None:
        return ResumeState(history=[])
    state = ckpt["resume"]
    model.load_state_dict(state["model_state"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    return ResumeState(
        int(ckpt["epoch"]) + 1,
        list(ckpt["history"]),
        int(ckpt["best_epoch"]),
        float(ckpt["card"].metrics.get("valid_top1", -1.0)),
        ckpt["model_state"],
    )


def _on_cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in state.items()}


def tool_version() -> str:
    try:
        return version("flower-edge")
    except PackageNotFoundError:
        return "unknown"


def make_card(config: TrainConfig, source: DataSource) -> ModelCard:
    """The card a run declares: its classes and the preprocessing its model expects."""
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
        provenance={  # the data's name, not its path: the card ships in every file, to every phone
            "data": source.description
            if source.description in ("synthetic", "flowers102")
            else source.root.resolve().name,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "tool": f"flower-edge {tool_version()}",
            "weights": config.weights,
        },
    )


def with_metrics(
    card: ModelCard, history: list[dict], best_epoch: int, test: dict[str, float] | None = None
) -> ModelCard:
    """The card with the best epoch's validation figures (and the test figures, once measured)."""
    best = history[best_epoch - 1] if best_epoch else {}
    metrics = {"epoch": float(best_epoch)} if best else {}
    metrics.update({k: float(v) for k, v in best.items() if k.startswith("valid_")})
    if test:
        metrics.update({"test_top1": test["top1"], "test_top5": test["top5"]})
    return replace(card, metrics=metrics)


def reads(config: TrainConfig) -> list[tuple[str, str]]:
    """What a training run reads, which no path it writes may be or lie inside (--resume excepted:
    continuing a checkpoint into itself is what --resume is for)."""
    found = [("DATA", config.data)] if Path(config.data).is_dir() else []
    if config.labels:
        found.append(("--labels", config.labels))
    if config.weights not in ("imagenet", "none"):
        found.append(("--weights", config.weights))
    return found


def check_output(config: TrainConfig) -> None:
    """Fail before hours of training, not after the first epoch: -o is a writable file name, not an
    input of the run, and not an existing file of another kind than a checkpoint."""
    output = Path(config.output)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"--output {output}: cannot create its folder ({e.strerror})") from None
    if output.is_dir():
        raise ConfigError(f"--output {output}: is a folder; give a file name like {output / 'flower.pth'}")
    if not os.access(output.parent, os.W_OK):
        raise ConfigError(f"--output {output}: its folder is not writable")
    check_output_file(output, "--output", reads(config), magic=b"PK\x03\x04", kind="PyTorch checkpoint")


def check_resumable(old: TrainConfig, new: TrainConfig) -> None:
    """--resume continues the same run: the settings that shape the model and its steps must match."""
    for name in ("arch", "hidden", "mode", "finetune_blocks", "image_size", "batch_size", "scheduler", "optimizer"):
        if getattr(new, name) is not None and getattr(old, name) != getattr(new, name):
            raise ConfigError(
                f"--resume: the checkpoint was trained with {name}={getattr(old, name)!r}, "
                f"not {getattr(new, name)!r}; resume with the same settings"
            )
