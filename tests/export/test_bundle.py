"""flower-bundle: the app folder it writes (self-contained, the golden photos and their answers), the
app's preprocessing in node against Pillow's, and the wheel that carries the app. The app itself in
chromium: test_phone_app.py."""

import json
import shutil

import numpy as np
import pytest

from flower_edge.bundle import bundle, precached
from tests.export.phone import REPO, runtimes_installed


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
