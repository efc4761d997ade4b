"""Exports of one checkpoint, their parity with PyTorch, valid accuracy and batch-1 latency.

    python benchmarks/scripts/export_int8.py runs/flower.pth ../shared/data/flowers102 --out runs/bench-export
    python benchmarks/scripts/export_int8.py runs/f5.pth ../shared/data/flowers5 --variants default,tune

Each variant is a fresh ``flower-export`` process (what a user types) that calibrates (and tunes)
on DATA/train and verifies on every DATA/valid photo (agreement threshold 0, so every variant
reports). Every model then runs through flower-edge's own session (runtime/session.py: the int8
kernel path this CPU gets), plus the default int8 model on the other path for comparison. Latency
is batch 1 on --threads threads, all models in one process, measured in interleaved rounds (each
round times every model in turn), so that machine noise hits them alike; the table gives the
median over all runs and the median of the per-round fp32/model ratios. Writes a Markdown table
and the raw figures, with the machine and its int8 features, to --out.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from flower_edge.runtime.cpu import describe_machine
from flower_edge.runtime.session import kernel_path, open_session

VARIANTS = {
    "budget": ("int8 --max-drop 0.2 (the search)", ["--max-drop", "0.2"]),
    "all-int8": ("int8 --float-layers 0 (everything but the logits int8)", ["--float-layers", "0", "--no-tune"]),
    "first6": ("int8 --float-layers 6 (the default before the search)", ["--float-layers", "6", "--no-tune"]),
    "tune": ("int8 --float-layers 0 --tune", ["--float-layers", "0", "--tune"]),
    "reduce-range": ("int8 --reduce-range (7-bit weights)", ["--float-layers", "0", "--no-tune", "--reduce-range"]),
    "reduce-range-tune": ("int8 --reduce-range --tune", ["--float-layers", "0", "--reduce-range", "--tune"]),
    "percentile": (
        "int8 --calib-method percentile",
        ["--float-layers", "0", "--no-tune", "--calib-method", "percentile"],
    ),
}


def main() -> None:
    args = _arguments()
    from flower_edge.runtime.card import ModelCard
    from flower_edge.runtime.image import load_image, preprocess

    exports = {VARIANTS[key][0]: _export(args, key) for key in args.variants.split(",")}
    first = exports[next(iter(exports))]["folder"]
    card = ModelCard.from_json((first / "card.json").read_text())
    photos = sorted(p for p in (args.data / "valid").rglob("*") if p.is_file())
    labels = np.array([card.class_to_idx[p.parent.name] for p in photos])
    x = np.stack([preprocess(load_image(p), card) for p in photos])

    models = {"onnx fp32": first / "model.onnx"}
    models.update({name: e["folder"] / "model.int8.onnx" for name, e in exports.items()})
    sessions = {name: open_session(path, args.threads) for name, path in models.items()}
    base = next(iter(exports))
    other = "fast" if kernel_path(sessions[base]) == "exact" else "exact"
    paths = {name: kernel_path(s) for name, s in sessions.items()}
    forced = f"{base}, forced onto the {other} path"
    sessions[forced], paths[forced] = open_session(models[base], args.threads, int8_path=other), other
    accuracy = {name: float((logits(s, x).argmax(1) == labels).mean()) for name, s in sessions.items()}
    reference = logits(sessions["onnx fp32"], x).argmax(1)
    agreement = {name: float((logits(s, x).argmax(1) == reference).mean()) for name, s in sessions.items()}
    times, ratios = _timings(sessions, x[:1], args.rounds, args.runs)

    sizes = {name: path.stat().st_size / 1e6 for name, path in models.items()}
    rows = []
    for name in sessions:
        size = sizes.get(name, sizes[base])
        rows.append(
            {
                "model": name,
                "size_mb": round(size, 2),
                "size_vs_fp32": round(size / sizes["onnx fp32"], 3),
                "valid_top1": accuracy[name],
                "top1_agreement_fp32_onnx": agreement[name],
                "latency_ms_median": 1e3 * float(np.median(times[name])),
                "latency_ms_p95": 1e3 * float(np.percentile(times[name], 95)),
                "speedup_vs_fp32_median_of_rounds": float(np.median(ratios[name])),
                "int8_path": paths.get(name, ""),
                "export_seconds": exports[name]["seconds"] if name in exports else None,
            }
        )
    _write(args, rows, {name: e["report"]["parity"] for name, e in exports.items()}, len(photos))


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("data", type=Path, help="classic layout: calibrates on train/, measures on valid/")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-export"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--runs", type=int, default=100, help="timed runs per model per round")
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help=f"comma-separated, from {', '.join(VARIANTS)}; the first is the reference int8 model",
    )
    parser.add_argument(
        "--extra", default="", help="more flower-export options for every variant, e.g. '--tune-size 500'"
    )
    args = parser.parse_args()
    unknown = [v for v in args.variants.split(",") if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant {unknown[0]!r}; choose from {', '.join(VARIANTS)}")
    return args


def _export(args: argparse.Namespace, key: str) -> dict:
    """flower-export of one variant into OUT/KEY: its folder, seconds and --json report."""
    name, extra = VARIANTS[key]
    folder = args.out / key
    cmd = [
        "flower-export",
        str(args.checkpoint),
        "-o",
        str(folder),
        "--quantize",
        "--calib-data",
        str(args.data),
        "--verify-data",
        str(args.data / "valid"),
        "--verify-size",
        "0",
        "--min-agreement",
        "0",
        "--no-ort",
        "--json",
        "--quiet",
        *extra,
        *args.extra.split(),
    ]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stderr}")
    seconds = time.perf_counter() - start
    print(f"exported {name} in {seconds:.0f} s", file=sys.stderr)
    return {"folder": folder, "seconds": seconds, "report": json.loads(done.stdout)}


def _timings(sessions: dict, one: np.ndarray, rounds: int, runs: int) -> tuple[dict, dict]:
    """Batch-1 seconds of every run of each session, and each round's fp32/model ratio of medians,
    in interleaved rounds (a busy machine slows them all alike)."""
    for s in sessions.values():
        for _ in range(20):
            s.run(None, {"image": one})
    times: dict[str, list[float]] = {name: [] for name in sessions}
    ratios: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(rounds):
        medians = {}
        for name, s in sessions.items():
            t = []
            for _ in range(runs):
                start = time.perf_counter()
                s.run(None, {"image": one})
                t.append(time.perf_counter() - start)
            times[name] += t
            medians[name] = float(np.median(t))
        for name in sessions:
            ratios[name].append(medians["onnx fp32"] / medians[name])
    return times, ratios


def _write(args: argparse.Namespace, rows: list[dict], parity: dict, photos: int) -> None:
    """OUT/export_int8.md (a table under the machine's line) and OUT/export_int8.json."""
    import onnxruntime

    machine = {
        **describe_machine(),
        "threads": args.threads,
        "onnxruntime": onnxruntime.__version__,
        "valid_photos": photos,
        "rounds": args.rounds,
        "runs_per_round": args.runs,
    }
    table = [
        "| model | kernels | size MB | of fp32 | valid top-1 | top-1 agreement with fp32 | batch-1 ms (median / p95) | speed-up vs fp32 | export s |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        table.append(
            f"| {r['model']} | {r['int8_path'] if 'int8' in r['model'] else ''} | {r['size_mb']:.2f} | "
            f"{r['size_vs_fp32']:.1%} | {r['valid_top1']:.2%} | "
            f"{r['top1_agreement_fp32_onnx']:.2%} | {r['latency_ms_median']:.2f} / {r['latency_ms_p95']:.2f} | "
            f"{r['speedup_vs_fp32_median_of_rounds']:.2f}x | "
            f"{'' if r['export_seconds'] is None else round(r['export_seconds'])} |"
        )
    text = "\n".join(table)
    args.out.mkdir(parents=True, exist_ok=True)
    int8 = machine["int8"]
    features = "VNNI" if int8["vnni"] else "AVX2, no VNNI" if int8["avx2"] else int8["machine"]
    (args.out / "export_int8.md").write_text(
        f"{machine['date'][:10]}, {machine['cpu']} ({features}), {args.threads} threads, onnxruntime "
        f"{machine['onnxruntime']}, {photos} valid photos\n\n{text}\n"
    )
    (args.out / "export_int8.json").write_text(
        json.dumps({"machine": machine, "rows": rows, "parity": parity}, indent=2)
    )
    print(text)


def logits(session, x: np.ndarray) -> np.ndarray:
    return np.concatenate([session.run(None, {"image": x[i : i + 32]})[0] for i in range(0, len(x), 32)])


if __name__ == "__main__":
    main()
