"""Where the feature cache lives: memory, fp16 files on disk, or nowhere (computed every batch)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flower_edge.train import feature_views, features, train
from flower_edge.train.checkpoint import load_checkpoint
from flower_edge.train.report import Reporter


class Said(Reporter):
    def __init__(self) -> None:
        self.lines: list[str] = []

    def message(self, text: str) -> None:
        self.lines.append(text)


def _cache_lines(reporter: Said) -> list[str]:
    return [line for line in reporter.lines if line.startswith("feature cache:")]


def test_a_cache_over_the_memory_budget_spills_to_disk_and_trains_the_same_model(
    synthetic_dir, tmp_path, make_config, monkeypatch
):
    monkeypatch.setenv("FLOWER_EDGE_CACHE", str(tmp_path / "cache"))
    said_memory, said_disk = Said(), Said()
    a = train(make_config(synthetic_dir, tmp_path / "a.pth", cache_views=2, epochs=3), said_memory)
    b = train(make_config(synthetic_dir, tmp_path / "b.pth", cache_views=2, epochs=3, cache_memory=0.0), said_disk)
    assert "in memory" in _cache_lines(said_memory)[0]
    assert "spilled to disk" in _cache_lines(said_disk)[0]
    state_a, state_b = (load_checkpoint(r.checkpoint)["model_state"] for r in (a, b))
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)  # fp16 rows read back bit for bit
    assert [h["valid_loss"] for h in a.history] == [h["valid_loss"] for h in b.history]
    assert list((tmp_path / "cache" / "features").iterdir()) == []  # removed at the end


def test_no_room_in_memory_or_on_disk_trains_without_a_cache(synthetic_dir, tmp_path, make_config, monkeypatch):
    monkeypatch.setenv("FLOWER_EDGE_CACHE", str(tmp_path / "cache"))
    full = features.shutil.disk_usage(tmp_path)._replace(free=4096)
    monkeypatch.setattr(features.shutil, "disk_usage", lambda path: full)
    said = Said()
    result = train(make_config(synthetic_dir, tmp_path / "s.pth", cache_views=2, epochs=2, cache_memory=0.0), said)
    assert "not cached" in _cache_lines(said)[0]
    assert len(result.history) == 2 and all(np.isfinite(h["valid_loss"]) for h in result.history)
    assert list((tmp_path / "cache" / "features").iterdir()) == []


def test_the_memory_budget_decides_by_the_cache_size(synthetic_dir, tmp_path, make_config, monkeypatch):
    """The same run spills under a budget one byte smaller than its cache, and not at its size."""
    monkeypatch.setenv("FLOWER_EDGE_CACHE", str(tmp_path / "cache"))
    sizes = []
    real = features.FeatureCache._choose

    def spy(self, need, rows):
        sizes.append(need)
        return real(self, need, rows)

    monkeypatch.setattr(features.FeatureCache, "_choose", spy)
    train(make_config(synthetic_dir, tmp_path / "probe.pth", cache_views=3))
    need = sizes[0]
    for budget, mode in ((need, "in memory"), (need - 1, "spilled to disk")):
        said = Said()
        train(make_config(synthetic_dir, tmp_path / "x.pth", cache_views=3, cache_memory=budget / (1 << 30)), said)
        assert mode in _cache_lines(said)[0]


def test_a_disk_view_gives_back_every_row_once_in_any_order(tmp_path):
    rows = np.random.default_rng(0).standard_normal((37, 3, 2, 2)).astype(np.float16)
    (tmp_path / "v.f16").write_bytes(rows.tobytes())
    view = feature_views.DiskView(tmp_path / "v.f16", (3, 2, 2), torch.arange(37))
    for shuffle in (False, True):
        got = list(view.batches(8, shuffle=shuffle))
        assert [len(y) for _, y in got] == [8, 8, 8, 8, 5]
        labels = torch.cat([y for _, y in got])
        assert sorted(labels.tolist()) == list(range(37)) and (labels.tolist() != list(range(37))) == shuffle
        for x, y in got:
            assert np.array_equal(x.numpy(), rows[y.numpy()])


def test_a_truncated_cache_file_is_an_error_not_zeros(tmp_path):
    (tmp_path / "v.f16").write_bytes(np.zeros((3, 4), np.float16).tobytes())
    view = feature_views.DiskView(tmp_path / "v.f16", (4,), torch.arange(4))
    with pytest.raises(OSError, match="ends early"):
        list(view.batches(4))


def test_the_cache_memory_option_is_bounded(make_config, tmp_path):
    from flower_edge.common.errors import ConfigError

    for bad in (-1.0, 2000.0, float("nan")):
        with pytest.raises(ConfigError, match="--cache-memory"):
            make_config(tmp_path, tmp_path / "x.pth", cache_memory=bad)


def test_sigterm_removes_the_spilled_cache_and_says_what_was_saved(synthetic_dir, tmp_path):
    """A scheduler's time limit or `kill` sends SIGTERM: the run stops as at Ctrl-C (exit 143, one
    line saying what holds the last epoch), and the spilled cache does not stay on the disk."""
    import os
    import signal
    import subprocess
    import sys
    import time

    cache, out = tmp_path / "cache", tmp_path / "run.pth"
    cmd = [sys.executable, "-m", "flower_edge.train.cli", str(synthetic_dir), "-o", str(out), "--weights", "none"]
    cmd += ["--image-size", "64", "--batch-size", "16", "--finetune-blocks", "2", "--cache-views", "1"]
    cmd += ["--epochs", "10000", "--cache-memory", "0", "--quiet"]
    with subprocess.Popen(
        cmd, env={**os.environ, "FLOWER_EDGE_CACHE": str(cache)}, stderr=subprocess.PIPE, text=True
    ) as run:
        deadline = time.monotonic() + 120
        while not out.exists() and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)  # the first epoch's checkpoint: the cache is on disk and training is under way
        assert list(cache.rglob(features.PREFIX + "*")), "the cache did not spill to disk"
        run.send_signal(signal.SIGTERM)
        _, stderr = run.communicate(timeout=60)
    assert run.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    assert stderr.strip().splitlines()[-1].startswith(f"flower-train: interrupted; {out} holds epoch ")
    assert stderr.strip().endswith("(SIGTERM)") and "Traceback" not in stderr
    assert not list(cache.rglob(features.PREFIX + "*"))
    load_checkpoint(out)  # whole
