"""TrainConfig: every choice of a training run, built by the CLI and stored in the checkpoint.

Each field is declared once, with its default and help text; flower-train's options are made
from these declarations (``train/cli.py``), so adding a field adds its option.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from flower_edge.common.errors import ConfigError
from flower_edge.common.options import option

from .parts import Augmentation, CacheOptions, OptimizerOptions, Schedule

OPTIMIZERS = ("adamw", "adam")
SCHEDULERS = ("onecycle", "cosine", "step")
MODES = ("finetune", "freeze")
DEVICES = ("auto", "cpu", "cuda")
CACHE_ENGINES = ("auto", "torch", "onnxruntime")
LIMITS = {"epochs": 10_000, "batch_size": 4096, "image_size": 1024, "cache_views": 50, "step_size": 10_000}
"""The most each count option may ask for: every one of them is memory or time."""
MAX_HIDDEN = 65_536
MAX_RESIZE = 4096
"""The model card's largest side (runtime/card_fields.py MAX_SIDE)."""


@dataclass(frozen=True)
class TrainConfig:
    """Every choice of a training run. flower-train's options are these fields (train/cli.py)."""

    data: str = option(MISSING, "Folder of photos, 'synthetic' or 'flowers102'.", argument=True)
    output: str = option(
        "flower.pth", "Checkpoint to write (atomically).", flags=("--output", "-o"), cli_type=Path, parse=str
    )
    arch: str = option("efficientnet_lite0", "Backbone; --list-archs shows them all.")
    weights: str = option("imagenet", "Backbone weights: imagenet, none, or a state-dict file.")
    hidden: tuple[int, ...] = option(
        (),
        "Hidden layer sizes of the head: 256, 512,256 or none.",
        cli_type=str,
        parse=lambda text: parse_hidden(text),
        shown=lambda sizes: ",".join(map(str, sizes)) or "none",
    )
    dropout: float = option(0.2, "Dropout before each linear layer of the head.")
    mode: str = option(
        "finetune",
        "--freeze trains the head only (the seed projects' way); --finetune also "
        "trains the last --finetune-blocks blocks.",
        flags=("--freeze/--finetune",),
        cli_type=bool,
        parse=lambda freeze: "freeze" if freeze else "finetune",
        shown=lambda mode: mode == "freeze",
    )
    finetune_blocks: int | None = option(
        None,
        "Blocks trained at the end of the backbone with --finetune; 0 trains all of them. Default: 6 for "
        "up to 8,000 training photos (cross-validated on Flowers102: +0.39 points over 4), 4 above (the 6th "
        "from the end costs as much as the last 4).",
        show_default=False,
    )
    """None picks by the training set's size (``auto_finetune_blocks``)."""
    backbone_lr_scale: float = option(0.5, "Backbone learning rate as a fraction of --lr (0 to 10).")
    bn_momentum: float = option(0.1, "Momentum of the trained blocks' batch-norm running statistics, in [0, 1].")
    epochs: int = option(8, "Total epochs, up to 10,000 (with --resume: the epoch to stop after).")
    batch_size: int = option(64, "Images per optimizer step (1 to 4,096).")
    lr: float = option(
        2e-3,
        "Peak learning rate of the head. Training that reaches a loss that is not a finite number stops with one line and keeps the last finite checkpoint.",
    )
    optimizer: str = option("adamw", "adamw or adam.")
    weight_decay: float = option(0.01, "Weight decay, 0 to 1.")
    scheduler: str = option(
        "onecycle", "onecycle (warm-up then cosine), cosine, or step (StepLR by --step-size epochs and --gamma)."
    )
    step_size: int = option(4, "Epochs between learning-rate drops with --scheduler step.")
    gamma: float = option(0.1, "Learning-rate factor at each drop with --scheduler step, in (0, 1].")
    label_smoothing: float = option(0.1, "Label smoothing of the cross-entropy loss, in [0, 1).")
    image_size: int = option(224, "Side of the square model input (a multiple of 32, up to 1,024).")
    resize_size: int | None = option(
        None,
        "Shorter side before the evaluation centre crop, up to 4,096 (default: --image-size: the shorter "
        "side fills the square, the longer is centre-cropped; the aspect ratio is always kept).",
    )
    """Squashing the whole photo into the square was measured worse on Flowers102 (97.8% against
    98.5% valid, benchmarks/README.md)."""
    interpolation: str = option("bilinear", "Resampling of photos to the input size: bilinear or bicubic.")
    aug_scale: float = option(0.6, "Smallest area fraction kept by the random resized crop.")
    rotation: float = option(0.0, "Largest random rotation of training images, in degrees (0 to 180).")
    color_jitter: float = option(0.0, "Strength of random brightness, contrast and saturation changes (0 to 1).")
    ema: float = option(
        0.0,
        "Decay per step of a moving average of the weights that validation sees and the "
        "checkpoint keeps (e.g. 0.99); 0 turns it off.",
    )
    cache_views: int = option(
        6,
        "Passes over the training set cached when the backbone's start is frozen (1 "
        "to 50): the first plain, the rest augmented; epoch e uses view e mod N.",
    )
    cache_memory: float | None = option(
        None,
        "Gigabytes of memory the feature cache and the decoded photos may take (0 to 1,024); a larger cache "
        "spills to fp16 files under FLOWER_EDGE_CACHE (~/.cache/flower-edge), or is not kept when the disk has no "
        "room either. Default: 3, or half the memory available at the start if less.",
        show_default=False,
    )
    cache_engine: str = option(
        "auto",
        "What computes the cached frozen features: auto (onnxruntime on CPU, PyTorch on GPU), torch, onnxruntime.",
    )
    valid_fraction: float = option(0.15, "Share of photos held out for validation when DATA has no valid/ folder.")
    labels: str | None = option(
        None,
        "cat_to_name.json mapping class ids to names (default: DATA/cat_to_name.json).",
        cli_type=Path | None,
        parse=lambda path: str(path) if path else None,
    )
    device: str = option("auto", "auto (CUDA when present), cpu or cuda.")
    amp: bool = option(True, "Mixed precision on CUDA (bf16 where supported).")
    workers: int | None = option(
        None, "Data-loading processes, 0 to the number of cores (default: 0 on CPU, up to 8 on CUDA)."
    )
    seed: int = option(0, "Random seed (0 to 2^32-1): the same seed and data give the same model on a CPU.")
    follow_symlinks: bool = option(
        False,
        "Follow symbolic links under DATA that point outside it (skipped and counted by default).",
        flags=("--follow-symlinks",),
    )

    def __post_init__(self) -> None:
        _choice("--optimizer", self.optimizer, OPTIMIZERS)
        _choice("--scheduler", self.scheduler, SCHEDULERS)
        _choice("mode", self.mode, MODES)
        _choice("--device", self.device, DEVICES)
        _choice("--cache-engine", self.cache_engine, CACHE_ENGINES)
        _choice("--interpolation", self.interpolation, ("bilinear", "bicubic"))
        for name, most in LIMITS.items():
            if not 1 <= getattr(self, name) <= most:
                raise ConfigError(
                    f"--{name.replace('_', '-')} must be between 1 and {most:,}, found {getattr(self, name)}"
                )
        for name in (
            "lr",
            "dropout",
            "weight_decay",
            "gamma",
            "label_smoothing",
            "backbone_lr_scale",
            "bn_momentum",
            "aug_scale",
            "rotation",
            "color_jitter",
            "ema",
            "valid_fraction",
        ):
            if not math.isfinite(getattr(self, name)):
                raise ConfigError(f"--{name.replace('_', '-')} must be a finite number, found {getattr(self, name)}")
        self._check_ranges()
        self._check_shapes()

    def _check_ranges(self) -> None:
        if self.lr <= 0:
            raise ConfigError(f"--lr must be positive, found {self.lr}")
        _within("--weight-decay", self.weight_decay, 0, 1)
        _within("--label-smoothing", self.label_smoothing, 0, 1, top_open=True)
        _within("--gamma", self.gamma, 0, 1, bottom_open=True)
        _within("--bn-momentum", self.bn_momentum, 0, 1)
        if self.cache_memory is not None:
            if not math.isfinite(self.cache_memory):
                raise ConfigError(f"--cache-memory must be a finite number, found {self.cache_memory}")
            _within("--cache-memory", self.cache_memory, 0, 1024)
        _within("--backbone-lr-scale", self.backbone_lr_scale, 0, 10)
        _within("--rotation", self.rotation, 0, 180)
        _within("--color-jitter", self.color_jitter, 0, 1)
        _within("--valid-fraction", self.valid_fraction, 0, 1, bottom_open=True, top_open=True)
        if self.workers is not None and self.workers < 0:
            raise ConfigError(f"--workers must be 0 (load in the main process) or more, found {self.workers}")
        if not 0 <= self.seed < 2**32:
            raise ConfigError(f"--seed must be between 0 and 2^32-1, found {self.seed}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"--dropout must be in [0, 1), found {self.dropout}")
        if not 0 <= self.ema < 1:
            raise ConfigError(f"--ema must be in [0, 1), found {self.ema}")
        if not 0 < self.aug_scale <= 1:
            raise ConfigError(f"--aug-scale must be in (0, 1], found {self.aug_scale}")

    def _check_shapes(self) -> None:
        if self.hidden and max(self.hidden) > MAX_HIDDEN:
            raise ConfigError(f"--hidden sizes must be at most {MAX_HIDDEN:,}, found {self.hidden}")
        if self.resize_size is not None and self.resize_size > MAX_RESIZE:
            raise ConfigError(f"--resize-size must be at most {MAX_RESIZE:,}, found {self.resize_size}")
        if self.finetune_blocks is not None and self.finetune_blocks < 0:
            raise ConfigError(f"--finetune-blocks must be 0 (all) or more, found {self.finetune_blocks}")
        if any(h < 1 for h in self.hidden):
            raise ConfigError(f"--hidden sizes must be positive, found {self.hidden}")
        if self.image_size % 32:
            raise ConfigError(f"--image-size must be a multiple of 32, found {self.image_size}")
        if self.resize_size is not None and self.resize_size < self.image_size:
            raise ConfigError(f"--resize-size ({self.resize_size}) must be at least --image-size ({self.image_size})")

    def resolved(self, train_images: int) -> TrainConfig:
        """This config with ``finetune_blocks`` settled for a training split of this many photos."""
        if self.finetune_blocks is not None:
            return self
        return replace(self, finetune_blocks=auto_finetune_blocks(train_images))

    def augmentation(self) -> Augmentation:
        return Augmentation((self.aug_scale, 1.0), self.rotation, self.color_jitter)

    def optimizer_options(self) -> OptimizerOptions:
        return OptimizerOptions(self.optimizer, self.lr, self.backbone_lr_scale, self.weight_decay)

    def schedule(self) -> Schedule:
        return Schedule(self.scheduler, self.epochs, self.step_size, self.gamma)

    def cache_options(self) -> CacheOptions:
        return CacheOptions(
            self.cache_views,
            self.cache_memory,
            self.cache_engine,
            self.batch_size,
            self.seed,
            self.amp,
            self.augmentation(),
        )

    @property
    def eval_resize(self) -> int:
        return self.resize_size or self.image_size

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if "hidden" in values:
            values["hidden"] = tuple(values["hidden"])
        return cls(**values)

    def with_overrides(self, **overrides: Any) -> TrainConfig:
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


SMALL_SET = 8000
"""Training photos up to which the default fine-tunes the last 6 blocks instead of 4."""


def auto_finetune_blocks(train_images: int) -> int:
    """The default depth of fine-tuning: 6 blocks up to ``SMALL_SET`` photos, 4 above.

    Decided by cross-validation (train/cv.py), not on one split: on Flowers102 (train + valid, 5
    folds, the same folds for both) the last 6 blocks answered 98.37% of the photos they never saw
    against 97.98% for the last 4: +0.39 points, 95% interval of the paired difference
    +0.01 to +0.78, McNemar p = 0.006; one split's valid figure had called them equal. The 6th block
    from the end (EfficientNet-Lite's stride-2 block at 14x14) costs about as much as the last four
    together (an epoch of 6,552 photos: 35 s against 21 s on a 2-core AMD EPYC), so above 8,000
    photos, where an epoch would pass 45 s on 2 cores, the default trains 4. flowers5's soft 128-px
    photos need 6 too (78.9% against 78.2% valid, benchmarks/README.md).
    """
    return 6 if train_images <= SMALL_SET else 4


def _within(
    option: str, value: float, low: float, high: float, bottom_open: bool = False, top_open: bool = False
) -> None:
    if value < low or value > high or (bottom_open and value == low) or (top_open and value == high):
        interval = f"{'(' if bottom_open else '['}{low:g}, {high:g}{')' if top_open else ']'}"
        raise ConfigError(f"{option} must be in {interval}, found {value}")


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
