"""The phone app end to end: Debian's chromium, driven by Playwright in a phone profile, classifies
real flower photos through the page's own file input; each answer equals the native runtime's on
the same file. At its first start the page checks itself on the export's golden photos; a model
file swapped for another model's fails that check, and the page says so."""

import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from flower_edge.bundle import RUNTIMES, bundle, precached, server
from flower_edge.runtime.predict import Classifier
from flower_edge.train.photos import find_images

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


@pytest.fixture(scope="module")
def web(tiny_export, tmp_path_factory):
    runtimes_installed()
    return bundle(tiny_export.output, tmp_path_factory.mktemp("bundle") / "web")


def test_bundle_is_self_contained(web, tiny_export):
    names = {str(p.relative_to(web)) for p in web.rglob("*") if p.is_file()}
    assert {
        "index.html",
        "app.js",
        "runtimes.js",
        "preprocess.js",
        "sw.js",
        "manifest.webmanifest",
        "card.json",
        "labels.json",
        "bundle.json",
        "model.int8.tflite",
        "model.int8.onnx",
        "litert/index.js",
        "litert/wasm/litert_wasm_threaded_internal.wasm",
        "ort/ort-wasm-simd-threaded.wasm",
    } <= names
    record = json.loads((web / "bundle.json").read_text())
    assert record["model"] == "model.int8.tflite"
    assert [(r["runtime"], r["model"], r["layout"]) for r in record["runtimes"]] == [
        ("litert", "model.int8.tflite", "NHWC"),
        ("onnxruntime", "model.int8.onnx", "NCHW"),
    ]
    golden = json.loads((tiny_export.output / "golden.json").read_text())["photos"]
    assert record["golden"] == len(golden) >= 1
    assert {f"golden/{p['name']}" for p in golden} | {"golden/golden.json"} <= names
    cached = json.loads((web / "sw.js").read_text().split("const FILES = ")[1].split(";\n")[0])
    later = names - set(cached)  # cached when first fetched: a runtime's WASM builds, the fallback's model
    assert later and all(n.endswith((".wasm", ".mjs")) or "wasm/" in n or n == "model.int8.onnx" for n in later), later
    assert "model.int8.tflite" in cached and "litert/index.js" in cached and "sw.js" in cached
    assert set(cached) - {"./"} == set(precached(web, [])) - later | {"sw.js"}
    for name in ("index.html", "app.js", "runtimes.js"):  # no CDN, no network at run time
        assert "https://" not in (web / name).read_text()


def test_golden_photos_the_export_did_not_write_are_not_shipped(tiny_export, tmp_path):
    """A golden.json edited since the export (its SHA-256 is not the record's) would check the
    phone against answers nobody proved: the bundle carries no self-check instead."""
    runtimes_installed()
    folder = shutil.copytree(tiny_export.output, tmp_path / "export")
    record = json.loads((folder / "golden.json").read_text())
    record["photos"][0]["top_k"][0]["index"] += 1
    (folder / "golden.json").write_text(json.dumps(record))
    web = bundle(folder, tmp_path / "web")
    assert json.loads((web / "bundle.json").read_text())["golden"] == 0 and not (web / "golden").exists()


def test_golden_photos_carry_the_checkpoints_answers(tiny_export, tiny_checkpoint):
    """golden.json: PyTorch's top-5 on the very JPEG stored, each a clear answer."""
    import io

    from PIL import Image

    from flower_edge.export.golden import MIN_GAP, read
    from flower_edge.export.verify import torch_logits
    from flower_edge.runtime.image import preprocess
    from flower_edge.runtime.predict import softmax
    from flower_edge.train.checkpoint import load_model

    model, card, _ = load_model(tiny_checkpoint)
    photos = read(tiny_export.output / "golden.json")
    assert photos
    for photo in photos:
        probs = softmax(
            torch_logits(model, preprocess(Image.open(io.BytesIO(photo["data"])).convert("RGB"), card)[None])
        )[0]
        want = [t["index"] for t in photo["top_k"]]
        assert want == list(np.argsort(-probs)[:5])
        assert np.allclose([t["prob"] for t in photo["top_k"]], probs[want], atol=1e-5)
        assert probs[want[0]] - probs[want[1]] >= MIN_GAP


def _expected(web, runtime, photos):
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


