"""Cross-validation: the folds, the arithmetic of the comparison, and a run end to end."""

from __future__ import annotations

import gzip
import json
import random
from collections import Counter
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from flower_edge.common.errors import ConfigError
from flower_edge.train import cv, cv_stats
from flower_edge.train.checkpoint import make_card
from flower_edge.train.cli import app
from flower_edge.train.data import Sample, open_data
from flower_edge.train.features import FeatureCache, SharedFeatures
from flower_edge.train.model import build_model
from flower_edge.train.report import Reporter

runner = CliRunner()


def _samples(per_class: dict[int, int]) -> list[Sample]:
    return [
        Sample(Path(f"data/{label}/photo_{label}_{i:04d}.jpg"), label)
        for label, n in per_class.items()
        for i in range(n)
    ]


def test_folds_are_stratified_balanced_disjoint_and_stable():
    samples = _samples({0: 23, 1: 7, 2: 40, 3: 5, 4: 11})
    k = 5
    folds = cv.assign_folds(samples, k)
    per_class = Counter((s.label, f) for s, f in zip(samples, folds))
    for label in range(5):
        counts = [per_class[label, f] for f in range(k)]
        assert max(counts) - min(counts) <= 1, (label, counts)  # each class in proportion
    sizes = Counter(folds)
    assert max(sizes.values()) - min(sizes.values()) <= 1
    shuffled = samples[:]
    random.Random(1).shuffle(shuffled)
    again = dict(zip(shuffled, cv.assign_folds(shuffled, k)))
    assert all(again[s] == f for s, f in zip(samples, folds))  # the order read does not matter


def test_another_cut_deals_other_folds_equally_stratified_and_stable():
    """--cv-cut N: the same photos in other folds, so a comparison can be repeated on folds it never
    used; cut 0 is the cut the reports before --cv-cut were made with."""
    import hashlib

    samples = _samples({0: 23, 1: 7, 2: 40, 3: 5, 4: 11})
    k = 5
    first, second = cv.assign_folds(samples, k), cv.assign_folds(samples, k, cut=1)
    assert cv.assign_folds(samples, k, cut=0) == first
    assert cv._digest("photo.jpg") == hashlib.sha256(b"photo.jpg").hexdigest()  # older reports still pair
    moved = sum(a != b for a, b in zip(first, second))
    assert moved > len(samples) // 2  # mostly other folds (by chance 1/k would stay)
    per_class = Counter((s.label, f) for s, f in zip(samples, second))
    for label in range(5):
        counts = [per_class[label, f] for f in range(k)]
        assert max(counts) - min(counts) <= 1, (label, counts)
    shuffled = samples[:]
    random.Random(2).shuffle(shuffled)
    assert dict(zip(shuffled, cv.assign_folds(shuffled, k, cut=1))) == dict(zip(samples, second))
    with pytest.raises(ConfigError, match="--cv-cut must be between 0 and"):
        cv.assign_folds(samples, k, cut=-1)


def test_make_folds_pools_train_and_valid_and_answers_each_photo_once(synthetic_dir):
    source = open_data(str(synthetic_dir))
    pool, _, splits = cv.make_folds(source, 3)
    assert set(pool) == set(source.splits["train"]) | set(source.splits["valid"])
    assert not set(pool) & set(source.splits["test"])  # the test split is never used
    for fold in splits:
        assert not set(fold.train) & set(fold.valid)
        assert set(fold.train) | set(fold.valid) == set(pool)
    assert sorted(s.path for fold in splits for s in fold.valid) == sorted(s.path for s in pool)


def test_a_class_with_fewer_photos_than_folds_is_refused(synthetic_dir):
    source = open_data(str(synthetic_dir))
    with pytest.raises(ConfigError, match="at least 20"):
        cv.make_folds(source, 20)
    with pytest.raises(ConfigError, match="between 2 and"):
        cv.assign_folds(_samples({0: 5}), 1)


