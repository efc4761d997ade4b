"""ExportConfig: every choice of an export, built by the CLI and recorded beside the files."""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass
from pathlib import Path
from typing import Any

from flower_edge.common.errors import ConfigError
from flower_edge.common.options import option, path_or_none

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
class TuneOptions:
    """Distillation of the int8 graph into the float answers (export/tune.py)."""

    when: bool | None = None
    """None: only when no untuned candidate keeps the budget; True: always; False: never."""
    epochs: int = 2
    photos: int = 1000


@dataclass(frozen=True)
class Int8Options:
    """What the int8 search (export/search.py) and the int8 writers may choose from."""

    floor: float = 0.99
    """The least top-1 agreement with PyTorch on the held-out photos."""
    method: str | None = None
    """A calibration method, or None: searched, minmax first."""
    reduce_range: bool = False
    float_layers: int | None = None
    """None: searched; N: the first N convolutions stay float."""
    tune: TuneOptions = TuneOptions()
    explain: bool = False
    """Report each layer's int8 error (export/explain.py)."""


@dataclass(frozen=True)
class WriteOptions:
    """Everything a format's writer reads from the export's options."""

    opset: int = DEFAULT_OPSET
    int8: Int8Options = Int8Options()


@dataclass(frozen=True)
class CheckOptions:
    """What verification holds each file to: int8 files to top-1 agreement, float files to the
    largest |logit difference| (times the row's scale: TorchScript runs PyTorch's own kernels)."""

    floor: float = 0.99
    atol: float = 1e-4

    def compare(self, name: str, fmt, expected, actual):
        """export/verify.py Parity of ``actual`` against ``expected`` for a file of format ``fmt``."""
        from .verify import compare

        if fmt.int8:
            return compare(name, expected, actual, min_agreement=self.floor)
        return compare(name, expected, actual, atol=self.atol * fmt.atol_scale)


