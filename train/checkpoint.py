"""Checkpoint I/O: one self-describing ``.pth`` file per training run.

    model, card, ckpt = load_model("flower.pth")      # no flags: the file says how to rebuild it

The file is a plain dict of tensors, numbers and strings, so it loads with
``torch.load(weights_only=True)`` and never unpickles code. It holds the best model's weights, its
model card and training config, the history, and the latest epoch's weights, optimizer and
scheduler state for ``--resume``. It is written to a temporary file and renamed into place.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from flower_edge.runtime.card import ModelCard
from flower_edge.runtime.errors import CardError, CheckpointError
from flower_edge.runtime.files import atomic_write

from .config import TrainConfig
from .model import FlowerNet, build_model

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
    ckpt["config"] = TrainConfig.from_dict(ckpt["config"])
    return ckpt


def model_from_checkpoint(ckpt: dict[str, Any]) -> FlowerNet:
    """The checkpoint's best model, rebuilt from its card and config alone."""
    card: ModelCard = ckpt["card"]
    config: TrainConfig = ckpt["config"]
    model = build_model(card.arch, card.num_classes, config.hidden, config.dropout, weights="none")
    try:
        model.load_state_dict(ckpt["model_state"])
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint weights do not fit {card.arch}: {str(e).splitlines()[0]}") from None
    return model


def load_model(path: str | os.PathLike) -> tuple[FlowerNet, ModelCard, dict[str, Any]]:
    """The best model of a checkpoint, in eval mode, with its card and the whole checkpoint."""
    ckpt = load_checkpoint(path)
    model = model_from_checkpoint(ckpt)
    return model.eval(), ckpt["card"], ckpt
