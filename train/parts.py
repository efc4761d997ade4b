"""The parts of a TrainConfig that each piece of training takes, frozen, instead of the whole
34-field config: ``TrainConfig.cache_options()``, ``.augmentation()``, ``.optimizer_options()`` and
``.schedule()`` build them (train/config.py).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Augmentation:
    """What training's random views vary: ``TrainConfig.augmentation()``, for train/transforms.py."""

    scale: tuple[float, float]
    rotation: float
    color_jitter: float


@dataclass(frozen=True)
class CacheOptions:
    """What the frozen-feature cache needs of a run: ``TrainConfig.cache_options()``, for train/features.py."""

    views: int
    memory_gb: float | None
    engine: str
    batch_size: int
    seed: int
    amp: bool
    augmentation: Augmentation


@dataclass(frozen=True)
class OptimizerOptions:
    """``TrainConfig.optimizer_options()``, for train/optim.py: the optimizer and its learning rates."""

    name: str
    lr: float
    backbone_lr_scale: float
    weight_decay: float


@dataclass(frozen=True)
class Schedule:
    """``TrainConfig.schedule()``, for train/optim.py: how the learning rate moves over the run."""

    name: str
    epochs: int
    step_size: int
    gamma: float
