"""TrainConfig: every choice of a training run, built by the CLI and stored in the checkpoint.

Each field is declared once, with its default and help text; flower-train's options are made
from these declarations (``train/cli.py``), so adding a field adds its option.
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Optional

from flower_edge.runtime.errors import ConfigError

OPTIMIZERS = ("adamw", "adam")
SCHEDULERS = ("onecycle", "cosine", "step")
MODES = ("finetune", "freeze")
DEVICES = ("auto", "cpu", "cuda")
CACHE_ENGINES = ("auto", "torch", "onnxruntime")


def option(default: Any, help: str, **cli: Any) -> Any:
    """A TrainConfig field and its flower-train option in one declaration: the default, the --help
    text and, where the command line spells it differently, how (``flags``, ``cli_type`` with
    ``parse`` from the command line's value and ``shown`` back to it; ``argument`` for DATA)."""
    return field(default=default, metadata={"help": help, **cli})


@dataclass(frozen=True)
class TrainConfig:
    """Every choice of a training run. flower-train's options are these fields (train/cli.py)."""

    data: str = option(MISSING, "Folder of photos, 'synthetic' or 'flowers102'.", argument=True)
    output: str = option("flower.pth", "Checkpoint to write (atomically).", flags=("--output", "-o"),
                         cli_type=Path, parse=str)
    arch: str = option("efficientnet_lite0", "Backbone; --list-archs shows them all.")
    weights: str = option("imagenet", "Backbone weights: imagenet, none, or a state-dict file.")
    hidden: tuple[int, ...] = option((), "Hidden layer sizes of the head: 256, 512,256 or none.", cli_type=str,
                                     parse=lambda text: parse_hidden(text),
                                     shown=lambda sizes: ",".join(map(str, sizes)) or "none")
    dropout: float = option(0.2, "Dropout before each linear layer of the head.")
    mode: str = option("finetune", "--freeze trains the head only (the seed projects' way); --finetune also "
                       "trains the last --finetune-blocks blocks.", flags=("--freeze/--finetune",), cli_type=bool,
                       parse=lambda freeze: "freeze" if freeze else "finetune", shown=lambda mode: mode == "freeze")
    finetune_blocks: int | None = option(
        None, "Blocks trained at the end of the backbone with --finetune; 0 trains all of them. Default: 6 for "
        "up to 4,000 training photos, 4 above (the 6th from the end costs as much as the last 4).",
        show_default=False)
    """None picks by the training set's size (``auto_finetune_blocks``)."""
    backbone_lr_scale: float = option(0.5, "Backbone learning rate as a fraction of --lr.")
    bn_momentum: float = option(0.1, "Momentum of the trained blocks' batch-norm running statistics.")
    epochs: int = option(8, "Total epochs (with --resume: the epoch to stop after).")
    batch_size: int = option(64, "Images per optimizer step.")
    lr: float = option(2e-3, "Peak learning rate of the head.")
    optimizer: str = option("adamw", "adamw or adam.")
    weight_decay: float = option(0.01, "Weight decay.")
    scheduler: str = option("onecycle", "onecycle (warm-up then cosine), cosine, or step (StepLR by "
                            "--step-size epochs and --gamma).")
    step_size: int = option(4, "Epochs between learning-rate drops with --scheduler step.")
    gamma: float = option(0.1, "Learning-rate factor at each drop with --scheduler step.")
    label_smoothing: float = option(0.1, "Label smoothing of the cross-entropy loss.")
    image_size: int = option(224, "Side of the square model input (multiple of 32).")
    resize_size: int | None = option(
        None, "Shorter side before the evaluation centre crop (default: --image-size: the shorter side fills "
        "the square, the longer is centre-cropped; the aspect ratio is always kept).")
    """Squashing the whole photo into the square was measured worse on Flowers102 (97.8% against
    98.5% valid, benchmarks/README.md)."""
    interpolation: str = option("bilinear", "Resampling of photos to the input size: bilinear or bicubic.")
    aug_scale: float = option(0.6, "Smallest area fraction kept by the random resized crop.")
    rotation: float = option(0.0, "Largest random rotation of training images, in degrees.")
    color_jitter: float = option(0.0, "Strength of random brightness, contrast and saturation changes.")
    ema: float = option(0.0, "Decay per step of a moving average of the weights that validation sees and the "
                        "checkpoint keeps (e.g. 0.99); 0 turns it off.")
    cache_views: int = option(6, "Passes over the training set cached when the backbone's start is frozen: "
                              "the first plain, the rest augmented; epoch e uses view e mod N.")
    cache_engine: str = option("auto", "What computes the cached frozen features: auto (onnxruntime on CPU, "
                               "PyTorch on GPU), torch, onnxruntime.")
    valid_fraction: float = option(0.15, "Share of photos held out for validation when DATA has no valid/ folder.")
    labels: str | None = option(None, "cat_to_name.json mapping class ids to names (default: "
                                "DATA/cat_to_name.json).", cli_type=Optional[Path],
                                parse=lambda path: str(path) if path else None)
    device: str = option("auto", "auto (CUDA when present), cpu or cuda.")
    amp: bool = option(True, "Mixed precision on CUDA (bf16 where supported).")
    workers: int | None = option(None, "Data-loading processes (default: 0 on CPU, up to 8 on CUDA).")
    seed: int = option(0, "Random seed: the same seed and data give the same model on a CPU.")

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
