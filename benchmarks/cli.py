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

from flower_edge.common.errors import one_line_errors
from flower_edge.common.options import DebugFlag, QuietFlag, build, with_options
from flower_edge.common.output import json_text, printable

from .config import BenchConfig

app = typer.Typer(add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False)
err = Console(stderr=True)


HELP = (
    "Measure every format of a checkpoint side by side: file size, top-1/top-5 accuracy on a split, "
    "top-1 agreement and max |probability difference| against the PyTorch fp32 model, batch-1 "
    "latency (median, p95), batch-32 throughput, cold start and peak memory of a fresh process, and "
    "achieved GFLOP/s against this machine's measured fp32 matmul peak. Prints a Markdown table and "
    "writes it, a JSON file with every raw figure and the machine, and an accuracy-latency PNG to "
    "--out. Exits 1 when a format's agreement is under --fail-under-agreement, so CI can use it."
)


def main(
    json_out: Annotated[bool, typer.Option("--json", help="Print the JSON document instead of the table.")] = False,
    quiet: QuietFlag = False,
    debug: DebugFlag = False,
    **options,
) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    with one_line_errors("flower-bench", debug, expected=(typer.BadParameter,)):
        if importlib.util.find_spec("torch") is None:  # the reference every format is measured against
            raise typer.BadParameter(
                "flower-bench needs torch (the PyTorch reference): pip install 'flower-edge[train]'"
            )
        from .bench import run_bench
        from .report import markdown_table, write_outputs

        config = build(BenchConfig, options)
        result = run_bench(
            config,
            (lambda m: None)
            if quiet
            else (lambda m: err.print(f"· {printable(m)}", highlight=False, markup=False, soft_wrap=True)),
        )
        written = write_outputs(result, Path(config.out))
    print(json_text(result.to_dict()) if json_out else markdown_table(result))
    if not quiet:
        err.print("wrote " + ", ".join(map(str, written)), highlight=False)
    if result.failed:
        print(
            f"flower-bench: error: top-1 agreement under {config.fail_under_agreement:.2%}: {', '.join(result.failed)}",
            file=sys.stderr,
        )
        raise typer.Exit(1)


app.command(help=HELP)(with_options(main, BenchConfig))
