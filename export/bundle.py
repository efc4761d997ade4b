"""flower-bundle: an exported model as a phone web app that works offline (a PWA).

    flower-bundle runs/ -o runs/web                 # model.int8.onnx (or model.onnx), card, app, onnxruntime-web
    flower-bundle runs/web --serve --host 0.0.0.0   # serve it to a phone on the same network

The folder is self-contained and static: mobile_demo/app's files, the model and its card, and the
onnxruntime-web files it loads (vendored from mobile_demo/node_modules: ``npm ci --prefix
mobile_demo``), with a service worker that caches all of it on the first visit. Served with the
COOP/COEP headers that --serve sends, the page is cross-origin isolated and onnxruntime-web runs
with threads.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Optional

import typer

from flower_edge.runtime.errors import ExportError, one_line_errors
from flower_edge.runtime.files import disk_space_checked, interrupts_deferred, remove_stale, replace_folder
from flower_edge.runtime.output import check_output_folder, read_json_marker

REPO = Path(__file__).resolve().parents[1]
ORT_WEB = REPO / "mobile_demo" / "node_modules" / "onnxruntime-web" / "dist"
"""Where ``npm ci --prefix mobile_demo`` puts onnxruntime-web in a checkout; from a wheel, pass
--ort-web (``npm install onnxruntime-web@1.30.0`` anywhere)."""
ORT_WEB_VERSION = "1.30.0"


def _app_folder() -> Path:
    """The app's files: package data (flower_edge.mobile_app, mobile_demo/app in a checkout)."""
    from importlib.resources import files

    return Path(str(files("flower_edge.mobile_app")))


APP = _app_folder()
ORT_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
APP_FILES = ("index.html", "app.js", "preprocess.js", "style.css", "icon.svg", "manifest.webmanifest")


MARKER = "bundle.json"
STAGING = "-bundle-"
"""A bundle is built in ``.NAME-bundle-<pid>-*`` beside its folder, then renamed into place."""


def is_bundle(folder: Path) -> bool:
    """Whether ``folder`` is one flower-bundle wrote (its bundle.json names the model and the date)."""
    return read_json_marker(folder / MARKER, "model", "created") is not None


