"""Regenerate the flower-bench and cold-start tables of benchmarks/README.md for the default model.

    python benchmarks/scripts/reproduce.py ../shared/data/flowers102 --checkpoint runs/f102.pth

Without --checkpoint it first trains the default recipe (``flower-train DATA``, about 9 minutes on
2 CPU cores for Flowers102). Then: ``flower-bench`` over every format this install writes (export/formats.py) on DATA/valid, and
``benchmarks/scripts/flower_run_vs_seed.py`` (flower-run against a seed-style torch predictor). The tables replace
the text between the markers in benchmarks/README.md; the raw JSON stays in --out.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path)
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-default"))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    checkpoint = args.checkpoint or args.out / "flower.pth"
    if not checkpoint.exists():
        subprocess.run(["flower-train", str(args.data), "-o", str(checkpoint), "--quiet"], check=True)
    # --force: --out is this script's folder, and holds the checkpoint it trained beside the bench files
    bench = subprocess.run(
        [
            "flower-bench",
            str(checkpoint),
            "--data",
            str(args.data),
            "--out",
            str(args.out),
            "--threads",
            str(args.threads),
            "--force",
        ],
        capture_output=True,
        text=True,
    )
    if bench.returncode not in (0, 1) or not (args.out / "bench.md").exists():
        sys.exit(f"flower-bench failed:\n{bench.stderr}")
    verdict = (
        bench.stderr.strip().splitlines()[-1].removeprefix("flower-bench: error: ")
        if bench.returncode
        else "every format passed its agreement threshold"
    )
    photo = next(p for p in sorted((args.data / "valid").rglob("*")) if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    subprocess.run(
        [
            sys.executable,
            str(HERE / "flower_run_vs_seed.py"),
            str(args.out / "export"),
            str(checkpoint),
            str(photo),
            "--out",
            str(args.out),
        ],
        check=True,
        capture_output=True,
    )

    _write_readme(args, checkpoint, verdict, photo)


def _write_readme(args: argparse.Namespace, checkpoint: Path, verdict: str, photo: Path) -> None:
    """The bench table and the cold-start table into benchmarks/README.md, between its markers."""
    table = (args.out / "bench.md").read_text().strip()
    cold = (args.out / "cold_start.md").read_text().strip()
    machine = json.loads((args.out / "bench.json").read_text())["machine"]
    block = (
        f"<!-- flower-bench:start -->\n"
        f"`python benchmarks/scripts/reproduce.py {args.data} --checkpoint {checkpoint}` "
        f"({machine['date'][:10]}, {machine['cpu']}, {machine['cores']} cores, {machine['threads']} threads; "
        f"torch {machine['torch']}, onnxruntime {machine['onnxruntime']}). flower-bench's verdict: {verdict}.\n\n"
        f"{table}\n\nCold start, one image, process start to printed top-5 ({photo.name}):\n\n{cold}\n"
        f"<!-- flower-bench:end -->"
    )
    readme = HERE / "README.md"
    text = readme.read_text()
    pattern = re.compile(r"<!-- flower-bench:start -->.*?<!-- flower-bench:end -->", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    readme.write_text(text)
    print(block)


if __name__ == "__main__":
    main()
