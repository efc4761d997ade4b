"""Cross-validation: a recipe's accuracy on photos no decision has seen, and whether one recipe beats another.

    flower-train flowers/ --cv 5 --cv-report default.json                  # K folds over train + valid
    flower-train flowers/ --cv 5 --finetune-blocks 4 --cv-report four.json --compare default.json
    python -m flower_edge.train.cv four.json default.json                  # the paired comparison alone
    python -m flower_edge.train.cv default.json default-cut1.json --vs four.json four-cut1.json  # pooled
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
import math
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from flower_edge.common.errors import ConfigError

from .config import TrainConfig
from .data import DataSource, Sample, open_data

MAX_FOLDS = 20
MAX_CUT = 1000
MAX_REPORT_BYTES = 256 * 2**20  # 10^6 photos take about 60 MB
KIND = "flower-edge cross-validation"
_T975 = (
    12.706,
    4.303,
    3.182,
    2.776,
    2.571,
    2.447,
    2.365,
    2.306,
    2.262,
    2.228,
    2.201,
    2.179,
    2.160,
    2.145,
    2.131,
    2.120,
    2.110,
    2.101,
    2.093,
    2.086,
    2.080,
    2.074,
    2.069,
    2.064,
    2.060,
    2.056,
    2.052,
    2.048,
    2.045,
)
"""Student's t, two-sided 95%, for 1 to 29 degrees of freedom (beyond: the normal's 1.96)."""


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


def interval(values: Sequence[float]) -> tuple[float, float, float, float]:
    """Mean, sample standard deviation, and the 95% t-interval of the mean."""
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    half = (_T975[n - 2] if n - 2 < len(_T975) else 1.96) * sd / math.sqrt(n) if n > 1 else 0.0
    return mean, sd, mean - half, mean + half


def mcnemar(only_a: int, only_b: int) -> float:
    """Two-sided exact p-value that photos right for one recipe alone split evenly between the two."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(only_a, only_b) + 1)) / 2**n
    return min(1.0, 2 * tail)


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


def _check_pair(a: dict, b: dict) -> None:
    for report in (a, b):
        if report.get("kind") != KIND:
            raise ConfigError("a cross-validation report (flower-train --cv K --cv-report FILE) is needed")
    if {name: v[0] for name, v in a["answers"].items()} != {name: v[0] for name, v in b["answers"].items()}:
        raise ConfigError(
            "the two reports' folds differ (other photos, another --cv K or another --cv-cut): "
            "a paired comparison needs the same photos in the same folds"
        )


def _verdict(mean: float, low: float, high: float, p: float) -> str:
    if p < 0.05 and (low > 0 or high < 0):
        return "B is better" if mean > 0 else "A is better"
    return "no difference beyond noise"


def compare(a: dict, b: dict) -> dict:
    """Paired comparison of two reports over the same folds: is B better than A beyond noise?"""
    _check_pair(a, b)
    diff = [tb - ta for ta, tb in zip(a["top1"], b["top1"])]
    mean, sd, low, high = interval(diff)
    only_a = sum(1 for n, v in a["answers"].items() if v[1] and not b["answers"][n][1])
    only_b = sum(1 for n, v in b["answers"].items() if v[1] and not a["answers"][n][1])
    p = mcnemar(only_a, only_b)
    return {
        "a_mean": a["mean"],
        "b_mean": b["mean"],
        "difference": mean,
        "difference_std": sd,
        "difference_ci95": [low, high],
        "only_a_right": only_a,
        "only_b_right": only_b,
        "mcnemar_p": p,
        "verdict": _verdict(mean, low, high, p),
    }


