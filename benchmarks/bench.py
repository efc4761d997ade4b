"""flower-bench's library call: every format of one checkpoint, measured side by side.

    result = run_bench(BenchConfig("runs/flower.pth", data="flowers/", split="valid"))
    print(markdown_table(result))             # flower_edge.bench.report

Per format: file size; top-1 and top-5 accuracy on the split; top-1 agreement with the eager
PyTorch fp32 model and the largest |probability difference|; batch-1 latency (median and p95 after
warm-up); batch-32 throughput; cold start (a fresh process to its first prediction) and its peak
memory; and achieved GFLOP/s (the model's FLOPs per image over its time) as a share of this
machine's measured fp32 matrix-multiply peak.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field
from pathlib import Path

import numpy as np

from flower_edge.common.errors import ConfigError, DataError
from flower_edge.common.options import option, path_or_none
from flower_edge.export.formats import FORMATS as TABLE
from flower_edge.runtime.image import is_image_file
from flower_edge.runtime.predict import softmax
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


@dataclass
class FormatRow:
    format: str
    file: str
    size_mb: float
    top1: float
    top5: float
    agreement: float
    max_prob_diff: float
    latency_ms_median: float
    latency_ms_p95: float
    throughput_ips: float
    cold_start_s: float
    cold_start_peak_rss_mb: float
    gflops_per_s: float
    fraction_of_peak: float
    passed: bool
    int8_path: str = ""
    """For ONNX files: onnxruntime's int8 kernel path on this CPU (exact or fast; runtime/cpu.py)."""


@dataclass
class BenchResult:
    rows: list[FormatRow]
    machine: dict
    model: dict
    config: dict
    threshold: float
    failed: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "machine": self.machine,
            "model": self.model,
            "config": self.config,
            "threshold": self.threshold,
            "failed": self.failed,
            "rows": [asdict(r) for r in self.rows],
        }


def run_bench(config: BenchConfig, progress: Callable[[str], None] = lambda message: None) -> BenchResult:
    import torch

    from flower_edge.train.checkpoint import load_model

    torch.set_num_threads(config.threads)
    from .report import check_out

    check_out(config)  # before minutes of work: --out is no input and no folder of the user's
    model, card, ckpt = load_model(config.checkpoint)
    trained = ckpt["config"]
    photos, labels, where = _split(
        Path(config.data), config.split, card.class_to_idx, trained.valid_fraction, trained.follow_symlinks
    )
    progress(f"{len(photos)} photos in {where}")
    files = _model_files(config, progress)
    for key, path in files.items():  # a runtime that can abort on a bad file reads it in a child first
        TABLE[key].probe(path)

    from flower_edge.export.images import read_photos
    from flower_edge.runtime.image import normalize, pixels

    readable, broken = read_photos(photos, lambda img: pixels(img, card), keep_paths=True)
    for line in broken:  # a broken photo is reported and left out; the rest are measured
        progress(f"skipped broken image {line}")
    if not readable:
        raise DataError(f"{where}: none of its photos could be read")
    labels = np.array([y for p, y in zip(photos, labels) if p in readable])
    photos = list(readable)
    raw = np.stack(list(readable.values()))  # (N, H, W, 3) uint8, resized and cropped
    normalized = np.stack([normalize(p, card) for p in raw])  # (N, 3, H, W)
    inputs = {f: raw if f in TABLE and TABLE[f].takes_pixels else normalized for f in config.formats}
    runners = {f: _runner(f, model, files.get(f), config.threads) for f in config.formats}
    runners.setdefault(REFERENCE, _runner(REFERENCE, model, None, config.threads))
    paths = {f: getattr(run, "int8_path", "") for f, run in runners.items()}
    reference = softmax(_logits(runners[REFERENCE], normalized))
    flops = _flops_per_image(model, card)
    peak = _matmul_peak(config.threads)
    rows = []
    for fmt in config.formats:
        progress(f"{fmt}: accuracy, latency, throughput, cold start")
        run, x = runners[fmt], inputs[fmt]
        probs = reference if fmt == REFERENCE else softmax(_logits(run, x))
        order = np.argsort(-probs, 1)
        agreement = float((order[:, 0] == reference.argmax(1)).mean())
        median, p95 = _latency(run, x[:1], config.latency_runs)
        path = Path(config.checkpoint) if fmt == REFERENCE else files[fmt]
        cold, rss = _cold_start(fmt, path, photos[0], config.cold_starts)
        gflops = flops / (median / 1e3) / 1e9
        rows.append(
            FormatRow(
                format=fmt,
                file=str(path),
                size_mb=path.stat().st_size / 1e6,
                top1=float((order[:, 0] == labels).mean()),
                top5=float((order[:, :5] == labels[:, None]).any(1).mean()),
                agreement=agreement,
                max_prob_diff=float(np.abs(probs - reference).max()),
                latency_ms_median=median,
                latency_ms_p95=p95,
                throughput_ips=_throughput(run, x, config.throughput_batches),
                cold_start_s=cold,
                cold_start_peak_rss_mb=rss,
                gflops_per_s=gflops,
                fraction_of_peak=gflops / peak,
                passed=fmt == REFERENCE or agreement >= config.fail_under_agreement,
                int8_path=paths[fmt],
            )
        )
    machine = _machine(config.threads, peak)
    model_info = {
        "arch": card.arch,
        "classes": card.num_classes,
        "input": list(card.input_size),
        "gflops_per_image": flops / 1e9,
        "photos": len(photos),
        "split": config.split,
    }
    failed = [r.format for r in rows if not r.passed]
    return BenchResult(
        rows,
        machine,
        model_info,
        {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()},
        config.fail_under_agreement,
        failed,
    )


