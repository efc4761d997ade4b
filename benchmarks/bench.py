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
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from flower_edge.common.errors import DataError
from flower_edge.export.formats import FORMATS as TABLE
from flower_edge.runtime.predict import softmax

from .config import REFERENCE, BenchConfig
from .photos import read_split


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
    photos, labels, raw, normalized = read_split(config, card, ckpt["config"], progress)
    files = _model_files(config, progress)
    for key, path in files.items():  # a runtime that can abort on a bad file reads it in a child first
        TABLE[key].probe(path)
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
        path = Path(config.checkpoint) if fmt == REFERENCE else files[fmt]
        probs = reference if fmt == REFERENCE else softmax(_logits(runners[fmt], inputs[fmt]))
        row = _row(config, fmt, path, runners[fmt], inputs[fmt], probs, reference, labels, photos[0], (flops, peak))
        rows.append(replace(row, int8_path=paths[fmt]))
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


def _row(config, fmt, path, run, x, probs, reference, labels, photo, compute) -> FormatRow:
    """One format's figures: accuracy and agreement from its answers ``probs``; latency, throughput and
    cold start measured now; achieved GFLOP/s and its share of this machine's peak (``compute``:
    the model's FLOPs per image, the peak in GFLOP/s)."""
    flops, peak = compute
    order = np.argsort(-probs, 1)
    agreement = float((order[:, 0] == reference.argmax(1)).mean())
    median, p95 = _latency(run, x[:1], config.latency_runs)
    cold, rss = _cold_start(fmt, path, photo, config.cold_starts)
    gflops = flops / (median / 1e3) / 1e9
    return FormatRow(
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
    )


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
