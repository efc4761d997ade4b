"""ExportConfig: every choice of an export, built by the CLI and recorded beside the files."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from flower_edge.runtime.errors import ConfigError

CALIB_METHODS = ("minmax", "entropy", "percentile")
MAX_TUNE_SIZE = 20_000
"""Tuning keeps its photos in memory: 0.6 MB each at 224 px."""
MAX_TUNE_EPOCHS = 50
MAX_FLOAT_LAYERS = 1000
"""Lite2 has 56 convolutions; the bound only keeps the number finite."""
MAX_PHOTOS = 20_000
"""Calibration and verification photos are held in memory too (0.6 MB each at 224 px)."""
MAX_ARM64_PHOTOS = 2000
"""An emulated float photo takes seconds: 2,000 is about two hours per float file."""
MIN_OPSET = 17
DEFAULT_OPSET = 18
"""Opset 18: the dynamo exporter's own, run by current onnxruntime and onnxruntime-web."""


@dataclass(frozen=True)
class ExportConfig:
    checkpoint: str
    output: str | None = None
    """Folder for the files; None means the checkpoint's folder."""
    format: str = "onnx"
    """Comma-separated keys of export/formats.py's table, or all."""
    quantize: bool = False
    """Shorthand: also the int8 counterpart of each float format asked for."""
    calib_data: str | None = None
    """Folder of calibration photos; None means the checkpoint's training data."""
    calib_size: int = 200
    calib_method: str | None = None
    """None: searched (minmax first; export/search.py), else this method only."""
    reduce_range: bool = False
    """7-bit weights, for onnxruntime's fast but saturating int8 path on x86 CPUs without VNNI."""
    float_layers: int | None = None
    """None: searched, the convolutions that lose most first (export/search.py); N: the first N
    convolutions stay float in the int8 model (1: the stem)."""
    tune: bool | None = None
    """Fine-tune the int8 graph's weights to reproduce the float logits (export/tune.py): None only
    when no untuned candidate keeps the budget, True always, False never."""
    max_drop: float | None = None
    """Top-1 agreement with the float model that int8 may lose, in points (None: from min_agreement)."""
    tune_size: int = 1000
    """Photos to tune on (the calibration pool's first ones; never a verification photo)."""
    tune_epochs: int = 2
    explain: bool = False
    """Report the int8 error of every layer (export/explain.py)."""
    opset: int = DEFAULT_OPSET
    ort_format: bool = True
    embed_preprocessing: bool = False
    verify: bool = True
    verify_data: str | None = None
    """Photos for the parity check; None means held-out photos of the calibration source."""
    verify_size: int = 200
    """Largest number of verification photos; 0 takes them all."""
    min_agreement: float = 0.99
    """Least int8 top-1 agreement with PyTorch that verification accepts."""
    atol: float = 1e-4
    """Largest |logit difference| accepted for the float ONNX model (TorchScript: atol / 10)."""
    verify_on: str | None = None
    """Also run the phone files on another CPU architecture, emulated ("arm64": export/arm64.py)."""
    arm64_photos: int = 50
    """Verification photos run on arm64 (the first ones; about 3.5 s each for a float Lite0 file)."""
    force: bool = False
    """Write into a folder that holds files no export wrote, replacing those with a model file's name."""

    def __post_init__(self) -> None:
        from .formats import parse_keys

        parse_keys(self.format)
        if self.calib_method is not None and self.calib_method not in CALIB_METHODS:
            raise ConfigError(f"--calib-method must be one of {', '.join(CALIB_METHODS)}, found {self.calib_method!r}")
        if self.opset < MIN_OPSET:
            raise ConfigError(f"--opset must be {MIN_OPSET} or newer, found {self.opset}")
        if not 1 <= self.calib_size <= MAX_PHOTOS:
            raise ConfigError(f"--calib-size must be between 1 and {MAX_PHOTOS:,}, found {self.calib_size}")
        if self.float_layers is not None and not 0 <= self.float_layers <= MAX_FLOAT_LAYERS:
            raise ConfigError(f"--float-layers must be 0 (all int8) to {MAX_FLOAT_LAYERS}, found {self.float_layers}")
        if self.max_drop is not None and not 0.0 <= self.max_drop <= 100.0:  # NaN fails too
            raise ConfigError(f"--max-drop must be between 0 and 100 points, found {self.max_drop}")
        if not 1 <= self.tune_size <= MAX_TUNE_SIZE:
            raise ConfigError(f"--tune-size must be between 1 and {MAX_TUNE_SIZE}, found {self.tune_size}")
        if not 1 <= self.tune_epochs <= MAX_TUNE_EPOCHS:
            raise ConfigError(f"--tune-epochs must be between 1 and {MAX_TUNE_EPOCHS}, found {self.tune_epochs}")
        if not 0 <= self.verify_size <= MAX_PHOTOS:
            raise ConfigError(
                f"--verify-size must be 0 (all, up to {MAX_PHOTOS:,}) to {MAX_PHOTOS:,}, found {self.verify_size}"
            )
        if self.verify_on not in (None, "arm64"):
            raise ConfigError(f"--verify-on takes arm64, found {self.verify_on!r}")
        if self.verify_on and not self.verify:
            raise ConfigError("--verify-on arm64 compares the files with PyTorch: it needs --verify")
        if not 1 <= self.arm64_photos <= MAX_ARM64_PHOTOS:
            raise ConfigError(f"--arm64-photos must be between 1 and {MAX_ARM64_PHOTOS:,}, found {self.arm64_photos}")
        if not 0.0 <= self.min_agreement <= 1.0:
            raise ConfigError(f"--min-agreement must be between 0 and 1, found {self.min_agreement}")

    @property
    def agreement_floor(self) -> float:
        """The least int8 top-1 agreement with PyTorch: 1 - max_drop / 100, or min_agreement."""
        if self.max_drop is None:
            return self.min_agreement
        return round(1.0 - self.max_drop / 100.0, 6)  # 0.2 points -> 0.998, not 0.99799999

    def formats(self):
        """The formats to write (export/formats.py rows) and a note per format ``all`` skipped."""
        from .formats import select

        return select(self.format, quantize=self.quantize, ort=self.ort_format, preprocessing=self.embed_preprocessing)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