def bundle(export_dir: str | os.PathLike, output: str | os.PathLike, model: str | None = None,
           ort_web: str | os.PathLike | None = None, force: bool = False) -> Path:
    """Write the web app for the model that ``export_dir``'s export.json lists into ``output``.

    ``output`` is replaced whole, by rename once the new bundle is complete, when it is an earlier
    bundle (or, with ``force``, any folder); a folder holding other files is refused, and so is one
    that is, holds or lies inside a file this reads."""
    from flower_edge.runtime.card import ModelCard

    from .formats import FORMATS
    from .manifest import MANIFEST, exported_files

    export_dir, output = Path(export_dir), Path(output)
    files = exported_files(export_dir)  # what the export wrote together, each checked
    web = sorted((f for f in FORMATS.values() if f.web), key=lambda f: not f.int8)  # int8 first
    if model:
        found = next((p for p in files.values() if p.name == model), None)
        if found is None:
            raise ExportError(f"{export_dir}: --model {model} is not a file of the export that {MANIFEST} lists "
                              f"({', '.join(sorted(p.name for p in files.values()))})")
        if not any(found.name == f.file for f in web):
            raise ExportError(f"--model {model}: the phone app runs {' or '.join(f.file for f in web)}")
    else:
        found = next((files[f.key] for f in web if f.key in files), None)
        if found is None:
            raise ExportError(f"{export_dir}: its export has no {' or '.join(f.file for f in web)} "
                              "(write one with flower-export --quantize)")
    card = ModelCard.from_onnx(found)
    ort_dir = Path(ort_web) if ort_web else ORT_WEB
    missing = [f for f in ORT_FILES if not (ort_dir / f).is_file()]
    if missing:
        where = f"{ort_dir}: no {missing[0]}" if ort_web or ORT_WEB.parent.parent.is_dir() else "onnxruntime-web not found"
        raise ExportError(f"{where}; run 'npm ci --prefix mobile_demo' in a checkout, or "
                          f"'npm install onnxruntime-web@{ORT_WEB_VERSION}' and pass "
                          f"--ort-web node_modules/onnxruntime-web/dist")
    if not (APP / "index.html").is_file():
        raise ExportError(f"{APP}: the app's files are missing from this installation of flower-edge; reinstall it")
    reads = [("the model", found), ("the export's record", export_dir / MANIFEST),
             ("onnxruntime-web's folder", ort_dir), ("the app's folder", APP)]
    check_output_folder(output, "--output", reads, marker=is_bundle, tool="flower-bundle", force=force, whole=True)

    output.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(output.parent, f".{output.name}{STAGING}")
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}{STAGING}{os.getpid()}-", dir=output.parent))
    try:
        with disk_space_checked(staging, report_as=output):
            _fill(staging, found, card, ort_dir)
        with interrupts_deferred():
            replace_folder(staging, output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return output


def _fill(staging: Path, found: Path, card, ort_dir: Path) -> None:
    """The app, onnxruntime-web, the model and its card, and the service worker that caches them."""
    for name in APP_FILES:
        shutil.copy(APP / name, staging / name)
    (staging / "ort").mkdir()
    for name in ORT_FILES:
        shutil.copy(ort_dir / name, staging / "ort" / name)
    shutil.copy(found, staging / found.name)
    (staging / "card.json").write_text(card.to_json())
    (staging / "labels.json").write_text(json.dumps(list(card.labels), indent=2, ensure_ascii=False))
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S")
    (staging / MARKER).write_text(json.dumps({
        "model": found.name, "model_mb": round(found.stat().st_size / 1e6, 2), "created": stamp,
    }, indent=2))
    files = ["./"] + sorted(str(p.relative_to(staging)) for p in staging.rglob("*") if p.is_file()) + ["sw.js"]
    sw = (APP / "sw.js").read_text().replace("__VERSION__", stamp).replace("__FILES__", json.dumps(files))
    (staging / "sw.js").write_text(sw)
    for p in [staging, *staging.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)


class IsolatedHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with the headers that make the page cross-origin isolated (threads)."""

    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".mjs": "text/javascript", ".js": "text/javascript", ".wasm": "application/wasm",
                      ".webmanifest": "application/manifest+json", ".onnx": "application/octet-stream"}

    def end_headers(self) -> None:
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_message(self, *args) -> None:
        pass


def server(folder: str | os.PathLike, host: str = "127.0.0.1", port: int = 8000) -> http.server.ThreadingHTTPServer:
    handler = functools.partial(IsolatedHandler, directory=str(folder))
    return http.server.ThreadingHTTPServer((host, port), handler)


app = typer.Typer(add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False)


@app.command(help=(
    "Bundle an exported model as a phone web app (PWA) that runs offline with onnxruntime-web, or "
    "serve a bundle. SOURCE is a flower-export folder (or, with --serve, a bundle). Open the served "
    "address on a phone on the same network, then 'Add to Home Screen'; after the first visit it "
    "works without a network."
))
def main(
    source: Annotated[Path, typer.Argument(help="flower-export output folder, or a bundle with --serve.", show_default=False)],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Bundle folder to write (default: SOURCE/web): a new or empty folder, or an earlier bundle, which is replaced.")] = None,
    model: Annotated[Optional[str], typer.Option(help="Model file of the export in SOURCE, as its export.json lists it (default: model.int8.onnx, else model.onnx).")] = None,
    ort_web: Annotated[Optional[Path], typer.Option(help="onnxruntime-web's dist folder (default: mobile_demo/node_modules/onnxruntime-web/dist).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an --output folder that holds files flower-bundle did not write (its whole content), once the new bundle is complete. Without it such a folder is refused; an earlier bundle is always replaced. A folder that is, holds or lies inside what the bundle reads is refused either way.")] = False,
    serve: Annotated[bool, typer.Option("--serve", help="Serve SOURCE (a bundle) over HTTP with COOP/COEP headers.")] = False,
    host: Annotated[str, typer.Option(help="Address to serve on (0.0.0.0: the local network).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to serve on (1 to 65535).")] = 8000,
    debug: Annotated[bool, typer.Option(help="Show full tracebacks.")] = False,
) -> None:
    with one_line_errors("flower-bundle", debug):
        if serve:
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
            return
        out = bundle(source, output or source / "web", model, ort_web, force)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"{out}  {size / 1e6:.1f} MB")
