"""flower-run --jsonl on many photos: time to the first answer, peak memory, throughput against the
session alone, and an interrupted run resumed.

    python benchmarks/scripts/stream_run.py runs/f102/model.int8.onnx photos_1e5/ --photos 1000 100000

For each count N: a folder of the first N photos (symbolic links) is answered by ``/usr/bin/time -v
flower-run MODEL FOLDER --jsonl OUT`` in a subprocess, the output file watched every 10 ms. It
reports the time from start to the first line, the peak RSS, and the answers a second from the first
line to the last (steady state). The session-only rate is measured in the same run, before and after
the subprocess: the model's onnxruntime session on batches of already decoded photos, nothing else.
``--interrupt`` kills a second run of the smallest count with SIGKILL half way, resumes it (``--resume``) and compares the
file with the uninterrupted one byte for byte.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from itertools import islice
from pathlib import Path

import numpy as np

from flower_edge.runtime.predict import Classifier, iter_inputs


def session_rate(model: str, photos: list[str], threads: int, batch: int, seconds: float = 10.0) -> float:
    clf = Classifier(model, threads=threads)
    x = np.stack([clf._input(p) for p in photos[:batch]])
    clf._probabilities(x)  # warm
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        clf._probabilities(x)
        done += len(x)
    return done / (time.perf_counter() - start)


def watched(cmd: list[str], out: Path, kill_after: int | None = None) -> dict:
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    first = None
    while proc.poll() is None:
        time.sleep(0.01)
        if out.exists() and out.stat().st_size > 0:
            if first is None:
                first = time.perf_counter() - start
            if kill_after is not None and out.stat().st_size > kill_after:
                os.killpg(proc.pid, signal.SIGKILL)  # /usr/bin/time and flower-run under it
                proc.wait()
                return {"killed_at_bytes": out.stat().st_size}
    wall = time.perf_counter() - start
    err = proc.stderr.read()
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", err)
    lines = sum(1 for _ in open(out))
    return {
        "exit": proc.returncode,
        "first_answer_s": first,
        "wall_s": wall,
        "answers": lines,
        "steady_img_s": (lines - 1) / (wall - first) if first else None,
        "peak_rss_mb": int(rss.group(1)) / 1024 if rss else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("folder")
    ap.add_argument("--photos", type=int, nargs="+", default=[1000, 100000])
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--interrupt", action="store_true")
    ap.add_argument("--json", metavar="PATH")
    args = ap.parse_args()
    report = {"model": args.model, "threads": args.threads, "runs": []}
    sample = list(islice(iter_inputs([args.folder]), args.batch_size))
    before = session_rate(args.model, sample, args.threads, args.batch_size)
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.photos:
            run = _one_size(args, Path(tmp), n)
            report["runs"].append(run)
            print(json.dumps(run), flush=True)
    after = session_rate(args.model, sample, args.threads, args.batch_size)
    report["session_only_img_s"] = {"before": before, "after": after}
    print(f"session only (batches of {args.batch_size}, decoded): {before:.0f} img/s before, {after:.0f} after")
    for run in report["runs"]:
        share = run["steady_img_s"] / ((before + after) / 2)
        print(
            f"{run['photos']:>7,} photos: first answer {run['first_answer_s']:.2f} s, peak RSS "
            f"{run['peak_rss_mb']:.0f} MB, {run['steady_img_s']:.0f} img/s = {share:.0%} of the session alone"
            + (f", resumed after SIGKILL: identical={run['interrupted']['same_bytes']}" if "interrupted" in run else "")
        )
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


def _one_size(args: argparse.Namespace, tmp: Path, n: int) -> dict:
    """flower-run --jsonl over the first ``n`` photos (linked into one folder), watched; with
    --interrupt, at the smallest size, killed half-way and resumed."""
    folder = tmp / f"n{n}"
    folder.mkdir()
    for i, p in enumerate(islice(iter_inputs([args.folder]), n)):
        (folder / f"{i:07d}{Path(p).suffix}").symlink_to(os.path.abspath(p))
    out = tmp / f"n{n}.jsonl"
    cmd = [
        "/usr/bin/time",
        "-v",
        sys.executable,
        "-m",
        "flower_edge.runtime.cli",
        args.model,
        str(folder),
        "--jsonl",
        str(out),
        "--threads",
        str(args.threads),
        "--batch-size",
        str(args.batch_size),
    ]
    run = {"photos": n, **watched(cmd, out)}
    if args.interrupt and n == min(args.photos):
        cut = tmp / f"n{n}-cut.jsonl"
        size = out.stat().st_size
        again = [c if c != str(out) else str(cut) for c in cmd]
        killed = watched(again, cut, size // 2)
        resumed = watched([*again, "--resume"], cut)
        run["interrupted"] = {
            **killed,
            "resumed_exit": resumed["exit"],
            "same_bytes": cut.read_bytes() == out.read_bytes(),
        }
    return run


if __name__ == "__main__":
    main()
