"""flower-export: a checkpoint to every deployable format, each verified against PyTorch.

flower-export runs/flower.pth --format all
flower-export runs/flower.pth --format tflite-int8,pte-int8
flower-export runs/flower.pth --quantize --calib-data flowers/ -o dist/ --json
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from flower_edge.runtime.errors import one_line_errors
from flower_edge.runtime.output import json_text, printable

from .config import CALIB_METHODS, DEFAULT_OPSET, MIN_OPSET, ExportConfig
from .formats import FORMATS

app = typer.Typer(add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False)
err = Console(stderr=True)
D = ExportConfig(checkpoint="")


@app.command(
    help=(
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
)
def main(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint written by flower-train.", show_default=False)],
    format: Annotated[
        str, typer.Option("--format", "-f", help="What to write: comma-separated format keys (above) or all.")
    ] = D.format,
    quantize: Annotated[
        bool,
        typer.Option(
            "--quantize",
            help="Also write the int8 counterpart of each float format asked for (onnx -> onnx-int8, tflite -> tflite-int8, pte -> pte-int8), all calibrated on the same real photos.",
        ),
    ] = D.quantize,
    calib_data: Annotated[
        Path | None,
        typer.Option(
            help="Folder of calibration photos (class folders or loose images). A classic layout calibrates on train/ and verifies on valid/. Default: the checkpoint's training data, when it is still on this machine."
        ),
    ] = None,
    calib_size: Annotated[int, typer.Option(help="Photos to calibrate on (1 to 20,000).")] = D.calib_size,
    calib_method: Annotated[
        str | None,
        typer.Option(
            help=f"How activation ranges are chosen: {', '.join(CALIB_METHODS)}. Default: searched, minmax first, the others only when float layers do not keep the budget.",
            show_default=False,
        ),
    ] = D.calib_method,
    reduce_range: Annotated[
        bool,
        typer.Option(
            "--reduce-range/--full-range",
            help="7-bit int8 weights. The default 8-bit weights are the more precise model, run by onnxruntime's fast kernels on phones, browsers and VNNI CPUs, and by its slower exact path on x86 CPUs without VNNI (AVX2 only), whose fast kernel would saturate. 7-bit weights cannot saturate, so there they take the fast kernels too, at a loss of precision that --tune recovers.",
        ),
    ] = D.reduce_range,
    float_layers: Annotated[
        int | None,
        typer.Option(
            help="Keep the first N convolutions of the int8 model float, instead of searching. Default: searched, from 0 (everything int8, fastest) up to 16, the convolutions whose int8 error is largest first (--explain's figures) and the first ones of the network, until the budget holds. tflite-int8 and pte-int8 keep the same convolutions float, and their classifier too.",
            show_default=False,
        ),
    ] = D.float_layers,
    tune: Annotated[
        bool | None,
        typer.Option(
            "--tune/--no-tune",
            help="Fine-tune the int8 ONNX model to answer like the float one: the quantized graph's weights are trained by distillation from the PyTorch model on --tune-size training photos and their mirror images (no labels needed), keeping onnxruntime's scales. Default: only when no untuned candidate keeps the budget (models unsure of many photos); --tune always, --no-tune never. Minutes on a CPU (about 4 for Lite0, 1000 photos, 2 epochs, 2 cores); every layer trains, the stem included.",
            show_default=False,
        ),
    ] = D.tune,
    tune_size: Annotated[
        int, typer.Option(help="Photos to tune on (1 to 20,000): the calibration source's, never a verification photo.")
    ] = D.tune_size,
    tune_epochs: Annotated[int, typer.Option(help="Passes over the tuning photos (1 to 50).")] = D.tune_epochs,
    explain: Annotated[
        bool,
        typer.Option(
            "--explain",
            help="Print where int8 loses: the quantization error (SQNR) of every layer, from onnxruntime's qdq_loss_debug, on the calibration photos; also in export.json.",
        ),
    ] = D.explain,
    opset: Annotated[
        int,
        typer.Option(
            help=f"ONNX opset ({MIN_OPSET} or newer; {DEFAULT_OPSET} runs on current onnxruntime and onnxruntime-web)."
        ),
    ] = D.opset,
    ort_format: Annotated[
        bool,
        typer.Option(
            "--ort/--no-ort",
            help="Also write the .ort copies (ort, ort-int8) of the ONNX files, for ONNX Runtime Mobile.",
        ),
    ] = D.ort_format,
    embed_preprocessing: Annotated[
        bool,
        typer.Option(
            help="Also write model.preproc.onnx, which takes uint8 RGB pixels (batch, height, width, 3) already resized and cropped, and normalizes inside the graph: a phone passes raw pixels."
        ),
    ] = D.embed_preprocessing,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Output folder (default: the checkpoint's folder). A folder that holds files no export wrote is refused (--force), and so is one inside the photos the export reads. The files of an earlier export there are replaced, and those this export does not write are removed: the folder holds one export, which export.json lists.",
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Write into an --output folder that holds other files, replacing any of them named like a file the export writes (model.onnx, card.json, ...). The others are never touched.",
        ),
    ] = D.force,
    verify: Annotated[
        bool, typer.Option("--verify/--no-verify", help="Check every file against PyTorch after writing (recommended).")
    ] = D.verify,
    verify_data: Annotated[
        Path | None,
        typer.Option(
            help="Folder of photos to verify on (default: the held-out photos of the calibration source; never a calibration photo)."
        ),
    ] = None,
    verify_size: Annotated[
        int, typer.Option(help="Most photos to verify on; 0 takes them all, up to 20,000.")
    ] = D.verify_size,
    verify_on: Annotated[
        str | None,
        typer.Option(
            help="Also run every phone file (ONNX, .ort, .tflite; float and int8) on arm64 kernels, in an emulated arm64 Python (QEMU, neoverse-n1), against PyTorch as on this machine: rows '(arm64)' in the parity table, each held to the same requirement, with its agreement with this machine's run. Needs QEMU 8+ and mmdebstrap; the environment is built once (under a minute, 265 MB, from Debian's mirror and PyPI) and cached.",
            show_default=False,
        ),
    ] = D.verify_on,
    arm64_photos: Annotated[
        int,
        typer.Option(
            help="Verification photos run on arm64 (1 to 2,000): emulated, a float Lite0 file takes about 3.5 s a photo, an int8 one 0.7 s."
        ),
    ] = D.arm64_photos,
    max_drop: Annotated[
        float | None,
        typer.Option(
            help="The int8 budget: top-1 agreement with PyTorch that int8 may lose, in points (0.2: at least 99.8% of the held-out photos answered alike). Default: from --min-agreement (0.99: 1 point).",
            show_default=False,
        ),
    ] = D.max_drop,
    min_agreement: Annotated[
        float,
        typer.Option(
            help="Least share of int8 top-1 answers that must equal PyTorch's (--max-drop, when given, sets it)."
        ),
    ] = D.min_agreement,
    atol: Annotated[
        float, typer.Option(help="Largest |logit difference| allowed for float files (TorchScript: a tenth of it).")
    ] = D.atol,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the result (files, sizes, parity) as JSON on stdout.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines.")] = False,
    debug: Annotated[bool, typer.Option(help="Show full tracebacks.")] = False,
) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    with one_line_errors(
        "flower-export", debug, expected=(typer.BadParameter,), interrupted="interrupted; nothing was written"
    ):
        if importlib.util.find_spec("torch") is None or importlib.util.find_spec("onnx") is None:
            raise typer.BadParameter("exporting needs torch and onnx: pip install 'flower-edge[train]'")
        from .pipeline import export

        config = ExportConfig(
            checkpoint=str(checkpoint),
            output=str(output) if output else None,
            format=format,
            quantize=quantize,
            calib_data=str(calib_data) if calib_data else None,
            calib_size=calib_size,
            calib_method=calib_method,
            reduce_range=reduce_range,
            float_layers=float_layers,
            tune=tune,
            tune_size=tune_size,
            tune_epochs=tune_epochs,
            explain=explain,
            opset=opset,
            ort_format=ort_format,
            embed_preprocessing=embed_preprocessing,
            verify=verify,
            verify_data=str(verify_data) if verify_data else None,
            verify_size=verify_size,
            max_drop=max_drop,
            min_agreement=min_agreement,
            atol=atol,
            force=force,
            verify_on=verify_on,
            arm64_photos=arm64_photos,
        )
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
            from .search import search_table

            print(search_table(result.search) + "\n")
        if result.parity:
            print(parity_table(result.parity))
        for path in result.files:
            print(f"{path}  {path.stat().st_size / 1e6:.2f} MB")
    if not result.ok:
        err.print(f"flower-export: error: {printable(result.failure())}", highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(1)


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def update(self, *args) -> None:
        pass
