"""The phone app end to end: Debian's chromium, driven by Playwright in a phone profile, classifies
real flower photos through the page's own file input; each answer equals flower-run's."""

import json
import shutil
import threading

import numpy as np
import pytest

from flower_edge.export.bundle import ORT_FILES, ORT_WEB, REPO, bundle, server
from flower_edge.export.images import find_images
from flower_edge.runtime.predict import Classifier

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PHOTOS = 20
PROB_TOL = 5e-2
"""int8 kernels are not bit-identical across CPUs and WebAssembly, nor are the float layers before
the first quantization: an 8-bit rounding falls the other way now and then, and the step carries
to the end. Measured max |prob diff| on these photos, tiny 64-px model: 3e-8 (AMD EPYC, AVX2, exact
path, all int8), 5.9e-4 (AMD EPYC with AVX512-VNNI, fast path, float logits), 2.4e-3 (Intel Xeon
with AVX512-VNNI, logits still 8-bit), 2.4e-2 (AMD EPYC with VNNI, first 6 convolutions float:
their float sums differ in the last bits between engines). A wrong scale or preprocessing moves
probabilities by far more."""


@pytest.fixture(scope="module")
def web(tiny_export, tmp_path_factory):
    if not (ORT_WEB / ORT_FILES[0]).is_file():
        pytest.skip("onnxruntime-web is not installed: npm ci --prefix mobile_demo")
    return bundle(tiny_export.output, tmp_path_factory.mktemp("bundle") / "web")


def test_bundle_is_self_contained(web, tiny_export):
    names = {str(p.relative_to(web)) for p in web.rglob("*") if p.is_file()}
    assert {"index.html", "app.js", "preprocess.js", "sw.js", "manifest.webmanifest", "card.json", "labels.json",
            "bundle.json", "model.int8.onnx", "ort/ort-wasm-simd-threaded.wasm"} <= names
    assert json.loads((web / "bundle.json").read_text())["model"] == "model.int8.onnx"
    cached = json.loads((web / "sw.js").read_text().split("const FILES = ")[1].split(";\n")[0])
    assert set(cached) - {"./"} == names  # the service worker caches every file, itself included
    for name in ("index.html", "app.js"):  # no CDN, no network at run time
        assert "https://" not in (web / name).read_text()


@pytest.mark.real
def test_phone_app_matches_flower_run_on_real_photos(web, flowers5, tmp_path, capsys):
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    photos = find_images(flowers5 / "valid")[:PHOTOS]
    expected = Classifier(web / "model.int8.onnx").predict_many(photos, k=5)
    httpd = server(web, "127.0.0.1", 0)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    errors = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_context(**p.devices["iPhone 13"]).new_page()
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"http://127.0.0.1:{httpd.server_address[1]}/")
            page.wait_for_function("window.flowerEdge !== undefined")
            page.evaluate("window.flowerEdge.ready.then(() => true)")
            assert page.evaluate("self.crossOriginIsolated")
            for i, photo in enumerate(photos):
                page.set_input_files("#gallery", str(photo))
                page.wait_for_function(f"window.flowerEdge.results.length === {i + 1}")
            got = page.evaluate("window.flowerEdge.results")
            assert page.locator("#results li").count() == 5
            shot = tmp_path / "phone.png"
            page.screenshot(path=str(shot), full_page=True)
            browser.close()
    finally:
        httpd.shutdown()
    assert not errors
    diffs = []
    for want, have in zip(expected, got):
        assert "error" not in have, have
        if want.top_k[0].prob - want.top_k[1].prob > 2 * PROB_TOL:  # no near-tie: the same answer
            assert have["top_k"][0]["index"] == want.top_k[0].index, (want.image, have, want)
        theirs = {h["index"]: h["prob"] for h in have["top_k"]}
        diffs += [abs(theirs[t.index] - t.prob) for t in want.top_k if t.index in theirs]
    assert len(got) == PHOTOS and max(diffs) <= PROB_TOL and np.median(diffs) <= PROB_TOL / 10
    with capsys.disabled():
        same = sum(h["top_k"][0]["index"] == w.top_k[0].index for w, h in zip(expected, got))
        print(f"\nphone app: {PHOTOS} photos, top-1 equal to flower-run's on {same}, max |prob diff| {max(diffs):.1e} "
              f"(median {np.median(diffs):.1e}), "
              f"median {np.median([h['ms'] for h in got]):.0f} ms per photo in chromium; screenshot {shot}")


@pytest.mark.real
def test_a_plain_static_host_still_gets_threads(web, flowers5):
    """Issue 24, item 1: served with no special headers (a plain file server, as GitHub Pages or a
    Capacitor shell serve it), the service worker adds COOP/COEP and the page reloads once into a
    cross-origin isolated one, so onnxruntime-web runs threaded; then it classifies as before."""
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    import functools
    import http.server
    import time

    from playwright.sync_api import Error, sync_playwright

    from flower_edge.export.bundle import IsolatedHandler

    class Plain(http.server.SimpleHTTPRequestHandler):  # MIME types a static host knows; no other header
        extensions_map = IsolatedHandler.extensions_map

        def log_message(self, *args) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Plain, directory=str(web)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    photo = find_images(flowers5 / "valid")[0]
    expected = Classifier(web / "model.int8.onnx").predict(photo, k=1)[0]
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_context(**p.devices["Pixel 7"]).new_page()
            page.goto(f"http://127.0.0.1:{httpd.server_address[1]}/")
            isolated, deadline = False, time.monotonic() + 60
            while not isolated and time.monotonic() < deadline:  # the one reload destroys the context
                try:
                    isolated = page.evaluate("self.crossOriginIsolated && window.flowerEdge !== undefined")
                except Error:
                    pass
                page.wait_for_timeout(200)
            assert isolated, "the page never became cross-origin isolated"
            page.evaluate("window.flowerEdge.ready.then(() => true)")
            status = page.locator("#status").text_content()
            threads = page.evaluate("Math.min(4, navigator.hardwareConcurrency || 1)")
            assert f"{threads} thread" in status and "not cross-origin isolated" not in status, status
            assert page.evaluate("sessionStorage.getItem('flower-edge-isolation-reload')") == "1"  # reloaded once
            page.set_input_files("#gallery", str(photo))
            page.wait_for_function("window.flowerEdge.results.length === 1")
            got = page.evaluate("window.flowerEdge.results[0]")
            browser.close()
    finally:
        httpd.shutdown()
    assert got["top_k"][0]["index"] == expected.index, (got, expected)


def test_the_wheel_carries_the_phone_app(tmp_path):
    """flower-bundle from a plain pip install: the app's files are package data of the wheel."""
    import subprocess
    import sys
    import zipfile

    from flower_edge.export.bundle import APP, APP_FILES

    import importlib.util

    isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *isolation,
                    "-w", str(tmp_path), str(REPO)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("flower_edge-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in (*APP_FILES, "sw.js"):
        assert f"flower_edge/mobile_app/{name}" in names, name
        assert (APP / name).is_file()
    assert "flower_edge/export/formats.py" in names and "flower_edge/runtime/cli.py" in names