@dataclass(frozen=True)
class ExportConfig:
    """Every choice of an export; flower-export's options are these fields (common/options.py)."""

    checkpoint: str = option(
        MISSING, "Checkpoint written by flower-train.", argument=True, required=True, cli_type=Path, parse=str
    )
    output: str | None = option(
        None,
        "Output folder (default: the checkpoint's folder). A folder that holds files no export wrote is refused "
        "(--force), and so is one inside the photos the export reads. The files of an earlier export there are "
        "replaced, and those this export does not write are removed: the folder holds one export, which "
        "export.json lists.",
        flags=("--output", "-o"),
        cli_type=Path | None,
        parse=path_or_none,
    )
    format: str = option("onnx", "What to write: comma-separated format keys (above) or all.", flags=("--format", "-f"))
    quantize: bool = option(
        False,
        "Also write the int8 counterpart of each float format asked for (onnx -> onnx-int8, tflite -> "
        "tflite-int8, pte -> pte-int8), all calibrated on the same real photos.",
        flags=("--quantize",),
    )
    calib_data: str | None = option(
        None,
        "Folder of calibration photos (class folders or loose images). A classic layout calibrates on train/ "
        "and verifies on valid/. Default: the checkpoint's training data, when it is still on this machine.",
        cli_type=Path | None,
        parse=path_or_none,
    )
    calib_size: int = option(200, f"Photos to calibrate on (1 to {MAX_PHOTOS:,}).")
    calib_method: str | None = option(
        None,
        f"How activation ranges are chosen: {', '.join(CALIB_METHODS)}. Default: searched, minmax first, the "
        "others only when float layers do not keep the budget.",
        show_default=False,
    )
    reduce_range: bool = option(
        False,
        "7-bit int8 weights. The default 8-bit weights are the more precise model, run by onnxruntime's fast "
        "kernels on phones, browsers and VNNI CPUs, and by its slower exact path on x86 CPUs without VNNI (AVX2 "
        "only), whose fast kernel would saturate. 7-bit weights cannot saturate, so there they take the fast "
        "kernels too, at a loss of precision that --tune recovers.",
        flags=("--reduce-range/--full-range",),
    )
    float_layers: int | None = option(
        None,
        "Keep the first N convolutions of the int8 model float, instead of searching. Default: searched, from 0 "
        "(everything int8, fastest) up to 16, the convolutions whose int8 error is largest first (--explain's "
        "figures) and the first ones of the network, until the budget holds. tflite-int8 and pte-int8 keep the "
        "same convolutions float, and their classifier too.",
        show_default=False,
    )
    tune: bool | None = option(
        None,
        "Fine-tune the int8 ONNX model to answer like the float one: the quantized graph's weights are trained "
        "by distillation from the PyTorch model on --tune-size training photos and their mirror images (no "
        "labels needed), keeping onnxruntime's scales. Default: only when no untuned candidate keeps the budget "
        "(models unsure of many photos); --tune always, --no-tune never. Minutes on a CPU (about 4 for Lite0, "
        "1000 photos, 2 epochs, 2 cores); every layer trains, the stem included.",
        flags=("--tune/--no-tune",),
        show_default=False,
    )
    max_drop: float | None = option(
        None,
        "The int8 budget: top-1 agreement with PyTorch that int8 may lose, in points (0.2: at least 99.8% of "
        "the held-out photos answered alike). Default: from --min-agreement (0.99: 1 point).",
        show_default=False,
    )
    tune_size: int = option(
        1000, f"Photos to tune on (1 to {MAX_TUNE_SIZE:,}): the calibration source's, never a verification photo."
    )
    tune_epochs: int = option(2, f"Passes over the tuning photos (1 to {MAX_TUNE_EPOCHS}).")
    explain: bool = option(
        False,
        "Print where int8 loses: the quantization error (SQNR) of every layer, from onnxruntime's "
        "qdq_loss_debug, on the calibration photos; also in export.json.",
        flags=("--explain",),
    )
    opset: int = option(
        DEFAULT_OPSET,
        f"ONNX opset ({MIN_OPSET} or newer; {DEFAULT_OPSET} runs on current onnxruntime and onnxruntime-web).",
    )
    ort_format: bool = option(
        True,
        "Also write the .ort copies (ort, ort-int8) of the ONNX files, for ONNX Runtime Mobile.",
        flags=("--ort/--no-ort",),
    )
    embed_preprocessing: bool = option(
        False,
        "Also write model.preproc.onnx, which takes uint8 RGB pixels (batch, height, width, 3) already resized "
        "and cropped, and normalizes inside the graph: a phone passes raw pixels.",
    )
    verify: bool = option(
        True,
        "Check every file against PyTorch after writing (recommended).",
        flags=("--verify/--no-verify",),
    )
    verify_data: str | None = option(
        None,
        "Folder of photos to verify on (default: the held-out photos of the calibration source; never a "
        "calibration photo).",
        cli_type=Path | None,
        parse=path_or_none,
    )
    verify_size: int = option(200, f"Most photos to verify on; 0 takes them all, up to {MAX_PHOTOS:,}.")
    min_agreement: float = option(
        0.99,
        "Least share of int8 top-1 answers that must equal PyTorch's (--max-drop, when given, sets it).",
    )
    atol: float = option(1e-4, "Largest |logit difference| allowed for float files (TorchScript: a tenth of it).")
    verify_on: str | None = option(
        None,
        "Also run every phone file (ONNX, .ort, .tflite; float and int8) on arm64 kernels, in an emulated "
        "arm64 Python (QEMU, neoverse-n1), against PyTorch as on this machine: rows '(arm64)' in the parity "
        "table, each held to the same requirement, with its agreement with this machine's run. Needs QEMU 8+ "
        "and mmdebstrap; the environment is built once (under a minute, 265 MB, from Debian's mirror and PyPI) "
        "and cached.",
        show_default=False,
    )
    arm64_photos: int = option(
        50,
        f"Verification photos run on arm64 (1 to {MAX_ARM64_PHOTOS:,}): emulated, a float Lite0 file takes "
        "about 3.5 s a photo, an int8 one 0.7 s.",
    )
    force: bool = option(
        False,
        "Write into an --output folder that holds other files, replacing any of them named like a file the "
        "export writes (model.onnx, card.json, ...). The others are never touched.",
        flags=("--force",),
    )

    def __post_init__(self) -> None:
        from .selection import parse_keys

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

    def write_options(self) -> WriteOptions:
        """What the writers read (export/formats.py WriteJob): built once, typed."""
        tune = TuneOptions(self.tune, self.tune_epochs, self.tune_size)
        int8 = Int8Options(
            self.agreement_floor, self.calib_method, self.reduce_range, self.float_layers, tune, self.explain
        )
        return WriteOptions(self.opset, int8)

    def check_options(self) -> CheckOptions:
        """What verification holds each file to."""
        return CheckOptions(self.agreement_floor, self.atol)

    def formats(self):
        """The formats to write (export/formats.py rows) and a note per format ``all`` skipped."""
        from .selection import select

        return select(self.format, quantize=self.quantize, ort=self.ort_format, preprocessing=self.embed_preprocessing)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