def test_interval_and_mcnemar_on_known_cases():
    mean, sd, low, high = cv_stats.interval([0.90, 0.92, 0.94, 0.96, 0.98])
    assert mean == pytest.approx(0.94)
    assert sd == pytest.approx(0.001**0.5)
    assert (high - mean) == pytest.approx(2.776 * 0.001**0.5 / 5**0.5)
    assert low == pytest.approx(2 * mean - high)
    assert cv_stats.mcnemar(0, 6) == pytest.approx(2 / 64)
    assert cv_stats.mcnemar(1, 9) == pytest.approx(2 * 11 / 1024)
    assert cv_stats.mcnemar(5, 5) == 1.0 and cv_stats.mcnemar(0, 0) == 1.0


def _report(top1, answers):
    mean, sd, low, high = cv_stats.interval(top1)
    return {
        "kind": cv.KIND,
        "folds": len(top1),
        "top1": top1,
        "mean": mean,
        "std": sd,
        "ci95": [low, high],
        "seconds": [1.0] * len(top1),
        "total_seconds": 5.0,
        "answers": answers,
    }


def test_the_paired_comparison_says_better_only_beyond_noise():
    names = [f"p{i}" for i in range(100)]
    a = _report([0.80] * 5, {n: [i % 5, int(i < 80)] for i, n in enumerate(names)})
    # B right on 12 more photos, spread over the folds, wrong on none that A got
    b = _report([0.92, 0.92, 0.92, 0.92, 0.92], {n: [i % 5, int(i < 92)] for i, n in enumerate(names)})
    c = cv_stats.compare(a, b)
    assert (c["only_a_right"], c["only_b_right"]) == (0, 12)
    assert c["mcnemar_p"] == pytest.approx(2 / 2**12)
    assert c["difference"] == pytest.approx(0.12) and c["verdict"] == "B is better"
    noisy = _report([0.81, 0.79, 0.80, 0.82, 0.78], {n: [i % 5, int(1 <= i < 81)] for i, n in enumerate(names)})
    assert cv_stats.compare(a, noisy)["verdict"] == "no difference beyond noise"
    other = _report([0.8] * 5, {n: [(i + 1) % 5, 1] for i, n in enumerate(names)})
    with pytest.raises(ConfigError, match="folds differ"):
        cv_stats.compare(a, other)


def _cut(report: dict, cut: int) -> dict:
    return {**report, "cut": cut}


