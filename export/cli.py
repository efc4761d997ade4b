"""flower-export: a checkpoint to every deployable format, each verified against PyTorch.

flower-export runs/flower.pth --format all
flower-export runs/flower.pth --format tflite-int8,pte-int8
flower-export runs/flower.pth --quantize --calib-data flowers/ -o dist/ --json
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from flower_edge.common.errors import one_line_errors
from flower_edge.common.options import DebugFlag, QuietFlag, build, with_options
from flower_edge.common.output import json_text, printable

from .config import ExportConfig
from .formats import FORMATS

app = typer.Typer(add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False)
err = Console(stderr=True)


HELP = (
    "Export a flower-train checkpoint for deployment and prove each file matches it.\n\n"
    "Formats (--format, comma-separated, or all): "
    + "; ".join(f"{f.key}: {f.file}, {f.description}" for f in FORMATS.values())
    + ". "
    "Beside them: card.json (the model card: labels and preprocessing, also inside every file), "
    "labels.json, golden.json (photos with the checkpoint's answers, for the phone app's self-check), "
    "export.json (this run's figures) and, with .ort files, required_operators.config. "
    "tflite needs the [litert] extra and pte the [executorch] extra; --format all writes what this "
    "install can and names what it skipped. After writing, every file is run by its own runtime "
    "against the PyTorch model on real photos the calibration did not see, and a parity table is "
    "printed. int8 is made by budget: --max-drop says how much top-1 agreement with PyTorch int8 may "
    "lose, and the export searches for the fastest int8 model that keeps it (float layers, calibration "
    "method, then tuning; the candidates are printed and kept in export.json); the LiteRT and "
    "ExecuTorch int8 files keep the same layers float (more of the same order only if their own quantizer needs them). A file that fails its check (a float file off by more than --atol, an int8 "
    "file under the budget) is not written, the others are: exit 1, with one line naming what is missing."
)


def main(
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the result (files, sizes, parity) as JSON on stdout.")
    ] = False,
    quiet: QuietFlag = False,
    debug: DebugFlag = False,
    **options,
) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    with one_line_errors(
        "flower-export", debug, expected=(typer.BadParameter,), interrupted="interrupted; nothing was written"
    ):
        if importlib.util.find_spec("torch") is None or importlib.util.find_spec("onnx") is None:
            raise typer.BadParameter("exporting needs torch and onnx: pip install 'flower-edge[train]'")
        from .pipeline import export

        config = build(ExportConfig, options)
        with err.status("exporting", spinner="dots") if not quiet else _Null() as status:

            def progress(message: str) -> None:
                if not quiet:
                    message = printable(message)
                    status.update(Text(message))
                    err.print(f"· {message}", highlight=False, markup=False, soft_wrap=True)

            result = export(config, progress)

    for line in result.skipped:
        err.print(f"skipped broken image {printable(line)}", highlight=False, markup=False, soft_wrap=True)
    if json_out:
        print(json_text(result.to_dict()))
    else:
        from .verify import parity_table

        if result.explain:
            from .explain import explain_table

            print(explain_table(result.explain) + "\n")
        if result.search:
            from .plan import search_table

            print(search_table(result.search) + "\n")
        if result.parity:
            print(parity_table(result.parity))
        for path in result.files:
            print(f"{path}  {path.stat().st_size / 1e6:.2f} MB")
    if not result.ok:
        err.print(f"flower-export: error: {printable(result.failure())}", highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(1)


app.command(help=HELP)(with_options(main, ExportConfig))


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def update(self, *args) -> None:
        pass
