"""TrainConfig: every choice of a training run, built by the CLI and stored in the checkpoint."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from flower_edge.runtime.errors import ConfigError

OPTIMIZERS = ("adamw", "adam")
SCHEDULERS = ("onecycle", "cosine", "step")
MODES = ("finetune", "freeze")
DEVICES = ("auto", "cpu", "cuda")
CACHE_ENGINES = ("auto", "torch", "onnxruntime")


@dataclass(frozen=True)
class TrainConfig:
    data: str
    output: str = "flower.pth"
    arch: str = "efficientnet_lite0"
    weights: str = "imagenet"
    hidden: tuple[int, ...] = ()
    dropout: float = 0.2
    mode: str = "finetune"
    finetune_blocks: int | None = None
    """Blocks trained at the end of the backbone in finetune mode; 0 trains them all; None picks by
    the training set's size (``auto_finetune_blocks``)."""
    backbone_lr_scale: float = 0.5
    bn_momentum: float = 0.1
    epochs: int = 8
    batch_size: int = 64
    lr: float = 2e-3
    optimizer: str = "adamw"
    weight_decay: float = 0.01
    scheduler: str = "onecycle"
    step_size: int = 4
    gamma: float = 0.1
    label_smoothing: float = 0.1
    image_size: int = 224
    resize_size: int | None = None
    """Shorter side before the centre crop at evaluation; None means image_size (the longer side
    alone is cropped). The aspect ratio is kept: squashing the whole photo into the square was
    measured worse on Flowers102 (97.8% against 98.5% valid, benchmarks/README.md)."""
    interpolation: str = "bilinear"
    aug_scale: float = 0.6
    """Smallest area fraction of RandomResizedCrop."""
    rotation: float = 0.0
    """Largest random rotation, in degrees."""
    color_jitter: float = 0.0
    ema: float = 0.0
    """Decay per optimizer step of an exponential moving average of the weights, which validation
    sees and the checkpoint keeps; 0 trains without one."""
    cache_views: int = 6
    """Augmented passes over the training set cached when the backbone's start is frozen."""
    cache_engine: str = "auto"
    valid_fraction: float = 0.15
    labels: str | None = None
    device: str = "auto"
    amp: bool = True
    workers: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        _choice("--optimizer", self.optimizer, OPTIMIZERS)
        _choice("--scheduler", self.scheduler, SCHEDULERS)
        _choice("mode", self.mode, MODES)
        _choice("--device", self.device, DEVICES)
        _choice("--cache-engine", self.cache_engine, CACHE_ENGINES)
        _choice("--interpolation", self.interpolation, ("bilinear", "bicubic"))
        for name in ("epochs", "batch_size", "image_size", "cache_views", "step_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, found {getattr(self, name)}")
        if self.lr <= 0:
            raise ConfigError(f"--lr must be positive, found {self.lr}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"--dropout must be in [0, 1), found {self.dropout}")
        if self.finetune_blocks is not None and self.finetune_blocks < 0:
            raise ConfigError(f"--finetune-blocks must be 0 (all) or more, found {self.finetune_blocks}")
        if any(h < 1 for h in self.hidden):
            raise ConfigError(f"--hidden sizes must be positive, found {self.hidden}")
        if self.image_size % 32:
            raise ConfigError(f"--image-size must be a multiple of 32, found {self.image_size}")
        if self.resize_size is not None and self.resize_size < self.image_size:
            raise ConfigError(
                f"--resize-size ({self.resize_size}) must be at least --image-size ({self.image_size})"
            )
        if not 0 <= self.ema < 1:
            raise ConfigError(f"--ema must be in [0, 1), found {self.ema}")
        if not 0 < self.aug_scale <= 1:
            raise ConfigError(f"--aug-scale must be in (0, 1], found {self.aug_scale}")

    def resolved(self, train_images: int) -> "TrainConfig":
        """This config with ``finetune_blocks`` settled for a training split of this many photos."""
        if self.finetune_blocks is not None:
            return self
        return replace(self, finetune_blocks=auto_finetune_blocks(train_images))

    @property
    def eval_resize(self) -> int:
        return self.resize_size or self.image_size

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if "hidden" in values:
            values["hidden"] = tuple(values["hidden"])
        return cls(**values)

    def with_overrides(self, **overrides: Any) -> "TrainConfig":
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


SMALL_SET = 4000
"""Training photos up to which the default fine-tunes the last 6 blocks instead of 4."""


def auto_finetune_blocks(train_images: int) -> int:
    """The default depth of fine-tuning: 6 blocks for small sets, 4 above ``SMALL_SET`` photos.

    The 6th block from the end (EfficientNet-Lite's stride-2 block at 14x14) costs about as much as
    the last four together, so an epoch of a 3,000-photo set with 6 blocks costs what one of
    Flowers102's 6,552 photos costs with 4. Small sets can afford it, and flowers5's soft 128-px
    photos need it (78.9% against 78.2% valid, benchmarks/README.md); on Flowers102 the last 4 match
    the last 5 and 6 at half the time.
    """
    return 6 if train_images <= SMALL_SET else 4


def _choice(option: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{option}: only {', '.join(allowed)} are supported, found {value!r}")


def parse_hidden(text: str) -> tuple[int, ...]:
    """'256' -> (256,), '512,256' -> (512, 256), '' or 'none' -> ()."""
    text = text.strip().lower()
    if text in ("", "none", "0"):
        return ()
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ConfigError(f"--hidden takes sizes like 256 or 512,256 or none, found {text!r}") from None
