"""Wall time and valid accuracy of training recipes: the default, the frozen and seed-style ones, and Lite2.

    python benchmarks/scripts/train_recipe.py ../shared/data/flowers102 --out runs/bench-train-f102
    python benchmarks/scripts/train_recipe.py ../shared/data/flowers5 --only default --out runs/bench-train-f5
    python benchmarks/scripts/train_recipe.py synthetic --epochs 2      # other options go to flower-train
    python benchmarks/scripts/train_recipe.py ../shared/data/flowers102 --only lite2   # the 99% recipe

Each recipe runs as a fresh ``flower-train`` process (what a user types), timed from start to
exit; the figures come from its ``--json`` report. Prints a Markdown table and writes it, with the
raw figures and the machine, to --out.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from flower_edge.runtime.cpu import describe_machine

RECIPES = {
    "default": [],
    "frozen": ["--freeze"],
    "seed-style": [
        "--freeze",
        "--hidden",
        "256",
        "--dropout",
        "0.25",
        "--optimizer",
        "adam",
        "--scheduler",
        "step",
        "--step-size",
        "4",
        "--gamma",
        "0.1",
    ],
    # The most accurate recipe measured on the CPU (issue 12): a larger backbone, two more trained
    # blocks (all six at 8 x 8 at 256 px, so cheap), more cached views and epochs. About 4x the default's time.
    "lite2": [
        "--arch",
        "efficientnet_lite2",
        "--image-size",
        "256",
        "--finetune-blocks",
        "6",
        "--epochs",
        "10",
        "--cache-views",
        "10",
    ],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-train"))
    parser.add_argument(
        "--only",
        choices=list(RECIPES),
        action="append",
        help="run only this recipe (repeatable): "
        + "; ".join(f"{name}: flower-train DATA {' '.join(options)}".rstrip() for name, options in RECIPES.items()),
    )
    args, extra = parser.parse_known_args()  # anything else goes to every flower-train run
    args.out.mkdir(parents=True, exist_ok=True)

    rows = []
    for i, (name, options) in enumerate(RECIPES.items()):
        if args.only and name not in args.only:
            continue
        ckpt = args.out / f"recipe{i}.pth"
        cmd = ["flower-train", args.data, "-o", str(ckpt), "--json", "--quiet", *options, *extra]
        started = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            sys.exit(f"{name}: flower-train failed: {done.stderr.strip()}")
        report = json.loads(done.stdout)
        rows.append(
            {
                "recipe": name,
                "command": " ".join(cmd),
                "wall_s": round(seconds, 1),
                "epochs": len(report["history"]),
                "best_epoch": report["best_epoch"],
                "valid_top1": report["metrics"]["valid_top1"],
                "valid_top5": report["metrics"]["valid_top5"],
                "history": report["history"],
            }
        )
        print(f"{name}: valid top-1 {rows[-1]['valid_top1']:.2%} in {seconds:.0f} s", file=sys.stderr)

    machine = describe_machine()
    table = [
        "| recipe | options | epochs | valid top-1 | valid top-5 | wall time |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    table += [
        f"| {r['recipe']} | `{' '.join(RECIPES[r['recipe']]) or '(none)'}` | {r['epochs']} (best {r['best_epoch']}) | {r['valid_top1']:.2%} | "
        f"{r['valid_top5']:.2%} | {r['wall_s'] / 60:.1f} min |"
        for r in rows
    ]
    text = "\n".join(table) + f"\n\n{machine['date'][:10]}, {machine['cpu']}, {machine['cores']} cores, CPU only.\n"
    print(text)
    (args.out / "train_recipe.md").write_text(text)
    (args.out / "train_recipe.json").write_text(json.dumps({"machine": machine, "runs": rows}, indent=2))


if __name__ == "__main__":
    main()
