"""Cross-validation: a recipe's accuracy on photos no decision has seen, and whether one recipe beats another.

    flower-train flowers/ --cv 5 --cv-report default.json                  # K folds over train + valid
    flower-train flowers/ --cv 5 --finetune-blocks 4 --cv-report four.json --compare default.json
    python -m flower_edge.train.cv four.json default.json                  # the paired comparison alone
    python -m flower_edge.train.cv default.json default-cut1.json --vs four.json four-cut1.json  # pooled
    python -m flower_edge.train.cv --overlap default.json four.json lite1.json   # which photos each misses
    flower-train flowers/ --cv 5 --cv-cut 1 --cv-report default-cut1.json   # the same photos, cut another way

One split's figure moves with the photos that happen to be in it (Flowers102's 818 valid photos:
0.12 points each, and seeds alone move a recipe by +/- 0.3), so a recipe chosen on it may be fitted
to those photos. Here train and valid are pooled and cut into K folds; each fold is a full training
run that is evaluated on the photos it did not train on, so every photo is answered exactly once.
The test split, if any, is never touched. A fold's figure is its last epoch's model: picking
the best epoch by the fold's own photos would peek at them.

The folds are stratified and stable: within each class the photos are ordered by a hash of their
file name and dealt out in turn, so each fold holds every class in proportion, and the same photos
fall in the same folds on every run and machine. Two recipes run on the same data therefore answer
the same photos in the same folds, and their comparison is paired: per fold (mean difference and
its 95% t-interval) and per photo (McNemar's exact test on the photos exactly one recipe answers
right). The frozen blocks' features are computed once for all folds (``SharedFeatures``).

With K = 5 the per-fold t-interval has 4 degrees of freedom, so a gain that the photos call
significant can still straddle zero (256 px against 224 on Flowers102: +0.30 points, McNemar
p = 0.025, folds -0.07 to +0.67). ``--cv-cut N`` deals the photos into folds by another hash (cut 0
is the original), equally stratified and stable, so both recipes can be compared again on folds
the first comparison never used, and ``compare_cuts`` pools the cuts.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from flower_edge.common.errors import ConfigError

from .config import TrainConfig
from .cv_stats import (
    KIND,
    MAX_CUT,
    MAX_FOLDS,
    compare,
    compare_cuts,
    describe_comparison,
    describe_overlap,
    interval,
    overlap,
)
from .data import DataSource, Sample, open_data

MAX_REPORT_BYTES = 256 * 2**20  # 10^6 photos take about 60 MB


def assign_folds(samples: Sequence[Sample], k: int, cut: int = 0) -> list[int]:
    """The fold (0 to k-1) of each sample: per class, ordered by a hash of the file name, dealt in turn.

    Each class's photos spread over the folds within one of each other; the deal goes on from class to
    class, so the folds' sizes differ by at most one photo too. Another ``cut`` salts the hash: another
    order within each class, so other folds of the same photos."""
    if not 2 <= k <= MAX_FOLDS:
        raise ConfigError(f"--cv must be between 2 and {MAX_FOLDS} folds, found {k}")
    if not 0 <= cut <= MAX_CUT:
        raise ConfigError(f"--cv-cut must be between 0 and {MAX_CUT}, found {cut}")
    by_class: dict[int, list[int]] = {}
    for i, sample in enumerate(samples):
        by_class.setdefault(sample.label, []).append(i)
    folds = [0] * len(samples)
    dealt = 0
    for label in sorted(by_class):
        members = sorted(by_class[label], key=lambda i: (_digest(samples[i].path.name, cut), str(samples[i].path)))
        for rank, i in enumerate(members):
            folds[i] = (dealt + rank) % k
        dealt += len(members)
    return folds


def _digest(name: str, cut: int = 0) -> str:
    salted = name if cut == 0 else f"cut {cut}/{name}"  # cut 0 keeps the reports written before cuts
    return hashlib.sha256(salted.encode("utf-8", "surrogateescape")).hexdigest()


@dataclass
class Fold:
    train: list[Sample]
    valid: list[Sample]


def make_folds(source: DataSource, k: int, cut: int = 0) -> tuple[list[Sample], list[int], list[Fold]]:
    """The pooled photos (train, then valid), the fold of each, and the K train/valid splits."""
    pool = source.splits["train"] + source.splits.get("valid", [])
    counts: dict[int, int] = {}
    for sample in pool:
        counts[sample.label] = counts.get(sample.label, 0) + 1
    fewest = min(counts, key=lambda label: counts[label])
    if counts[fewest] < k:
        raise ConfigError(
            f"--cv {k}: class {source.class_ids[fewest]!r} has {counts[fewest]} photos in train and "
            f"valid together; every class needs at least {k}, one in each fold"
        )
    folds = assign_folds(pool, k, cut)
    return (
        pool,
        folds,
        [
            Fold([s for s, f in zip(pool, folds) if f != i], [s for s, f in zip(pool, folds) if f == i])
            for i in range(k)
        ],
    )


def cross_validate(config: TrainConfig, k: int, reporter, cut: int = 0) -> dict:
    """Train ``config`` on each of ``k`` folds (dealt by ``cut``) of train + valid; the report."""
    from .features import SharedFeatures
    from .loop import train

    started = time.perf_counter()
    source = open_data(
        config.data,
        valid_fraction=config.valid_fraction,
        labels_file=Path(config.labels) if config.labels else None,
        task=reporter.task,
        follow_symlinks=config.follow_symlinks,
    )
    reporter.source(source)
    pool, _folds, splits = make_folds(source, k, cut)
    config = config.resolved(min(len(fold.train) for fold in splits))  # one depth for every fold
    shared = SharedFeatures(pool)
    top1, seconds, answers = [], [], {}
    root = source.root
    try:
        with tempfile.TemporaryDirectory(prefix="flower-cv-") as tmp:
            for i, fold in enumerate(splits):
                reporter.message(
                    f"fold {i + 1}/{k}: training on {len(fold.train)} photos, evaluating on "
                    f"{len(fold.valid)} it never sees"
                )
                t0 = time.perf_counter()
                fold_source = replace(source, splits={"train": fold.train, "valid": fold.valid})
                result = train(
                    replace(config, output=str(Path(tmp) / f"fold{i}.pth")), reporter, source=fold_source, shared=shared
                )
                right = result.valid_correct or []
                seconds.append(time.perf_counter() - t0)
                top1.append(sum(right) / len(right))
                for sample, ok in zip(fold.valid, right):
                    answers[_name(sample.path, root)] = [i, int(ok)]
                reporter.message(f"fold {i + 1}/{k}: top-1 {top1[-1]:.2%} in {seconds[-1]:.0f} s")
    finally:
        shared.close()
    mean, sd, low, high = interval(top1)
    low, high = max(0.0, low), min(1.0, high)  # an accuracy's interval (few folds can reach past 0 or 1)
    recipe = {key: value for key, value in config.to_dict().items() if key not in ("data", "output")}
    return {
        "kind": KIND,
        "data": str(config.data),
        "folds": k,
        "cut": cut,
        "photos": len(pool),
        "recipe": recipe,
        "top1": top1,
        "mean": mean,
        "std": sd,
        "ci95": [low, high],
        "seconds": [round(s, 1) for s in seconds],
        "total_seconds": round(time.perf_counter() - started, 1),
        "answers": answers,
    }


def _name(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def describe(report: dict) -> str:
    low, high = report["ci95"]
    minutes = sum(report["seconds"]) / len(report["seconds"]) / 60
    cut = f" (cut {report['cut']})" if report.get("cut") else ""
    return (
        f"{report['folds']}-fold{cut} cross-validated top-1 {report['mean']:.2%} "
        f"(95% interval {low:.2%} to {high:.2%}, sd {report['std']:.2%}; folds "
        f"{', '.join(f'{t:.2%}' for t in report['top1'])}); {minutes:.1f} min a fold, "
        f"{report['total_seconds'] / 60:.1f} min in all"
    )


def read_report(path: str | Path) -> dict:
    """A report as --cv-report wrote it, or gzipped (``.json.gz``: how benchmarks/cv keeps them)."""
    try:
        with open(path, "rb") as f:
            gzipped = f.read(2) == b"\x1f\x8b"
        with gzip.open(path) if gzipped else open(path, "rb") as f:
            data = f.read(MAX_REPORT_BYTES + 1)
        if len(data) > MAX_REPORT_BYTES:
            raise ValueError(f"over {MAX_REPORT_BYTES // 2**20} MB")
        report = json.loads(data)
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: not a readable cross-validation report ({e})") from None
    if not isinstance(report, dict) or report.get("kind") != KIND:
        raise ConfigError(f"{path}: not a cross-validation report (flower-train --cv K --cv-report FILE)")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """python -m flower_edge.train.cv A.json B.json: the paired comparison of two reports;
    python -m flower_edge.train.cv A.json A-cut1.json --vs B.json B-cut1.json: pooled over cuts;
    python -m flower_edge.train.cv --overlap A.json B.json [C.json ...]: which photos each misses."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--overlap"]:
        return _overlap(args[1:])
    at = args.index("--vs") if "--vs" in args else None
    side_a, side_b = (args[:at], args[at + 1 :]) if at is not None else (args[:1], args[1:])
    if not side_a or not side_b or "--vs" in side_b or (at is None and len(args) != 2):
        print(
            "usage: python -m flower_edge.train.cv A.json B.json  (two flower-train --cv reports)\n"
            "       python -m flower_edge.train.cv A.json [A-cut1.json ...] --vs B.json [B-cut1.json ...]  "
            "(pooled over --cv-cut)\n"
            "       python -m flower_edge.train.cv --overlap A.json B.json [C.json ...]  (which photos each misses)",
            file=sys.stderr,
        )
        return 2
    try:
        a, b = [read_report(p) for p in side_a], [read_report(p) for p in side_b]
        for side, reports in (("A", a), ("B", b)):
            for report in reports:
                print(f"{describe(report)}  [{side}]")
        print(describe_comparison(compare_cuts(a, b) if len(a) + len(b) > 2 else compare(a[0], b[0])))
    except ConfigError as e:
        print(f"flower-cv: {e}", file=sys.stderr)
        return 1
    return 0


def _overlap(paths: Sequence[str]) -> int:
    try:
        reports = [read_report(p) for p in paths]
        figures = overlap(reports)
        for path, report in zip(paths, reports):
            print(f"{describe(report)}  [{path}]")
        print(describe_overlap(figures))
    except ConfigError as e:
        print(f"flower-cv: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
