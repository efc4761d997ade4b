"""flower-bundle: an exported model as a phone web app that works offline (a PWA).

    flower-bundle runs/ -o runs/web                 # model.int8.tflite + LiteRT.js, onnxruntime-web as fallback
    flower-bundle runs/ -o runs/web --runtime onnxruntime     # model.int8.onnx + onnxruntime-web only
    flower-bundle runs/web --serve --host 0.0.0.0   # serve it to a phone on the same network

The folder is self-contained and static: mobile_demo/app's files, the model and its card, the web
runtimes that run it (vendored from mobile_demo/node_modules: ``npm ci --prefix mobile_demo``), the
export's golden photos, and a service worker that caches it all for offline use. The runtimes are
tried in order at the first start: each must answer the golden photos as the checkpoint did (the
self-check), or the app falls back to the next one and says so.

Why LiteRT.js first (Flowers102 Lite0, chromium, 2-core CPU, inference alone): its XNNPACK WASM
kernels run the int8 ``.tflite`` about 20x faster than onnxruntime-web runs the int8 ``.onnx``
(benchmarks/scripts/browser_latency.py measures every runtime in one run).
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, ClassVar

import typer

from flower_edge.common.errors import ExportError, one_line_errors
from flower_edge.common.files import disk_space_checked, replace_folder
from flower_edge.common.output import check_output_folder, read_json_marker
from flower_edge.common.processes import interrupts_deferred, remove_stale

REPO = Path(__file__).resolve().parents[1]
NODE_MODULES = REPO / "mobile_demo" / "node_modules"


@dataclass(frozen=True)
class WebRuntime:
    """A runtime the phone app can run a model with, and the files of it the bundle vendors."""

    key: str
    name: str
    formats: tuple[str, ...]
    """Export formats it runs, in the order a bundle prefers them (int8 first)."""
    source: Path
    """Where ``npm ci --prefix mobile_demo`` puts it in a checkout."""
    files: dict[str, str]
    """Path in ``source`` -> path in the bundle."""
    package: str
    """What to install from npm, pinned as mobile_demo/package.json pins it."""
    option: str
    """flower-bundle's option for another ``source``."""
    precache: tuple[str, ...] = ()
    """Bundle paths the service worker caches on install; the others (WASM builds for other
    browsers) are cached when the page first loads them."""


