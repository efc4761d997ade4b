"""flower-bench's outputs: the Markdown table, the JSON record and the accuracy-latency plot.

paths = write_outputs(run_bench(config), Path("runs/bench"))   # bench.md, bench.json, bench.png
"""

from __future__ import annotations

from pathlib import Path

from .bench import BenchConfig, BenchResult


def markdown_table(result: BenchResult) -> str:
    lines = [
        "| format | size MB | top-1 | top-5 | agreement | max \\|prob diff\\| | batch-1 ms (median / p95) | "
        "batch-32 img/s | cold start s | peak RSS MB | GFLOP/s | of peak |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in result.rows:
        flag = "" if r.passed else " **FAIL**"
        lines.append(
            f"| {r.format} | {r.size_mb:.2f} | {r.top1:.2%} | {r.top5:.2%} | {r.agreement:.2%}{flag} | "
            f"{r.max_prob_diff:.1e} | {r.latency_ms_median:.2f} / {r.latency_ms_p95:.2f} | {r.throughput_ips:.0f} | "
            f"{r.cold_start_s:.2f} | {r.cold_start_peak_rss_mb:.0f} | {r.gflops_per_s:.1f} | {r.fraction_of_peak:.0%} |"
        )
    m = result.machine
    int8 = m.get("int8") or {}
    ran = sorted({r.int8_path for r in result.rows if r.int8_path and "int8" in r.format})
    features = (
        ", ".join(
            f
            for f, on in (
                ("AVX2", int8.get("avx2")),
                ("VNNI", int8.get("vnni")),
                ("Arm dot product", int8.get("arm_dot")),
            )
            if on
        )
        or "none"
    )
    lines.append("")
    lines.append(
        f"{result.model['arch']}, {result.model['gflops_per_image']:.2f} GFLOPs per image, "
        f"{result.model['photos']} {result.model['split']} photos; {m['cpu']}, {m['threads']} threads, "
        f"fp32 matmul peak {m['matmul_peak_gflops']:.0f} GFLOP/s; int8 features: {features}; "
        f"int8 kernels: {', '.join(ran) or 'not run'}; {m['date'][:10]}"
    )
    return "\n".join(lines)


MARKER = "bench.json"


def check_out(config: BenchConfig) -> None:
    """--out holds bench.md, bench.json, bench.png and export/: a new folder, an earlier bench's, or
    (--force) any; never the checkpoint, the photos or the models, nor inside them."""
    from flower_edge.common.output import check_output_folder, read_json_marker

    reads = [("the checkpoint", config.checkpoint), ("--data", config.data)]
    reads += [("--models", config.models)] if config.models else []
    check_output_folder(
        config.out,
        "--out",
        reads,
        force=config.force,
        tool="flower-bench",
        marker=lambda folder: read_json_marker(folder / MARKER, "machine", "rows") is not None,
    )


def write_outputs(result: BenchResult, out: Path) -> list[Path]:
    from flower_edge.common.files import atomic_write
    from flower_edge.common.output import json_text

    from .plot import plot_accuracy_latency

    out.mkdir(parents=True, exist_ok=True)
    md, js, png = out / "bench.md", out / MARKER, out / "bench.png"
    atomic_write(md, lambda f: f.write((markdown_table(result) + "\n").encode()))
    atomic_write(js, lambda f: f.write(json_text(result.to_dict()).encode()))
    plot_accuracy_latency(result.rows, png)
    return [md, js, png]