def test_comparison_pooled_over_cuts_on_a_known_case(tmp_path, capsys):
    """Two cuts of the same 100 photos: the fold differences are pooled with the corrected repeated
    K-fold t-test, the photos by a sign test on how many cuts each recipe answers them right."""
    names = [f"p{i}" for i in range(100)]
    a0 = _cut(_report([0.80] * 5, {n: [i % 5, int(i < 80)] for i, n in enumerate(names)}), 0)
    b0 = _cut(_report([0.84, 0.80, 0.82, 0.86, 0.78], {n: [i % 5, int(i < 82)] for i, n in enumerate(names)}), 0)
    a1 = _cut(_report([0.80] * 5, {n: [(i + 1) % 5, int(i < 80)] for i, n in enumerate(names)}), 1)
    b1 = _cut(
        _report(
            [0.82, 0.84, 0.80, 0.86, 0.78], {n: [(i + 1) % 5, int(i < 83) and i != 0] for i, n in enumerate(names)}
        ),
        1,
    )
    c = cv_stats.compare_cuts([a0, a1], [b1, b0])  # paired by cut, not by the order given
    diff = [0.04, 0.0, 0.02, 0.06, -0.02, 0.02, 0.04, 0.0, 0.06, -0.02]
    mean, sd, _, _ = cv_stats.interval(diff)
    half = 2.262 * sd * (1 / 10 + 1 / 4) ** 0.5  # t for 9 degrees of freedom
    assert c["difference"] == pytest.approx(mean) and c["difference"] == pytest.approx(0.02)
    assert c["difference_ci95"] == pytest.approx([mean - half, mean + half])
    assert (c["a_mean"], c["b_mean"]) == (pytest.approx(0.80), pytest.approx(0.82))
    # photo 0: A right twice, B once -> A; photos 80, 81: B twice, A never -> B; photo 82: B once -> B
    assert (c["only_a_right"], c["only_b_right"]) == (1, 3)
    assert c["mcnemar_p"] == pytest.approx(cv_stats.mcnemar(1, 3)) and c["verdict"] == "no difference beyond noise"
    one = cv_stats.compare_cuts([a0], [b0])  # one cut: McNemar's test, and an interval wider than the plain t's
    plain = cv_stats.compare(a0, b0)
    assert one["mcnemar_p"] == plain["mcnemar_p"] and one["difference"] == pytest.approx(plain["difference"])
    widths = [c["difference_ci95"][1] - c["difference_ci95"][0] for c in (one, plain)]
    assert widths[0] == pytest.approx(widths[1] * ((1 / 5 + 1 / 4) / (1 / 5)) ** 0.5)
    better = {n: [(i + 1) % 5, 1] for i, n in enumerate(names)}
    clear = cv_stats.compare_cuts(
        [a0, a1],
        [
            _cut(_report([1.0] * 5, {n: [i % 5, 1] for i, n in enumerate(names)}), 0),
            _cut(_report([1.0] * 5, better), 1),
        ],
    )
    assert clear["verdict"] == "B is better" and clear["only_b_right"] == 20
    with pytest.raises(ConfigError, match="cuts differ"):
        cv_stats.compare_cuts([a0, a1], [b0])
    with pytest.raises(ConfigError, match="same --cv-cut"):
        cv_stats.compare_cuts([a0, a0], [b0, b1])
    with pytest.raises(ConfigError, match="folds differ"):
        cv_stats.compare_cuts([a0, a1], [_cut(b0, 1), _cut(b1, 0)])
    for name, report in (("a0", a0), ("a1", a1), ("b0", b0), ("b1", b1)):
        (tmp_path / f"{name}.json").write_text(json.dumps(report))
    files = [str(tmp_path / f"{name}.json") for name in ("a0", "a1", "b0", "b1")]
    gzipped = tmp_path / "b1.json.gz"  # how benchmarks/cv keeps the reports
    gzipped.write_bytes(gzip.compress(json.dumps(b1).encode()))
    files[3] = str(gzipped)
    assert cv.main([*files[:2], "--vs", *files[2:]]) == 0
    out = capsys.readouterr().out
    assert "pooled over cuts 0, 1: A 80.00%, B 82.00%; B - A: +2.00%" in out and out.count("[A]") == 2
    assert cv.main([*files[:2], "--vs", *files[2:3]]) == 1
    assert "cuts differ" in capsys.readouterr().err
    assert cv.main(files[:3]) == 2 and cv.main(["--vs", *files[2:]]) == 2


def test_overlap_of_three_recipes_misses_on_a_known_case(tmp_path, capsys):
    """Photos 0-9 missed by A, 5-14 by B, 8-9 and 20-27 by C: 2 missed by all, 23 by at least one."""
    names = [f"p{i}" for i in range(100)]

    def recipe(missed: set[int]) -> dict:
        return _report([0.9] * 5, {n: [i % 5, int(i not in missed)] for i, n in enumerate(names)})

    a, b, c = recipe(set(range(10))), recipe(set(range(5, 15))), recipe({8, 9, *range(20, 28)})
    o = cv_stats.overlap([a, b, c])
    assert o["missed"] == [10, 10, 10] and (o["missed_by_all"], o["missed_by_any"]) == (2, 23)
    # missed by two or three: 5-7 (A, B) and 8-9 (all) -> 5 photos without a majority
    assert o["right_by_majority"] == pytest.approx(0.95) and o["right_by_any"] == pytest.approx(0.98)
    files = []
    for name, report in (("a", a), ("b", b), ("c", c)):
        files.append(str(tmp_path / f"{name}.json"))
        (tmp_path / f"{name}.json").write_text(json.dumps(report))
    assert cv.main(["--overlap", *files]) == 0
    assert "by all 2, by at least one 23; right for a majority 95.00%" in capsys.readouterr().out
    assert cv.main(["--overlap", files[0]]) == 1 and "two reports or more" in capsys.readouterr().err
    other = _report([0.9] * 5, {n: [(i + 1) % 5, 1] for i, n in enumerate(names)})
    with pytest.raises(ConfigError, match="folds differ"):
        cv_stats.overlap([a, other])


