"""What the phone app's tests share (test_bundle.py, test_phone_app.py): where chromium is, how
close the page's answers must be, the app opened in a phone profile, the native runtime's answers."""

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from flower_edge.bundle import RUNTIMES, server
from flower_edge.runtime.predict import Classifier

REPO = Path(__file__).resolve().parents[2]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PHOTOS = 20
PROB_TOL = 5e-2
"""int8 kernels are not bit-identical across CPUs and WebAssembly, nor are the float layers before
the first quantization: an 8-bit rounding falls the other way now and then, and the step carries
to the end. Measured max |prob diff| on these photos, tiny 64-px model, onnxruntime-web against
onnxruntime: 3e-8 (AMD EPYC, AVX2, exact path, all int8), 5.9e-4 (AMD EPYC with AVX512-VNNI, fast
path, float logits), 2.4e-3 (Intel Xeon with AVX512-VNNI, logits still 8-bit), 2.4e-2 (AMD EPYC
with VNNI, first 6 convolutions float: their float sums differ in the last bits between engines).
A wrong scale or preprocessing moves probabilities by far more."""


def runtimes_installed():
    missing = [r.name for r in RUNTIMES.values() if not all((r.source / f).is_file() for f in r.files)]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not installed: npm ci --prefix mobile_demo")


def expected_answers(web, runtime, photos):
    """What the native runtime answers on the file the page runs: (index, prob) top-5 of each photo."""
    if runtime == "onnxruntime":
        return [
            [(t.index, t.prob) for t in r.top_k] for r in Classifier(web / "model.int8.onnx").predict_many(photos, k=5)
        ]
    from flower_edge.export.formats import FORMATS
    from flower_edge.runtime.image import load_image, preprocess

    fmt = FORMATS["tflite-int8"]
    card, run = fmt.read_card(web / fmt.file), fmt.open(web / fmt.file)
    probs = np.exp(run(np.stack([preprocess(load_image(p), card) for p in photos])))
    return [[(int(i), float(row[i])) for i in np.argsort(-row)[:5]] for row in probs]


def open_app(p, web, query="", args=()):
    """The app in a phone profile, from ``web`` served with COOP/COEP; (browser, page, server, errors)."""
    httpd = server(web, "127.0.0.1", 0)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", *args])
    page = browser.new_context(**p.devices["iPhone 13"]).new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"http://127.0.0.1:{httpd.server_address[1]}/{query}")
    page.wait_for_function("window.flowerEdge !== undefined && window.flowerEdge.ready !== undefined")
    page.evaluate("window.flowerEdge.ready.then(() => true)")
    return browser, page, httpd, errors
