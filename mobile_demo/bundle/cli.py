"""flower-bundle: the command (mobile_demo/bundle/__init__.py says what a bundle is)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from flower_edge.common.errors import ExportError, one_line_errors

from .pack import MARKER, bundle
from .serve import server

app = typer.Typer(add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False)


@app.command(
    help=(
        "Bundle an exported model as a phone web app (PWA) that runs offline, or serve a bundle. SOURCE "
        "is a flower-export folder (or, with --serve, a bundle). The app runs model.int8.tflite with "
        "LiteRT.js (XNNPACK's WASM kernels, threaded where the page is cross-origin isolated), checks at "
        "its first start that it answers the export's golden photos as the checkpoint did, and falls back "
        "to onnxruntime-web with model.int8.onnx if not. Open the served address on a phone on the same "
        "network, then 'Add to Home Screen'; after the first visit it works without a network."
    )
)
def main(
    source: Annotated[
        Path, typer.Argument(help="flower-export output folder, or a bundle with --serve.", show_default=False)
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Bundle folder to write (default: SOURCE/web): a new or empty folder, or an earlier bundle, which is replaced.",
        ),
    ] = None,
    runtime: Annotated[
        str | None,
        typer.Option(
            help="The runtime tried first: litert (LiteRT.js, .tflite) or onnxruntime (onnxruntime-web, .onnx). Default: litert when the export has a .tflite file.",
            show_default=False,
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="Model file of the export in SOURCE for the first runtime, as its export.json lists it (default: the int8 file, else the float one).",
            show_default=False,
        ),
    ] = None,
    fallback: Annotated[
        bool,
        typer.Option(
            "--fallback/--no-fallback",
            help="Also ship the other runtime and its model, used when the first fails its self-check on a device (cached on a phone only then).",
        ),
    ] = True,
    ort_web: Annotated[
        Path | None,
        typer.Option(
            help="onnxruntime-web's dist folder (default: mobile_demo/node_modules/onnxruntime-web/dist).",
            show_default=False,
        ),
    ] = None,
    litert_web: Annotated[
        Path | None,
        typer.Option(
            help="LiteRT.js's folder, node_modules/@litertjs, holding core/ and wasm-utils/ (default: mobile_demo's).",
            show_default=False,
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Replace an --output folder that holds files flower-bundle did not write (its whole content), once the new bundle is complete. Without it such a folder is refused; an earlier bundle is always replaced. A folder that is, holds or lies inside what the bundle reads is refused either way.",
        ),
    ] = False,
    serve: Annotated[
        bool, typer.Option("--serve", help="Serve SOURCE (a bundle) over HTTP with COOP/COEP headers.")
    ] = False,
    host: Annotated[str, typer.Option(help="Address to serve on (0.0.0.0: the local network).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to serve on (1 to 65535).")] = 8000,
    debug: Annotated[bool, typer.Option(help="Show full tracebacks.")] = False,
) -> None:
    with one_line_errors("flower-bundle", debug):
        if serve:
            if not (source / "index.html").is_file():
                raise ExportError(
                    f"{source}: not a bundle (no index.html); make one with flower-bundle EXPORT_DIR -o DIR"
                )
            if not 1 <= port <= 65535:
                raise ExportError(f"--port must be between 1 and 65535, found {port}")
            httpd = server(source, host, port)
            print(f"serving {source} at http://{host}:{port}/ (Ctrl-C stops)", file=sys.stderr)
            try:
                httpd.serve_forever()
            except KeyboardInterrupt:
                pass
            return
        out = bundle(
            source,
            output or source / "web",
            model,
            ort_web,
            force,
            runtime=runtime,
            litert_web=litert_web,
            fallback=fallback,
        )
    record = json.loads((out / MARKER).read_text())
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    chain = " -> ".join(f"{r['name']} ({r['model']})" for r in record["runtimes"])
    check = (
        f"self-check on {record['golden']} golden photos"
        if record["golden"]
        else "no self-check (the export has no golden.json: export again)"
    )
    print(f"{out}  {size / 1e6:.1f} MB ({record['first_visit_mb']:.1f} MB on a phone's first visit); {chain}; {check}")
