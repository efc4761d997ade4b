"""flower-bench: accuracy parity and latency of every format of one checkpoint, in one table.

flower-bench runs/flower.pth --data flowers/ --split valid --out runs/bench
flower-bench runs/flower.pth --data flowers/ --models runs/ --formats onnx,onnx-int8
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from flower_edge.runtime.errors import one_line_errors
from flower_edge.runtime.output import json_text, printable

from .bench import FORMATS, BenchConfig, default_formats

app = typer.Typer(add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False)
err = Console(stderr=True)
D = BenchConfig(checkpoint="", data="")


@app.command(
    help=(
        "Measure every format of a checkpoint side by side: file size, top-1/top-5 accuracy on a split, "
        "top-1 agreement and max |probability difference| against the PyTorch fp32 model, batch-1 "
        "latency (median, p95), batch-32 throughput, cold start and peak memory of a fresh process, and "
        "achieved GFLOP/s against this machine's measured fp32 matmul peak. Prints a Markdown table and "
        "writes it, a JSON file with every raw figure and the machine, and an accuracy-latency PNG to "
        "--out. Exits 1 when a format's agreement is under --fail-under-agreement, so CI can use it."
    )
)
def main(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint written by flower-train.", show_default=False)],
    data: Annotated[
        Path, typer.Option(help="Folder in the classic layout (DATA/valid/<class-id>/*.jpg, ...).", show_default=False)
    ],
    split: Annotated[str, typer.Option(help="Split to measure: valid or test.")] = D.split,
    formats: Annotated[
        str,
        typer.Option(
            help=f"Comma-separated formats: {', '.join(FORMATS)}; all: torch and every format this install can write and run."
        ),
    ] = "all",
    threads: Annotated[
        int, typer.Option(help="Threads for every format (torch and onnxruntime alike), 1 to the number of cores.")
    ] = D.threads,
    out: Annotated[
        Path,
        typer.Option(
            help="Folder for bench.md, bench.json, bench.png (and the export, without --models): a new folder or an earlier bench's; one holding other files needs --force, and one inside the checkpoint's, the photos' or the models' folder is refused."
        ),
    ] = Path(D.out),
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Write into an --out folder that holds files flower-bench did not write (files named like its own are replaced).",
        ),
    ] = False,
    models: Annotated[
        Path | None,
        typer.Option(help="A flower-export folder to measure as it is (default: export into OUT/export first)."),
    ] = None,
    fail_under_agreement: Annotated[
        float, typer.Option(help="Least top-1 agreement with PyTorch each format must reach.")
    ] = D.fail_under_agreement,
    latency_runs: Annotated[int, typer.Option(help="Timed batch-1 runs per format (1 to 10,000).")] = D.latency_runs,
    cold_starts: Annotated[
        int, typer.Option(help="Fresh processes timed per format, median (1 to 100).")
    ] = D.cold_starts,
    json_out: Annotated[bool, typer.Option("--json", help="Print the JSON document instead of the table.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines.")] = False,
    debug: Annotated[bool, typer.Option(help="Show full tracebacks.")] = False,
) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    with one_line_errors("flower-bench", debug, expected=(typer.BadParameter,)):
        if importlib.util.find_spec("torch") is None:  # the reference every format is measured against
            raise typer.BadParameter(
                "flower-bench needs torch (the PyTorch reference): pip install 'flower-edge[train]'"
            )
        from .bench import run_bench
        from .report import markdown_table, write_outputs

        config = BenchConfig(
            checkpoint=str(checkpoint),
            data=str(data),
            split=split,
            formats=default_formats()
            if formats.strip() == "all"
            else tuple(f.strip() for f in formats.split(",") if f.strip()),
            threads=threads,
            out=str(out),
            models=str(models) if models else None,
            fail_under_agreement=fail_under_agreement,
            latency_runs=latency_runs,
            cold_starts=cold_starts,
            force=force,
        )
        result = run_bench(
            config,
            (lambda m: None)
            if quiet
            else (lambda m: err.print(f"· {printable(m)}", highlight=False, markup=False, soft_wrap=True)),
        )
        written = write_outputs(result, out)
    print(json_text(result.to_dict()) if json_out else markdown_table(result))
    if not quiet:
        err.print("wrote " + ", ".join(map(str, written)), highlight=False)
    if result.failed:
        print(
            f"flower-bench: error: top-1 agreement under {fail_under_agreement:.2%}: {', '.join(result.failed)}",
            file=sys.stderr,
        )
        raise typer.Exit(1)
