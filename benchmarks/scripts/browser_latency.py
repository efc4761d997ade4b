"""The phone app's per-photo time in chromium (onnxruntime-web, WASM SIMD) against flower-run's.

    flower-bundle runs/bench-export/default -o runs/web
    python benchmarks/scripts/browser_latency.py runs/web ../shared/data/flowers5/valid --photos 40

Both include decoding and preprocessing: the page times decode + preprocess + inference of each
photo picked through its file input (iPhone 13 profile, 390x844, cross-origin isolated); flower-run's side is
Classifier.predict on the same photos in this process. Medians, after 3 warm-up photos each.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import threading
import time
from pathlib import Path

from flower_edge.export.bundle import server
from flower_edge.export.images import find_images
from flower_edge.runtime.predict import Classifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", type=Path)
    parser.add_argument("photos", type=Path)
    parser.add_argument("--photos", dest="count", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    photos = find_images(args.photos)[:args.count + 3]
    model = args.bundle / __import__("json").loads((args.bundle / "bundle.json").read_text())["model"]
    clf = Classifier(model, threads=args.threads)
    native = []
    for p in photos:
        start = time.perf_counter()
        clf.predict(p)
        native.append(1e3 * (time.perf_counter() - start))
    httpd = server(args.bundle, "127.0.0.1", 0)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        page = browser.new_context(**pw.devices["iPhone 13"]).new_page()
        page.goto(f"http://127.0.0.1:{httpd.server_address[1]}/")
        page.wait_for_function("window.flowerEdge !== undefined")
        page.evaluate("window.flowerEdge.ready.then(() => true)")
        status = page.inner_text("#status")
        for i, p in enumerate(photos):
            page.set_input_files("#gallery", str(p))
            page.wait_for_function(f"window.flowerEdge.results.length === {i + 1}")
        browser_ms = [r["ms"] for r in page.evaluate("window.flowerEdge.results")]
        browser.close()
    httpd.shutdown()
    b, n = statistics.median(browser_ms[3:]), statistics.median(native[3:])
    print(f"{model.name}: chromium (onnxruntime-web) {b:.1f} ms per photo, flower-run {n:.1f} ms "
          f"({b / n:.1f}x); {len(photos) - 3} photos; page: {status}")


if __name__ == "__main__":
    main()