def _open(p, web, query="", args=()):
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


@pytest.mark.browser
@pytest.mark.real
@pytest.mark.parametrize("runtime", ["litert", "onnxruntime"])
def test_phone_app_matches_the_native_runtime_on_real_photos(runtime, web, flowers5, tmp_path, capsys):
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    photos = find_images(flowers5 / "valid")[:PHOTOS]
    expected = _expected(web, runtime, photos)
    with sync_playwright() as p:
        browser, page, httpd, errors = _open(p, web, "" if runtime == "litert" else "?runtime=onnxruntime")
        try:
            state = page.evaluate("window.flowerEdge.state")
            assert page.evaluate("self.crossOriginIsolated")
            assert state["runtime"].startswith(RUNTIMES[runtime].name) and state["trusted"], state
            assert state["check"][
                "passed"
            ] and f"{state['check']['total']}/{state['check']['total']}" in page.inner_text("#status")
            for i, photo in enumerate(photos):
                page.set_input_files("#gallery", str(photo))
                page.wait_for_function(f"window.flowerEdge.results.length === {i + 1}")
            got = page.evaluate("window.flowerEdge.results")
            assert page.locator("#results li").count() == 5
            shot = tmp_path / "phone.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
            httpd.shutdown()
    assert not errors
    diffs = []
    for want, have in zip(expected, got):
        assert "error" not in have and have["trusted"], have
        if want[0][1] - want[1][1] > 2 * PROB_TOL:  # no near-tie: the same answer
            assert have["top_k"][0]["index"] == want[0][0], (have, want)
        theirs = {h["index"]: h["prob"] for h in have["top_k"]}
        diffs += [abs(theirs[i] - prob) for i, prob in want if i in theirs]
    assert len(got) == PHOTOS and max(diffs) <= PROB_TOL and np.median(diffs) <= PROB_TOL / 10
    with capsys.disabled():
        same = sum(h["top_k"][0]["index"] == w[0][0] for w, h in zip(expected, got))
        print(
            f"\nphone app, {state['runtime']}: {PHOTOS} photos, top-1 equal to the native runtime's on {same}, "
            f"max |prob diff| {max(diffs):.1e} (median {np.median(diffs):.1e}), "
            f"median {np.median([h['ms'] for h in got]):.0f} ms per photo in chromium; screenshot {shot}"
        )


NODE_RUNNER = """
import { preprocess } from "%s";
import fs from "fs";
const cases = JSON.parse(fs.readFileSync(process.argv[2]));
const data = new Uint8Array(fs.readFileSync(process.argv[3]));
let at = 0;
const out = [];
for (const c of cases) {
  const n = c.w * c.h * 4;
  out.push(Buffer.from(preprocess({ data: data.subarray(at, at + n), width: c.w, height: c.h }, c.card)));
  at += n;
}
fs.writeFileSync(process.argv[4], Buffer.concat(out));
"""


