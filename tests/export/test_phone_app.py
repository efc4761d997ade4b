"""The phone app end to end: Debian's chromium, driven by Playwright in a phone profile, classifies
real flower photos through the page's own file input; each answer equals the native runtime's on
the same file. At its first start the page checks itself on the export's golden photos; a model
file swapped for another model's fails that check, and the page says so."""

import shutil
import threading

import numpy as np
import pytest

from flower_edge.bundle import RUNTIMES
from flower_edge.train.photos import find_images
from tests.export.phone import CHROMIUM, PHOTOS, PROB_TOL, expected_answers, open_app


@pytest.mark.browser
@pytest.mark.real
@pytest.mark.parametrize("runtime", ["litert", "onnxruntime"])
def test_phone_app_matches_the_native_runtime_on_real_photos(runtime, web, flowers5, tmp_path, capsys):
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    photos = find_images(flowers5 / "valid")[:PHOTOS]
    expected = expected_answers(web, runtime, photos)
    with sync_playwright() as p:
        browser, page, httpd, errors = open_app(p, web, "" if runtime == "litert" else "?runtime=onnxruntime")
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
        browser, page, httpd, errors = open_app(p, site)
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
        browser, page, httpd, _errors = open_app(p, swapped)
        try:
            state, status = page.evaluate("window.flowerEdge.state"), page.inner_text("#status")
        finally:
            browser.close()
            httpd.shutdown()
        assert state["runtime"].startswith("onnxruntime-web") and state["trusted"], state
        assert "LiteRT.js" in status and "failed its self-check" in status, status
        browser, page, httpd, _errors = open_app(p, both)
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
    expected = expected_answers(web, "litert", [photo])[0][0]
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
            browser, page, httpd, errors = open_app(p, web, query, SOFTWARE_WEBGPU)
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
