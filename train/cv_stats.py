"""The arithmetic of cross-validation reports (train/cv.py): a mean's interval, McNemar's test, and
the paired comparison of two recipes, on one cut of the folds or pooled over several.

    c = compare(a, b)                     # two reports on the same folds: per fold and per photo
    c = compare_cuts([a0, a1], [b0, b1])  # pooled over cuts (corrected repeated K-fold t-test)
    print(describe_comparison(c))
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from flower_edge.common.errors import ConfigError

MAX_FOLDS = 20
MAX_CUT = 1000
"""The most folds and the highest cut --cv and --cv-cut take."""
KIND = "flower-edge cross-validation"
"""What a report says it is (its "kind")."""
# fmt: off
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045)
# fmt: on
"""Student's t, two-sided 95%, for 1 to 29 degrees of freedom (beyond: the normal's 1.96)."""


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


def overlap(reports: Sequence[dict]) -> dict:
    """How the photos that several recipes miss overlap, on the same photos in the same folds: each
    report's misses, the photos all miss, those at least one misses, and the share a majority
    answers right (a floor for the majority vote of the recipes' models: where most are right,
    they give the same answer)."""
    if len(reports) < 2:
        raise ConfigError("--overlap needs two reports or more")
    for report in reports[1:]:
        _check_pair(reports[0], report)
    names = list(reports[0]["answers"])
    right = [sum(report["answers"][name][1] for report in reports) for name in names]
    n, k = len(names), len(reports)
    return {
        "photos": n,
        "missed": [sum(1 for v in report["answers"].values() if not v[1]) for report in reports],
        "missed_by_all": sum(1 for r in right if r == 0),
        "missed_by_any": sum(1 for r in right if r < k),
        "right_by_majority": sum(1 for r in right if 2 * r > k) / n,
        "right_by_any": sum(1 for r in right if r > 0) / n,
    }


def describe_overlap(o: dict) -> str:
    return (
        f"{o['photos']} photos; missed by each: {', '.join(map(str, o['missed']))}; by all {o['missed_by_all']}, "
        f"by at least one {o['missed_by_any']}; right for a majority {o['right_by_majority']:.2%}, for at least "
        f"one {o['right_by_any']:.2%}"
    )
