"""BenchConfig: every choice of a flower-bench run; its options are these fields (common/options.py).

BenchConfig("runs/flower.pth", "flowers/", formats=("torch", "onnx", "onnx-int8"), threads=2)
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass
from pathlib import Path

from flower_edge.common.errors import ConfigError
from flower_edge.common.options import option, path_or_none
from flower_edge.export.formats import FORMATS as TABLE
from flower_edge.runtime.session import check_threads

REFERENCE = "torch"
"""The eager PyTorch checkpoint: the row every format is compared with; the rest are export/formats.py's."""
FORMATS = (REFERENCE, *TABLE)
MAX_RUNS = {"latency_runs": 10_000, "throughput_batches": 1_000, "cold_starts": 100}


def default_formats() -> tuple[str, ...]:
    """The reference and every format of ``--format all`` that this install can write and run."""
    return (
        REFERENCE,
        *(f.key for f in TABLE.values() if f.in_all and f.missing("write") is None and f.missing("run") is None),
    )


def parse_formats(text: str) -> tuple[str, ...]:
    """--formats' value: "all" (:func:`default_formats`) or comma-separated keys."""
    if text.strip() == "all":
        return default_formats()
    return tuple(f.strip() for f in text.split(",") if f.strip())


@dataclass(frozen=True)
class BenchConfig:
    """Every choice of a bench run; flower-bench's options are these fields (common/options.py)."""

    checkpoint: str = option(
        MISSING, "Checkpoint written by flower-train.", argument=True, required=True, cli_type=Path, parse=str
    )
    data: str = option(
        MISSING,
        "The photos, as flower-train takes them: the classic layout (DATA/valid/<class-id>/*.jpg, ...) or a "
        "folder of class folders, whose valid split is the one flower-train held out (by file-name hash at the "
        "checkpoint's --valid-fraction).",
        required=True,
        cli_type=Path,
        parse=str,
        show_default=False,
    )
    split: str = option("valid", "Split to measure: valid or test.")
    formats: tuple[str, ...] = option(
        default_formats,
        f"Comma-separated formats: {', '.join(FORMATS)}; all: torch and every format this install can write and run.",
        factory=True,
        cli_type=str,
        parse=parse_formats,
        shown=lambda keys: "all",
    )
    threads: int = option(2, "Threads for every format (torch and onnxruntime alike), 1 to the number of cores.")
    out: str = option(
        "runs/bench",
        "Folder for bench.md, bench.json, bench.png (and the export, without --models): a new folder or an "
        "earlier bench's; one holding other files needs --force, and one inside the checkpoint's, the photos' "
        "or the models' folder is refused.",
        cli_type=Path,
        parse=str,
    )
    models: str | None = option(
        None,
        "A flower-export folder to measure as it is (default: export into OUT/export first).",
        cli_type=Path | None,
        parse=path_or_none,
    )
    fail_under_agreement: float = option(0.99, "Least top-1 agreement with PyTorch each format must reach.")
    latency_runs: int = option(50, f"Timed batch-1 runs per format (1 to {MAX_RUNS['latency_runs']:,}).")
    throughput_batches: int = option(5, f"Timed batch-32 runs per format (1 to {MAX_RUNS['throughput_batches']:,}).")
    cold_starts: int = option(3, f"Fresh processes timed per format, median (1 to {MAX_RUNS['cold_starts']}).")
    calib_size: int = option(200, "Photos to calibrate the int8 formats on, when flower-bench exports them.")
    force: bool = option(
        False,
        "Write into an --out folder that holds files flower-bench did not write (files named like its own are "
        "replaced).",
        flags=("--force",),
    )

    def __post_init__(self) -> None:
        unknown = [f for f in self.formats if f not in FORMATS]
        if unknown or not self.formats:
            raise ConfigError(
                f"--formats takes a comma-separated list of {', '.join(FORMATS)}, found {','.join(self.formats)!r}"
            )
        for key in self.formats:
            problem = TABLE[key].missing("run") if key in TABLE else None
            if problem:
                raise ConfigError(problem)
        if self.split not in ("valid", "test", "train"):
            raise ConfigError(f"--split must be valid or test, found {self.split!r}")
        if not 0.0 <= self.fail_under_agreement <= 1.0:
            raise ConfigError(f"--fail-under-agreement must be between 0 and 1, found {self.fail_under_agreement}")
        check_threads(self.threads)
        for name in ("latency_runs", "throughput_batches", "cold_starts"):
            value, most = getattr(self, name), MAX_RUNS[name]
            if not 1 <= value <= most:
                raise ConfigError(f"--{name.replace('_', '-')} must be between 1 and {most}, found {value}")
