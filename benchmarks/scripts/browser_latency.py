"""The phone app's per-photo time in chromium, runtime by runtime, against flower-run's on the same photos.

    python benchmarks/scripts/browser_latency.py runs/f102 ../shared/data/flowers102/valid --photos 100

EXPORT is a flower-export folder with the .tflite and .onnx files. Each variant is a bundle of its
own (flower-bundle), served by a plain static file server that sends no COOP/COEP header (the
service worker makes the page cross-origin isolated, as on GitHub Pages or in a Capacitor shell),
opened in a fresh chromium profile (Pixel 7, 2 threads), and timed by the page itself over decode +
preprocess + inference + top-5 of each photo picked through its file input. flower-run's side is
Classifier.predict on the same photos in this process, measured before and after the browser's
rounds. Prints, for each variant: median and p95 per photo, the ratio to flower-run (int8 ONNX,
the fastest native file), top-1 agreement with flower-run on the float model (the checkpoint's
answers) and on the int8 one, the page's self-check, and the bundle's size; ``--json`` writes it all.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from flower_edge.bundle import IsolatedHandler, bundle
from flower_edge.runtime.predict import Classifier
from flower_edge.train.photos import find_images

VARIANTS = {  # name: (flower-bundle arguments, page query)
    "LiteRT.js int8 (default bundle)": (dict(), ""),
    "LiteRT.js float": (dict(model="model.tflite", fallback=False), ""),
    "onnxruntime-web int8": (dict(), "?runtime=onnxruntime"),
    "onnxruntime-web float": (dict(model="model.onnx", fallback=False), ""),
}
WARM_UP = 3


class Plain(http.server.SimpleHTTPRequestHandler):
    """A static host: MIME types, nothing else (no COOP/COEP)."""

    extensions_map = IsolatedHandler.extensions_map

    def log_message(self, *args) -> None:
        pass


def native(model: Path, photos: list[Path], threads: int) -> tuple[list[float], list[int]]:
    clf = Classifier(model, threads=threads)
    times, answers = [], []
    for p in photos:
        start = time.perf_counter()
        answers.append(clf.predict(p, k=1)[0].index)
        times.append(1e3 * (time.perf_counter() - start))
    return times[WARM_UP:], answers


def in_chromium(pw, web: Path, query: str, photos: list[Path]) -> dict:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Plain, directory=str(web)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    browser = pw.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
    try:
        page = browser.new_context(**pw.devices["Pixel 7"]).new_page()
        page.goto(f"http://127.0.0.1:{httpd.server_address[1]}/{query}")
        page.wait_for_function("window.flowerEdge && window.flowerEdge.state", timeout=180_000)  # after the reload
        state = page.evaluate("window.flowerEdge.state")
        status = page.inner_text("#status")
        for i, p in enumerate(photos):
            page.set_input_files("#gallery", str(p))
            page.wait_for_function(f"window.flowerEdge.results.length === {i + 1}", timeout=120_000)
        results = page.evaluate("window.flowerEdge.results")
        isolated = page.evaluate("self.crossOriginIsolated")
    finally:
        browser.close()
        httpd.shutdown()
    return {"state": state, "status": status, "results": results, "isolated": isolated}


def _variant(pw, export: Path, web: Path, name: str, photos: list, truth: list, reference: list) -> dict:
    """One variant of the app bundled into ``web`` and run in chromium on ``photos``: its row."""
    options, query = VARIANTS[name]
    web = bundle(export, web, **options)
    size = sum(p.stat().st_size for p in web.rglob("*") if p.is_file()) / 1e6
    run = in_chromium(pw, web, query, photos)
    ms = [r["ms"] for r in run["results"][WARM_UP:]]
    top1 = [r["top_k"][0]["index"] if "top_k" in r else -1 for r in run["results"]]
    stages = {
        k: statistics.median(r["stages_ms"][k] for r in run["results"][WARM_UP:])
        for k in ("decode", "preprocess", "inference")
    }
    row = {
        "variant": name,
        "stages_ms": stages,
        "runtime": run["state"]["runtime"],
        "model": run["state"]["model"],
        "threads": run["state"]["threads"],
        "isolated": run["isolated"],
        "median_ms": statistics.median(ms),
        "p95_ms": statistics.quantiles(ms, n=20)[-1],
        "top1_equal": sum(a == b for a, b in zip(top1[WARM_UP:], truth[WARM_UP:])),
        "top1_equal_int8": sum(a == b for a, b in zip(top1[WARM_UP:], reference[WARM_UP:])),
        "photos": len(ms),
        "self_check": run["state"]["check"],
        "bundle_mb": round(size, 1),
        "status": run["status"],
    }
    print(
        f"  {name}: {row['median_ms']:.1f} ms ({run['state']['runtime']}, "
        f"{run['state']['threads']} threads; " + ", ".join(f"{k} {v:.1f}" for k, v in stages.items()) + ")",
        file=sys.stderr,
        flush=True,
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("export", type=Path)
    parser.add_argument("photos", type=Path)
    parser.add_argument("--photos", dest="count", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated names of VARIANTS")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    photos = find_images(args.photos)[: args.count + WARM_UP]
    first, reference = native(args.export / "model.int8.onnx", photos, args.threads)
    float_times, truth = native(args.export / "model.onnx", photos, args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        for name in args.variants.split(","):
            rows.append(_variant(pw, args.export, Path(tmp) / f"web{len(rows)}", name, photos, truth, reference))
    last, _ = native(args.export / "model.int8.onnx", photos, args.threads)
    flower_run = statistics.median(first + last)
    print(
        f"{len(photos) - WARM_UP} photos from {args.photos}; flower-run (model.int8.onnx, {args.threads} threads): "
        f"{flower_run:.1f} ms per photo (median; p95 {statistics.quantiles(first + last, n=20)[-1]:.1f} ms); "
        f"with model.onnx {statistics.median(float_times):.1f} ms"
    )
    print(
        f"{'variant':<34} {'runtime':<30} {'median':>8} {'p95':>8} {'vs flower-run':>13} {'top-1 = float':>13} {'= int8 onnx':>11} "
        f"{'self-check':>10} {'bundle':>8}"
    )
    for r in rows:
        check = r["self_check"]
        print(
            f"{r['variant']:<34} {r['runtime']:<30} {r['median_ms']:>5.1f} ms {r['p95_ms']:>5.1f} ms "
            f"{r['median_ms'] / flower_run:>12.2f}x {r['top1_equal'] / r['photos']:>12.1%} {r['top1_equal_int8'] / r['photos']:>10.1%} "
            f"{check['same']}/{check['total']:<8} {r['bundle_mb']:>5.1f} MB"
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "flower_run_ms": flower_run,
                    "flower_run_float_ms": statistics.median(float_times),
                    "photos": len(photos) - WARM_UP,
                    "variants": rows,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
