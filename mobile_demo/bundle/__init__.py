"""flower_edge.bundle (flower-bundle): an exported model as a phone web app that works offline (a PWA).

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

Modules: runtimes.py (the web runtimes and their files), pack.py (the bundle), serve.py (the HTTP
server), cli.py (the command). This package sits beside the app it packs (mobile_demo/app).
"""

from .pack import APP, APP_FILES, MARKER, bundle, is_bundle, precached
from .runtimes import NODE_MODULES, ORT_FILES, ORT_WEB, RUNTIMES, WebRuntime
from .serve import IsolatedHandler, server

__all__ = [
    "APP",
    "APP_FILES",
    "MARKER",
    "NODE_MODULES",
    "ORT_FILES",
    "ORT_WEB",
    "RUNTIMES",
    "IsolatedHandler",
    "WebRuntime",
    "bundle",
    "is_bundle",
    "precached",
    "server",
]
