"""A bundle: an export's model, the app's files, the web runtimes and a service worker, in one folder.

out = bundle("runs/", "runs/web")          # model.int8.tflite + LiteRT.js, onnxruntime-web as fallback
precached(out, chain)                      # what the service worker caches on install
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from flower_edge.common.errors import ExportError
from flower_edge.common.files import disk_space_checked, replace_folder
from flower_edge.common.output import check_output_folder, read_json_marker
from flower_edge.common.processes import interrupts_deferred, remove_stale

from .runtimes import NODE_MODULES, RUNTIMES, WebRuntime


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
    from flower_edge.export.golden import GOLDEN
    from flower_edge.export.manifest import MANIFEST, exported_files, read_manifest, sha256

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
    from flower_edge.export.formats import FORMATS
    from flower_edge.export.manifest import MANIFEST

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
    from flower_edge.export.golden import read as read_golden

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
