"""The web runtimes the phone app runs a model with, and the files of each that a bundle vendors
from ``npm ci --prefix mobile_demo`` (mobile_demo/node_modules, beside this package)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

NODE_MODULES = Path(__file__).resolve().parents[1] / "node_modules"


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
