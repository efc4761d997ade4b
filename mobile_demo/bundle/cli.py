"""flower-bundle: the command (mobile_demo/bundle/__init__.py says what a bundle is)."""

from __future__ import annotations

import json
import sys
from dataclasses import MISSING, dataclass
from pathlib import Path

import typer

from flower_edge.common.errors import ExportError, one_line_errors
from flower_edge.common.options import DebugFlag, build, option, with_options

from .pack import MARKER, bundle
from .serve import server

app = typer.Typer(add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False)

HELP = (
    "Bundle an exported model as a phone web app (PWA) that runs offline, or serve a bundle. SOURCE "
    "is a flower-export folder (or, with --serve, a bundle). The app runs model.int8.tflite with "
    "LiteRT.js (XNNPACK's WASM kernels, threaded where the page is cross-origin isolated), checks at "
    "its first start that it answers the export's golden photos as the checkpoint did, and falls back "
    "to onnxruntime-web with model.int8.onnx if not. Open the served address on a phone on the same "
    "network, then 'Add to Home Screen'; after the first visit it works without a network."
)


@dataclass(frozen=True)
class BundleConfig:
    """flower-bundle's options (common/options.py makes them from these fields)."""

    source: Path = option(
        MISSING, "flower-export output folder, or a bundle with --serve.", argument=True, required=True
    )
    output: Path | None = option(
        None,
        "Bundle folder to write (default: SOURCE/web): a new or empty folder, or an earlier bundle, which is replaced.",
        flags=("--output", "-o"),
    )
    runtime: str | None = option(
        None,
        "The runtime tried first: litert (LiteRT.js, .tflite) or onnxruntime (onnxruntime-web, .onnx). "
        "Default: litert when the export has a .tflite file.",
        show_default=False,
    )
    model: str | None = option(
        None,
        "Model file of the export in SOURCE for the first runtime, as its export.json lists it (default: the "
        "int8 file, else the float one).",
        show_default=False,
    )
    fallback: bool = option(
        True,
        "Also ship the other runtime and its model, used when the first fails its self-check on a device "
        "(cached on a phone only then).",
        flags=("--fallback/--no-fallback",),
    )
    ort_web: Path | None = option(
        None,
        "onnxruntime-web's dist folder (default: mobile_demo/node_modules/onnxruntime-web/dist).",
        show_default=False,
    )
    litert_web: Path | None = option(
        None,
        "LiteRT.js's folder, node_modules/@litertjs, holding core/ and wasm-utils/ (default: mobile_demo's).",
        show_default=False,
    )
    force: bool = option(
        False,
        "Replace an --output folder that holds files flower-bundle did not write (its whole content), once the "
        "new bundle is complete. Without it such a folder is refused; an earlier bundle is always replaced. A "
        "folder that is, holds or lies inside what the bundle reads is refused either way.",
        flags=("--force",),
    )
    serve: bool = option(False, "Serve SOURCE (a bundle) over HTTP with COOP/COEP headers.", flags=("--serve",))
    host: str = option("127.0.0.1", "Address to serve on (0.0.0.0: the local network).")
    port: int = option(8000, "Port to serve on (1 to 65535).")


def main(debug: DebugFlag = False, **options) -> None:
    config: BundleConfig = build(BundleConfig, options)
    with one_line_errors("flower-bundle", debug):
        if config.serve:
            _serve(config)
            return
        out = bundle(
            config.source,
            config.output or config.source / "web",
            config.model,
            config.ort_web,
            config.force,
            runtime=config.runtime,
            litert_web=config.litert_web,
            fallback=config.fallback,
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


def _serve(config: BundleConfig) -> None:
    source, host, port = config.source, config.host, config.port
    if not (source / "index.html").is_file():
        raise ExportError(f"{source}: not a bundle (no index.html); make one with flower-bundle EXPORT_DIR -o DIR")
    if not 1 <= port <= 65535:
        raise ExportError(f"--port must be between 1 and 65535, found {port}")
    httpd = server(source, host, port)
    print(f"serving {source} at http://{host}:{port}/ (Ctrl-C stops)", file=sys.stderr)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass


app.command(help=HELP)(with_options(main, BundleConfig))
