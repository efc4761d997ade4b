"""Where training runs and in what precision: the device, the seed, autocast, moving a batch.

device = resolve_device("auto")            # cuda when PyTorch sees a GPU, else cpu
with torch.autocast(**autocast_args(device, amp=True)): ...
"""

from __future__ import annotations

import ctypes
import os
import platform
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


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
KEEP_FREED = 1 << 30
"""Blocks up to this size come from the heap and go back to it (glibc: up to 32 MB); freed heap
memory beyond it is returned to the kernel."""
ALLOCATOR_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")


def keep_freed_memory() -> bool:
    """Let glibc keep the memory a training step frees for the next step, instead of handing every
    block over 32 MB back to the kernel and faulting it in again page by page; whether it did.

    A step of the default recipe allocates activations of 34 MB and more, each a fresh mmap with
    glibc's defaults. Flowers102, 2-core AMD EPYC, interleaved rounds: epochs 50-54 s instead of
    55-58 s, kernel time 2 s instead of 21-29 s (benchmarks/README.md). Only the command line calls
    this, as it owns its process; allocator settings the user made are left alone."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    if any(name in os.environ for name in ALLOCATOR_SETTINGS):
        return False
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, KEEP_FREED)) and bool(mallopt(_M_TRIM_THRESHOLD, KEEP_FREED))


def check_workers(workers: int | None) -> None:
    """Data-loading processes, bounded by this machine's cores: each holds its own copy of the data
    set (1,000 took 13 GB). Checked when a run starts, not in the stored config, so a checkpoint
    trained on a larger machine still loads here."""
    cores = os.cpu_count() or 1
    if workers is not None and workers > cores:
        raise ConfigError(f"--workers must be between 0 and {cores} (the cores of this machine), found {workers}")
