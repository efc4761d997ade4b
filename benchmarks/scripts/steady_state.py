"""Steady state: many predictions from several threads through one Classifier, memory watched.

    python benchmarks/scripts/steady_state.py runs/bench-export/variant0/model.int8.onnx ../shared/data/flowers5/valid

4 threads share one Classifier (one onnxruntime session, one intra-op thread per call by default)
and make 2,000 predictions over the photos in turn. Resident memory is read every 250 predictions;
the first 250 (four threads each getting their onnxruntime buffers) are the warm-up, and the figure
is how far memory moved from there to the end.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path

from flower_edge.runtime import Classifier
from flower_edge.runtime.image import is_image_file


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("photos", type=Path)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--predictions", type=int, default=2000)
    parser.add_argument("--session-threads", type=int, default=1)
    args = parser.parse_args()

    photos = sorted(p for p in args.photos.rglob("*") if is_image_file(p))
    clf = Classifier(args.model, threads=args.session_threads)
    for p in photos[:100]:
        clf.predict(p)
    after_warmup = rss_mb()
    samples, errors, done = [], [], [0]
    lock = threading.Lock()

    def work(offset: int) -> None:
        i = offset
        while True:
            with lock:
                if done[0] >= args.predictions:
                    return
                done[0] += 1
                n = done[0]
            try:
                top = clf.predict(photos[i % len(photos)], k=5)
                assert (len(top) == 5 and abs(sum(t.prob for t in top) - 1) < 1e-3) or len(top) < 5
            except Exception as e:
                errors.append(repr(e))
            if n % 250 == 0:
                samples.append((n, rss_mb()))
            i += args.threads

    start = time.perf_counter()
    threads = [threading.Thread(target=work, args=(k,)) for k in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    end = rss_mb()
    samples.sort()
    warm = samples[0][1]
    report = {
        "predictions": done[0],
        "threads": args.threads,
        "errors": len(errors),
        "seconds": round(seconds, 2),
        "per_second": round(done[0] / seconds, 1),
        "rss_mb_single_thread_warmup": round(after_warmup, 1),
        "rss_mb_after_250": round(warm, 1),
        "rss_mb_end": round(end, 1),
        "rss_mb_moved_after_250": round(end - warm, 1),
        "rss_mb_samples": {n: round(m, 1) for n, m in samples},
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