def test_preprocess_js_resizes_and_crops_as_pillow_does(tmp_path):
    """preprocess.js against runtime/image.py (Pillow) on 90 random images: every size, shrinking
    and enlarging, each interpolation a card can name, the crop anywhere; the pixels must be equal.
    Pillow 13 resizes vertically first when the height shrinks more than twice as much as the
    width, and NEAREST is an affine scale, not a convolution: both are checked here."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    from types import SimpleNamespace

    from PIL import Image

    from flower_edge.runtime.card import INTERPOLATIONS
    from flower_edge.runtime.image import pixels

    rng = np.random.default_rng(0)
    cases, images, want = [], [], []
    for i in range(90):
        w, h = (int(v) for v in rng.integers(24, 360, 2))  # within the 20:1 aspect limit
        size = int(rng.integers(8, 240))
        card = dict(
            resize_size=size,
            crop_size=int(rng.integers(4, size + 1)),
            input_dtype="uint8",
            interpolation=INTERPOLATIONS[i % len(INTERPOLATIONS)],
            mean=[0, 0, 0],
            std=[1, 1, 1],
        )
        rgba = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
        rgba[..., 3] = 255
        cases.append({"w": w, "h": h, "card": card})
        images.append(rgba.tobytes())
        want.append(pixels(Image.fromarray(rgba[..., :3]), SimpleNamespace(**card)))
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    (tmp_path / "images.raw").write_bytes(b"".join(images))
    script = tmp_path / "run.mjs"
    script.write_text(NODE_RUNNER % (REPO / "mobile_demo" / "app" / "preprocess.js").as_uri())
    import subprocess

    subprocess.run(
        [node, str(script), str(tmp_path / "cases.json"), str(tmp_path / "images.raw"), str(tmp_path / "out.raw")],
        check=True,
        timeout=120,
    )
    got, at = (tmp_path / "out.raw").read_bytes(), 0
    for case, expected in zip(cases, want):
        have = np.frombuffer(got[at : at + expected.size], np.uint8).reshape(expected.shape)
        at += expected.size
        assert np.array_equal(have, expected), case
    assert at == len(got)


@pytest.mark.browser
@pytest.mark.real
def test_the_apps_preprocessing_is_flower_runs_bit_for_bit(web, flowers5, tmp_path):
    """preprocess.js (Pillow's resampling in JavaScript, computed for the centre crop only, and the
    card's normalization table) gives the very floats runtime/image.py does, in the layout of the
    model the page runs. Lossless PNGs, so that the browser's decoder is not what is compared:
    landscape, portrait, one side already the resize size, and the crop size itself."""
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from PIL import Image
    from playwright.sync_api import sync_playwright

    from flower_edge.export.formats import FORMATS
    from flower_edge.runtime.image import load_image, preprocess

    site = shutil.copytree(web, tmp_path / "web")
    card = FORMATS["tflite-int8"].read_card(site / "model.int8.tflite")
    source = load_image(find_images(flowers5 / "valid")[0])
    sizes = [(301, 200), (150, 333), (card.resize_size, 97), (card.crop_size, card.crop_size), (640, 479)]
    for w, h in sizes:
        source.resize((w, h)).save(site / f"photo-{w}x{h}.png")
    with sync_playwright() as p:
        browser, page, httpd, errors = _open(p, site)
        try:
            got = {size: page.evaluate(f"window.flowerEdge.tensor('photo-{size[0]}x{size[1]}.png')") for size in sizes}
        finally:
            browser.close()
            httpd.shutdown()
    assert not errors
    for (w, h), values in got.items():
        want = preprocess(Image.open(site / f"photo-{w}x{h}.png").convert("RGB"), card).transpose(1, 2, 0)  # NHWC
        have = np.asarray(values, np.float32).reshape(want.shape)
        assert np.array_equal(have, want), ((w, h), float(np.abs(have - want).max()))


@pytest.fixture(scope="module")
def other_model(tiny_checkpoint, tmp_path_factory):
    """Another model with the same labels and shapes: the tiny checkpoint with its classifier's rows
    rolled by one class, exported as .tflite and .onnx (what a swapped model file would be)."""
    import torch

    from flower_edge.export import ExportConfig, export

    ckpt = torch.load(tiny_checkpoint, weights_only=True)
    state, classes = ckpt["model_state"], len(ckpt["card"]["labels"])
    last = [k for k, v in state.items() if v.ndim >= 1 and v.shape[0] == classes][-2:]  # weight and bias
    assert len(last) == 2
    for k in last:
        state[k] = torch.roll(state[k], 1, dims=0)
    folder = tmp_path_factory.mktemp("other")
    torch.save(ckpt, folder / "other.pth")
    export(
        ExportConfig(
            checkpoint=str(folder / "other.pth"), output=str(folder / "export"), format="onnx,tflite", verify=False
        )
    )
    return folder / "export"


@pytest.mark.browser
@pytest.mark.real
@pytest.mark.slow
def test_a_swapped_model_fails_the_self_check_and_the_page_says_so(web, other_model, flowers5, tmp_path):
    """Issue 24, item 3: LiteRT.js's file replaced by another model's fails its self-check, and the
    app falls back to onnxruntime-web, which passes; with both replaced, no runtime passes and every
    answer is marked unverified, none shown as trusted."""
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    swapped = shutil.copytree(web, tmp_path / "web")
    shutil.copy(other_model / "model.tflite", swapped / "model.int8.tflite")
    both = shutil.copytree(swapped, tmp_path / "web2")
    shutil.copy(other_model / "model.onnx", both / "model.int8.onnx")
    photo = find_images(flowers5 / "valid")[0]
    with sync_playwright() as p:
        browser, page, httpd, _errors = _open(p, swapped)
        try:
            state, status = page.evaluate("window.flowerEdge.state"), page.inner_text("#status")
        finally:
            browser.close()
            httpd.shutdown()
        assert state["runtime"].startswith("onnxruntime-web") and state["trusted"], state
        assert "LiteRT.js" in status and "failed its self-check" in status, status
        browser, page, httpd, _errors = _open(p, both)
        try:
            state, status = page.evaluate("window.flowerEdge.state"), page.inner_text("#status")
            page.set_input_files("#gallery", str(photo))
            page.wait_for_function("window.flowerEdge.results.length === 1")
            result, timing = page.evaluate("window.flowerEdge.results[0]"), page.inner_text("#timing")
            assert page.locator("#status.untrusted").count() == 1
        finally:
            browser.close()
            httpd.shutdown()
    assert not state["trusted"] and state["check"]["same"] < state["check"]["total"], state
    assert "does NOT answer as the checkpoint" in status, status
    assert not result["trusted"] and "unverified" in timing, (result, timing)


@pytest.mark.browser
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

    from flower_edge.bundle import IsolatedHandler

    class Plain(http.server.SimpleHTTPRequestHandler):  # MIME types a static host knows; no other header
        extensions_map = IsolatedHandler.extensions_map

        def log_message(self, *args) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Plain, directory=str(web)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    photo = find_images(flowers5 / "valid")[0]
    expected = _expected(web, "litert", [photo])[0][0]
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
    assert got["top_k"][0]["index"] == expected[0], (got, expected)


def test_the_wheel_carries_the_phone_app(tmp_path):
    """flower-bundle from a plain pip install: the app's files are package data of the wheel."""
    import importlib.util
    import subprocess
    import sys
    import zipfile

    from flower_edge.bundle import APP, APP_FILES

    isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *isolation, "-w", str(tmp_path), str(REPO)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("flower_edge-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in (*APP_FILES, "sw.js"):
        assert f"flower_edge/mobile_app/{name}" in names, name
        assert (APP / name).is_file()
    assert "flower_edge/export/formats.py" in names and "flower_edge/runtime/cli.py" in names


SOFTWARE_WEBGPU = ("--enable-unsafe-webgpu", "--use-webgpu-adapter=swiftshader", "--enable-features=Vulkan,WebGPU")


@pytest.mark.browser
@pytest.mark.slow
def test_the_webgpu_path_answers_the_golden_photos_as_wasm_does(web):
    """Issue 24, item 4: LiteRT.js on WebGPU (?runtime=webgpu), on chromium's software adapter
    (SwiftShader): it passes the self-check and its top-1 on every golden photo is WASM's, with
    the probability within 0.05. No speed is claimed from a software adapter."""
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    golden = sorted((web / "golden").glob("golden-*.jpg"))
    answers = {}
    with sync_playwright() as p:
        for query in ("", "?runtime=webgpu"):
            browser, page, httpd, errors = _open(p, web, query, SOFTWARE_WEBGPU)
            try:
                if query and not page.evaluate(
                    "navigator.gpu ? navigator.gpu.requestAdapter().then((a) => !!a) : false"
                ):
                    pytest.skip("this chromium has no WebGPU adapter, not even SwiftShader")
                state = page.evaluate("window.flowerEdge.state")
                for i, photo in enumerate(golden):
                    page.set_input_files("#gallery", str(photo))
                    page.wait_for_function(f"window.flowerEdge.results.length === {i + 1}")
                answers[query] = (state, page.evaluate("window.flowerEdge.results"))
            finally:
                browser.close()
                httpd.shutdown()
            assert not errors
    (wasm_state, wasm), (gpu_state, gpu) = answers[""], answers["?runtime=webgpu"]
    assert wasm_state["runtime"].startswith("LiteRT.js WASM") and gpu_state["runtime"] == "LiteRT.js WebGPU"
    assert gpu_state["check"]["passed"] and gpu_state["trusted"], gpu_state
    for a, b in zip(wasm, gpu):
        assert [t["index"] for t in a["top_k"]][:1] == [t["index"] for t in b["top_k"]][:1], (a, b)
        assert abs(a["top_k"][0]["prob"] - b["top_k"][0]["prob"]) <= 0.05, (a, b)