def test_shared_features_give_each_fold_the_rows_a_cache_of_its_own_would(synthetic_dir, make_config):
    source = open_data(str(synthetic_dir))
    pool, _, splits = cv.make_folds(source, 3)
    config = make_config(synthetic_dir, "unused.pth", cache_views=2)
    card = make_card(config, source)
    model = build_model(config.arch, card.num_classes, config.hidden, config.dropout, weights=config.weights)
    prefix = model.prefix(model.num_blocks - 2).eval()
    shared = SharedFeatures(pool)
    fold = splits[1]
    train_views, valid_view = shared.views(
        prefix, 0, card, config, torch.device("cpu"), 0, Reporter(), fold.train, fold.valid
    )
    own = FeatureCache(prefix, card, config.cache_options(), torch.device("cpu"), 0, Reporter())
    _, own_valid, _ = own.build(fold.train[:1], fold.valid)
    ((x_shared, y_shared),) = list(valid_view.batches(len(fold.valid)))
    ((x_own, y_own),) = list(own_valid.batches(len(fold.valid)))
    assert torch.equal(y_shared, y_own) and torch.equal(x_shared, x_own)  # the plain view, row for row
    assert [len(v) for v in train_views] == [len(fold.train)] * 2
    with pytest.raises(ValueError, match="cached for"):
        shared.views(prefix, 1, card, config, torch.device("cpu"), 0, Reporter(), fold.train, fold.valid)


def test_cv_end_to_end_writes_a_report_and_compares(synthetic_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("FLOWER_EDGE_CACHE", str(tmp_path / "cache"))
    args = [
        str(synthetic_dir),
        "--cv",
        "2",
        "--image-size",
        "64",
        "--epochs",
        "1",
        "--finetune-blocks",
        "2",
        "--cache-views",
        "1",
        "--workers",
        "0",
        "-q",
    ]
    first = runner.invoke(app, [*args, "--cv-report", str(tmp_path / "a.json")])
    assert first.exit_code == 0, first.output
    report = json.loads((tmp_path / "a.json").read_text())
    source = open_data(str(synthetic_dir))
    pooled = len(source.splits["train"]) + len(source.splits["valid"])
    assert report["photos"] == pooled and len(report["answers"]) == pooled
    assert report["mean"] == pytest.approx(sum(v[1] for v in report["answers"].values()) / pooled, abs=0.02)
    assert not (tmp_path / "model.pth").exists() and not list(Path.cwd().glob("fold*.pth"))
    again = runner.invoke(app, [*args, "--compare", str(tmp_path / "a.json"), "--json"])
    assert again.exit_code == 0, again.output
    out = json.loads(again.stdout)
    assert out["comparison"]["difference"] == pytest.approx(0.0)  # same recipe, same seed: the same answers
    assert out["comparison"]["verdict"] == "no difference beyond noise"
    other_cut = runner.invoke(app, [*args, "--cv-cut", "1", "--compare", str(tmp_path / "a.json")])
    assert other_cut.exit_code != 0 and "needs the same folds" in other_cut.output
    (tmp_path / "other.json").write_text('{"top1": [1.0]}')
    bad = runner.invoke(app, [*args[:3], "--compare", str(tmp_path / "other.json")])
    assert bad.exit_code != 0 and "not a cross-validation report" in bad.output