def _split(
    root: Path, split: str, class_to_idx: dict[str, int], valid_fraction: float, follow_symlinks: bool
) -> tuple[list[Path], np.ndarray, str]:
    """The photos of ``split`` with their labels, and where they came from: ``root/split`` in the
    classic layout, or, for a folder of class folders, the split flower-train made of it (the same
    photos, by file-name hash at the checkpoint's --valid-fraction: train/data.py)."""
    folder = root / split
    if folder.is_dir():
        photos = sorted(p for p in folder.rglob("*") if is_image_file(p) and p.parent.name in class_to_idx)
        where = str(folder)
    elif (root / "train").is_dir() or not root.is_dir():
        raise DataError(f"{folder}: no such folder (expected {root}/{split}/<class-id>/*.jpg)")
    else:
        from flower_edge.train.data import split_paths

        splits = split_paths(str(root), valid_fraction=valid_fraction, follow_symlinks=follow_symlinks)
        if split not in splits:
            raise DataError(f"{root}: a folder of class folders has no {split} split; flower-train held out valid")
        photos = [p for p in splits[split] if p.parent.name in class_to_idx]
        where = f"{root} (flower-train's {split} split of it, {valid_fraction:.0%} by file-name hash)"
    if not photos:
        raise DataError(
            f"{where}: no photos in class folders the model knows ({', '.join(list(class_to_idx)[:5])}, ...)"
        )
    return photos, np.array([class_to_idx[p.parent.name] for p in photos]), where


def _model_files(config: BenchConfig, progress) -> dict[str, Path]:
    wanted = [f for f in config.formats if f in TABLE]
    if config.models:
        from flower_edge.export.manifest import exported_files

        listed = exported_files(config.models)  # the files that belong together, each checked
        absent = [f for f in wanted if f not in listed]
        if absent:
            raise DataError(
                f"{config.models}: its export has no {absent[0]} (flower-export --format {absent[0]} writes it)"
            )
        return {f: listed[f] for f in wanted}
    if wanted:
        from flower_edge.export import ExportConfig, export

        folder = Path(config.out) / "export"
        progress(f"exporting {', '.join(wanted)} into {folder}")
        export(
            ExportConfig(
                checkpoint=config.checkpoint,
                output=str(folder),
                format=",".join(wanted),
                calib_data=config.data,
                calib_size=config.calib_size,
                ort_format=False,
                verify=False,
                embed_preprocessing="onnx-preproc" in wanted,
            )
        )
    files = {f: folder / TABLE[f].file for f in wanted}
    missing = [(f, p) for f, p in files.items() if not p.is_file()]
    if missing:
        f, p = missing[0]
        raise DataError(f"{p}: no such model file (flower-export --format {f} writes it)")
    return files


def _runner(fmt: str, model, path: Path | None, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    if fmt != REFERENCE:
        return TABLE[fmt].open(path, threads)
    import torch

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(x)).numpy()

    return run


def _logits(run, x: np.ndarray) -> np.ndarray:
    return np.concatenate([run(x[i : i + 32]) for i in range(0, len(x), 32)])


def _latency(run, one: np.ndarray, runs: int) -> tuple[float, float]:
    times = _times(run, one, warmup=max(5, runs // 10), runs=runs)
    return 1e3 * float(np.median(times)), 1e3 * float(np.percentile(times, 95))


def _throughput(run, x: np.ndarray, batches: int) -> float:
    batch = np.resize(x, (32, *x.shape[1:])) if len(x) < 32 else x[:32]  # batch-1 formats loop over it
    return 32 / float(np.median(_times(run, batch, warmup=1, runs=batches)))


def _times(run, x: np.ndarray, warmup: int, runs: int) -> list[float]:
    """Seconds of each of ``runs`` calls of ``run(x)``, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        run(x)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run(x)
        times.append(time.perf_counter() - start)
    return times


def _cold_start(fmt: str, path: Path, image: Path, repeats: int) -> tuple[float, float]:
    cmd = [sys.executable, "-m", "flower_edge.bench.coldstart", fmt, str(path), str(image)]
    times, peaks = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise DataError(f"{path}: the cold start of {fmt} failed ({done.stderr.strip()[-300:]})")
        peaks.append(float(done.stdout.split()[-1]))  # the child's own VmHWM
    return float(np.median(times)), float(np.median(peaks))


def _flops_per_image(model, card) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, *card.input_size))
    return float(counter.get_total_flops())


def _matmul_peak(threads: int, n: int = 1024) -> float:
    """Best fp32 GFLOP/s of an n x n matrix multiply in PyTorch (its BLAS) on ``threads`` threads."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(10):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def _machine(threads: int, peak: float) -> dict:
    import onnxruntime
    import torch

    from flower_edge.runtime.cpu import describe_machine

    return {
        **describe_machine(),
        "threads": threads,
        "matmul_peak_gflops": peak,
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
    }
