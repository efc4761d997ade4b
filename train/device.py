"""Where training runs and in what precision: the device, the seed, autocast, moving a batch.

device = resolve_device("auto")            # cuda when PyTorch sees a GPU, else cpu
with torch.autocast(**autocast_args(device, amp=True)): ...
"""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import torch

from flower_edge.common.errors import ConfigError


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


def autocast_args(device: torch.device, enabled: bool) -> dict[str, Any]:
    """``torch.autocast`` arguments: bf16 (or fp16) on CUDA with --amp, none (fp32) elsewhere."""
    if device.type != "cuda" or not enabled:
        return {}
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"device_type": "cuda", "dtype": dtype}


def to_device(x: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    """A batch as the model takes it: float32 on ``device``, channels-last when asked (and 4-D)."""
    x = x.to(device, non_blocking=True).float()
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def check_workers(workers: int | None) -> None:
    """Data-loading processes, bounded by this machine's cores: each holds its own copy of the data
    set (1,000 took 13 GB). Checked when a run starts, not in the stored config, so a checkpoint
    trained on a larger machine still loads here."""
    cores = os.cpu_count() or 1
    if workers is not None and workers > cores:
        raise ConfigError(f"--workers must be between 0 and {cores} (the cores of this machine), found {workers}")