_LITERT_WASM = [f"core/wasm/litert_wasm_{v}internal.{e}" for v in ("", "compat_", "threaded_") for e in ("js", "wasm")]
RUNTIMES = {
    r.key: r
    for r in (
        WebRuntime(
            "litert",
            "LiteRT.js",
            ("tflite-int8", "tflite"),
            NODE_MODULES / "@litertjs",
            {
                "core/dist/index.js": "litert/index.js",
                "wasm-utils/dist/index.js": "litert/wasm-utils.js",
                **{f: "litert/wasm/" + f.rsplit("/", 1)[1] for f in _LITERT_WASM},
            },
            "@litertjs/core@2.5.3",
            "--litert-web",
            ("litert/index.js", "litert/wasm-utils.js"),
        ),
        WebRuntime(
            "onnxruntime",
            "onnxruntime-web",
            ("onnx-int8", "onnx"),
            NODE_MODULES / "onnxruntime-web" / "dist",
            {f: f"ort/{f}" for f in ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")},
            "onnxruntime-web@1.30.0",
            "--ort-web",
            ("ort/ort.wasm.min.mjs",),
        ),
    )
}
ORT_WEB, ORT_FILES = RUNTIMES["onnxruntime"].source, tuple(RUNTIMES["onnxruntime"].files)


def _app_folder() -> Path:
    """The app's files: package data (flower_edge.mobile_app, mobile_demo/app in a checkout)."""
    from importlib.resources import files

    return Path(str(files("flower_edge.mobile_app")))


APP = _app_folder()
APP_FILES = ("index.html", "app.js", "runtimes.js", "preprocess.js", "style.css", "icon.svg", "manifest.webmanifest")


MARKER = "bundle.json"
STAGING = "-bundle-"
"""A bundle is built in ``.NAME-bundle-<pid>-*`` beside its folder, then renamed into place."""


def is_bundle(folder: Path) -> bool:
    """Whether ``folder`` is one flower-bundle wrote (its bundle.json names the model and the date)."""
    return read_json_marker(folder / MARKER, "model", "created") is not None


@dataclass(frozen=True)
class Entry:
    """One runtime of the bundle's chain and the model file it runs."""

    runtime: WebRuntime
    model: Path
    card: object
    """runtime/card.py ModelCard of ``model``."""

    def to_dict(self) -> dict:
        return {
            "runtime": self.runtime.key,
            "name": self.runtime.name,
            "model": self.model.name,
            "model_mb": round(self.model.stat().st_size / 1e6, 2),
            "layout": self.card.layout,
            "output": self.card.output,
            "input_dtype": self.card.input_dtype,
        }


def bundle(
    export_dir: str | os.PathLike,
    output: str | os.PathLike,
    model: str | None = None,
    ort_web: str | os.PathLike | None = None,
    force: bool = False,
    *,
    runtime: str | None = None,
    litert_web: str | os.PathLike | None = None,
    fallback: bool = True,
) -> Path:
    """Write the web app for a model of ``export_dir``'s export (export.json lists them) into ``output``.

    ``runtime``: "litert" or "onnxruntime" first (None: LiteRT.js when the export has a .tflite file,
    else onnxruntime-web; ``model`` names the file, and with it the runtime); ``fallback``: the
    other runtime next, when the export has a file for it. ``output`` is replaced whole, by rename
    once the new bundle is complete, when it is an earlier bundle (or, with ``force``, any folder);
    a folder holding other files is refused, and so is one that is, holds or lies inside a file
    this reads."""
    from .golden import GOLDEN
    from .manifest import MANIFEST, exported_files, read_manifest, sha256

    export_dir, output = Path(export_dir), Path(output)
    files = exported_files(export_dir)  # what the export wrote together, each checked
    if runtime is not None and runtime not in RUNTIMES:
        raise ExportError(f"--runtime must be one of {', '.join(RUNTIMES)}, found {runtime!r}")
    sources = {"litert": Path(litert_web) if litert_web else None, "onnxruntime": Path(ort_web) if ort_web else None}
    chain = _chain(export_dir, files, runtime, model, fallback, sources)
    golden = export_dir / GOLDEN
    recorded = (read_manifest(export_dir).get("sha256") or {}).get(GOLDEN)
    if golden.is_file() and recorded != sha256(golden):  # not this export's: no self-check rather than a wrong one
        golden = None
    if not (APP / "index.html").is_file():
        raise ExportError(f"{APP}: the app's files are missing from this installation of flower-edge; reinstall it")
    reads = [("the model", e.model) for e in chain] + [("the export's record", export_dir / MANIFEST)]
    reads += [(f"{e.runtime.name}'s folder", sources[e.runtime.key] or e.runtime.source) for e in chain]
    reads += [("the app's folder", APP)]
    check_output_folder(output, "--output", reads, marker=is_bundle, tool="flower-bundle", force=force, whole=True)

    output.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(output.parent, f".{output.name}{STAGING}")
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}{STAGING}{os.getpid()}-", dir=output.parent))
    try:
        with disk_space_checked(staging, report_as=output):
            _fill(staging, chain, sources, golden)
        with interrupts_deferred():
            replace_folder(staging, output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return output


def _chain(
    export_dir: Path,
    files: dict[str, Path],
    runtime: str | None,
    model: str | None,
    fallback: bool,
    sources: dict[str, Path | None],
) -> list[Entry]:
    """The runtimes the app tries, in order, each with the export's file it runs: the one asked for
    (or that ``model`` needs; else LiteRT.js when the export has a .tflite file), then, with
    ``fallback``, the other one where the export has a file for it and it is installed."""
    from .formats import FORMATS
    from .manifest import MANIFEST

    runs = {FORMATS[key].file: r for r in RUNTIMES.values() for key in r.formats}
    if model:
        if model not in {p.name for p in files.values()}:
            raise ExportError(
                f"{export_dir}: --model {model} is not a file of the export that {MANIFEST} lists "
                f"({', '.join(sorted(p.name for p in files.values()))})"
            )
        if model not in runs or (runtime and runs[model].key != runtime):
            allowed = [name for name, r in runs.items() if runtime in (None, r.key)]
            raise ExportError(f"--model {model}: the phone app runs {' or '.join(allowed)}")
        runtime = runs[model].key
    order = [runtime] if runtime else [k for k, r in RUNTIMES.items() if any(f in files for f in r.formats)][:1]
    if not order:
        raise ExportError(
            f"{export_dir}: its export has no file the phone app runs "
            f"({', '.join(runs)}); write one with flower-export --quantize"
        )
    if fallback:
        order += [k for k in RUNTIMES if k not in order]
    chain = []
    for key in order:
        r, first = RUNTIMES[key], key == order[0]
        path = (
            next(p for p in files.values() if p.name == model)
            if first and model
            else next((files[f] for f in r.formats if f in files), None)
        )
        if path is None:
            if first:
                raise ExportError(
                    f"{export_dir}: its export has no {' or '.join(FORMATS[f].file for f in r.formats)} "
                    f"for {r.name} (write one with flower-export --format {r.formats[1]} --quantize)"
                )
            continue  # no file for the fallback: the chain is shorter
        try:
            _check_runtime(r, sources[key])
        except ExportError:
            if first:
                raise
            continue  # the fallback's runtime is not installed: the chain is shorter (the CLI line shows it)
        chain.append(
            Entry(r, path, FORMATS[next(f for f in r.formats if FORMATS[f].file == path.name)].read_card(path))
        )
    return chain


def _check_runtime(r: WebRuntime, source: Path | None) -> None:
    folder = source or r.source
    missing = [f for f in r.files if not (folder / f).is_file()]
    if missing:
        where = f"{folder}: no {missing[0]}" if source or NODE_MODULES.is_dir() else f"{r.name} not found"
        raise ExportError(
            f"{where}; run 'npm ci --prefix mobile_demo' in a checkout, or "
            f"'npm install {r.package}' and pass {r.option} "
            f"node_modules/{r.source.relative_to(NODE_MODULES)}"
        )


def _fill(staging: Path, chain: list, sources: dict, golden_file: Path | None) -> None:
    """The app, the runtimes, the models and their card, the golden photos, and the service worker."""
    from .golden import read as read_golden

    for name in APP_FILES:
        shutil.copy(APP / name, staging / name)
    for entry in chain:
        r = entry.runtime
        for src, dst in r.files.items():
            (staging / dst).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy((sources[r.key] or r.source) / src, staging / dst)
        shutil.copy(entry.model, staging / entry.model.name)
    card = chain[0].card
    (staging / "card.json").write_text(card.to_json())
    (staging / "labels.json").write_text(json.dumps(list(card.labels), indent=2, ensure_ascii=False))
    golden = read_golden(golden_file) if golden_file and golden_file.is_file() else []
    if golden:
        (staging / "golden").mkdir()
        for photo in golden:
            (staging / "golden" / photo["name"]).write_bytes(photo["data"])
        (staging / "golden" / "golden.json").write_text(
            json.dumps([{k: p[k] for k in ("name", "source", "top_k")} for p in golden], indent=1, ensure_ascii=False)
        )
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    record = {
        "model": chain[0].model.name,
        "model_mb": round(chain[0].model.stat().st_size / 1e6, 2),
        "created": stamp,
        "runtimes": [e.to_dict() for e in chain],
        "golden": len(golden),
    }
    (staging / MARKER).write_text(json.dumps(record, indent=2))
    cached = precached(staging, chain)
    first = chain[0].runtime.files.values()  # and the largest WASM build of the first runtime, loaded on that visit
    wasm = max(((staging / f).stat().st_size for f in first if f.endswith(".wasm")), default=0)
    record["first_visit_mb"] = round((sum((staging / f).stat().st_size for f in cached) + wasm) / 1e6, 1)
    (staging / MARKER).write_text(json.dumps(record, indent=2))
    files = ["./", *cached, "sw.js"]
    sw = (APP / "sw.js").read_text().replace("__VERSION__", stamp).replace("__FILES__", json.dumps(files))
    (staging / "sw.js").write_text(sw)
    for p in [staging, *staging.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)


def precached(folder: Path, chain: list[Entry]) -> list[str]:
    """The files the service worker caches on install: all but the runtimes' WASM builds (one of
    each runtime's is what a browser loads, and it is cached then) and the fallbacks' models
    (cached when a fallback runs), so the first visit downloads what this phone uses."""
    later = {dst for e in chain for dst in e.runtime.files.values() if dst not in e.runtime.precache}
    later |= {e.model.name for e in chain[1:]}
    return sorted(
        name
        for p in folder.rglob("*")
        if p.is_file() and (name := str(p.relative_to(folder))) not in later and name != "sw.js"
    )


class IsolatedHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with the headers that make the page cross-origin isolated (threads)."""

    extensions_map: ClassVar[dict[str, str]] = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".mjs": "text/javascript",
        ".js": "text/javascript",
        ".wasm": "application/wasm",
        ".webmanifest": "application/manifest+json",
        ".onnx": "application/octet-stream",
    }

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
