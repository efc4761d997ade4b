"""Cold start: process start to printed top-5 for one image, and the process's peak memory.

    python benchmarks/scripts/flower_run_vs_seed.py runs/bench-export/variant0 runs/bench-train/recipe0.pth rose.jpg --out runs/bench-run

Times, side by side in one run and in turns (so that machine noise hits them alike):
- ``flower-run model.int8.onnx IMAGE`` (the console script a user types),
- the same with the ``.ort`` copy, when there is one,
- a bare 10-line onnxruntime script (benchmarks/scripts/bare_onnxruntime.py), the floor,
- a seed-style torch predictor (benchmarks/scripts/seed_predict.py): import torch and torchvision, load the
  checkpoint, predict.
Peak resident memory comes from wait4() on each process. Prints medians as a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from flower_edge.runtime.cpu import describe_machine

HERE = Path(__file__).resolve().parent


def timed(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds from spawn to exit, and peak RSS in MB, of one process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed: {proc.stderr.read().decode()}")
    return seconds, usage.ru_maxrss / 1024  # Linux reports kilobytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("export", type=Path, help="a flower-export output folder")
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("image", type=Path)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-run"))
    args = parser.parse_args()

    flower_run = shutil.which("flower-run") or sys.exit("flower-run is not on PATH; pip install -e .")
    commands = {
        "flower-run model.int8.onnx": [flower_run, str(args.export / "model.int8.onnx"), str(args.image)],
        "bare onnxruntime script (int8)": [
            sys.executable,
            str(HERE / "bare_onnxruntime.py"),
            str(args.export / "model.int8.onnx"),
            str(args.image),
        ],
        "seed-style torch predictor": [
            sys.executable,
            str(HERE / "seed_predict.py"),
            str(args.checkpoint),
            str(args.image),
        ],
    }
    if (args.export / "model.int8.ort").exists():
        commands["flower-run model.int8.ort"] = [flower_run, str(args.export / "model.int8.ort"), str(args.image)]
    for cmd in commands.values():  # warm the page cache; not timed
        timed(cmd)
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    for _ in range(args.repeats):
        for name, cmd in commands.items():
            runs[name].append(timed(cmd))
    _write(args, runs)


def _write(args: argparse.Namespace, runs: dict[str, list[tuple[float, float]]]) -> None:
    """OUT/cold_start.md and .json: each command's median seconds and peak RSS, against the seed's."""
    seed = float(np.median([s for s, _ in runs["seed-style torch predictor"]]))
    rows = []
    for name, r in runs.items():
        s, m = float(np.median([x for x, _ in r])), float(np.median([x for _, x in r]))
        rows.append(
            {
                "command": name,
                "seconds_median": s,
                "seconds_min": float(min(x for x, _ in r)),
                "peak_rss_mb_median": m,
                "torch_over_this": seed / s,
            }
        )
    lines = [
        "| command | cold start s (median) | peak RSS MB | seed torch time / this |",
        "| --- | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {r['command']} | {r['seconds_median']:.3f} | {r['peak_rss_mb_median']:.0f} | {r['torch_over_this']:.1f}x |"
        for r in rows
    ]
    text = "\n".join(lines)
    machine = {**describe_machine(), "repeats": args.repeats}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cold_start.md").write_text(
        f"{machine['date'][:10]}, {machine['cpu']}, {machine['cores']} cores, median of {args.repeats}\n\n{text}\n"
    )
    (args.out / "cold_start.json").write_text(
        json.dumps({"machine": machine, "rows": rows, "raw": {k: v for k, v in runs.items()}}, indent=2)
    )
    print(text)


if __name__ == "__main__":
    main()