def compare_cuts(a: Sequence[dict], b: Sequence[dict]) -> dict:
    """Paired comparison pooled over several cuts (``--cv-cut``) of the same photos: A's and B's reports
    are paired by cut, and every cut must be on both sides.

    Per fold: the mean of the R x K fold differences, with the corrected repeated K-fold t-test
    (Nadeau and Bengio 2003, Bouckaert and Frank 2004; scikit-learn's model-comparison example): the
    folds of different cuts share photos and every fold's training set overlaps the others', so the
    variance is scaled by 1/(R K) + 1/(K - 1) rather than 1/(R K), on R K - 1 degrees of freedom.
    Per photo: each photo counts how many cuts each recipe answers right, and the exact sign test runs
    on the photos where the counts differ (with one cut, McNemar's test)."""
    cuts_a = {report.get("cut", 0): report for report in a}
    cuts_b = {report.get("cut", 0): report for report in b}
    if len(cuts_a) != len(a) or len(cuts_b) != len(b):
        raise ConfigError("two reports of one side have the same --cv-cut: give each cut once")
    if set(cuts_a) != set(cuts_b):
        raise ConfigError(
            f"the sides' cuts differ (A: {sorted(cuts_a)}, B: {sorted(cuts_b)}): every cut is "
            "needed on both sides to pair them"
        )
    if len({report["folds"] for report in (*a, *b)}) != 1:
        raise ConfigError("the reports have different --cv K: pool cuts of one K")
    diff: list[float] = []
    right_a: dict[str, int] = {}
    right_b: dict[str, int] = {}
    for cut in sorted(cuts_a):
        ra, rb = cuts_a[cut], cuts_b[cut]
        _check_pair(ra, rb)
        diff += [tb - ta for ta, tb in zip(ra["top1"], rb["top1"])]
        for name in ra["answers"]:
            right_a[name] = right_a.get(name, 0) + ra["answers"][name][1]
            right_b[name] = right_b.get(name, 0) + rb["answers"][name][1]
    if right_a.keys() != right_b.keys() or any(len(r["answers"]) != len(right_a) for r in (*a, *b)):
        raise ConfigError("the cuts hold different photos: pool cuts of the same data")
    k, runs = a[0]["folds"], len(diff)
    mean, sd, _, _ = interval(diff)
    t = _T975[runs - 2] if runs - 2 < len(_T975) else 1.96
    half = t * sd * math.sqrt(1 / runs + 1 / (k - 1)) if runs > 1 else 0.0
    more_a = sum(1 for name in right_a if right_a[name] > right_b[name])
    more_b = sum(1 for name in right_a if right_b[name] > right_a[name])
    p = mcnemar(more_a, more_b)
    mean_a, mean_b = (sum(sum(r["top1"]) for r in side) / runs for side in (a, b))
    return {
        "cuts": sorted(cuts_a),
        "a_mean": mean_a,
        "b_mean": mean_b,
        "difference": mean,
        "difference_std": sd,
        "difference_ci95": [mean - half, mean + half],
        "only_a_right": more_a,
        "only_b_right": more_b,
        "mcnemar_p": p,
        "verdict": _verdict(mean, mean - half, mean + half, p),
    }


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


def describe_comparison(c: dict) -> str:
    low, high = c["difference_ci95"]
    if "cuts" not in c:
        return (
            f"B - A: {c['difference']:+.2%} (95% interval {low:+.2%} to {high:+.2%}); photos right for A only "
            f"{c['only_a_right']}, for B only {c['only_b_right']} (McNemar p = {c['mcnemar_p']:.3g}): "
            f"{c['verdict']}"
        )
    return (
        f"pooled over cuts {', '.join(map(str, c['cuts']))}: A {c['a_mean']:.2%}, B {c['b_mean']:.2%}; B - A: "
        f"{c['difference']:+.2%} (95% interval {low:+.2%} to {high:+.2%}, corrected repeated K-fold t); photos "
        f"right in more cuts for A {c['only_a_right']}, for B {c['only_b_right']} (sign test p = "
        f"{c['mcnemar_p']:.3g}): {c['verdict']}"
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
    python -m flower_edge.train.cv A.json A-cut1.json --vs B.json B-cut1.json: pooled over cuts."""
    args = list(sys.argv[1:] if argv is None else argv)
    at = args.index("--vs") if "--vs" in args else None
    side_a, side_b = (args[:at], args[at + 1 :]) if at is not None else (args[:1], args[1:])
    if not side_a or not side_b or "--vs" in side_b or (at is None and len(args) != 2):
        print(
            "usage: python -m flower_edge.train.cv A.json B.json  (two flower-train --cv reports)\n"
            "       python -m flower_edge.train.cv A.json [A-cut1.json ...] --vs B.json [B-cut1.json ...]  "
            "(pooled over --cv-cut)",
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


if __name__ == "__main__":
    sys.exit(main())
