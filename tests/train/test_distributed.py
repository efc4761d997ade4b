"""flower-train under torchrun: 2 CPU processes with gloo, one checkpoint, whole-set metrics, resume."""

import json
import subprocess
import sys

import pytest
import torch

from flower_edge.train.distributed import Dist


def torchrun(*args):
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "flower_edge.train.cli",
        *map(str, args),
        "--image-size",
        "64",
        "--batch-size",
        "16",
        "--finetune-blocks",
        "2",
        "--cache-views",
        "1",
        "--workers",
        "0",
        "--cache-engine",
        "torch",
        "--json",
        "--quiet",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)  # only rank 0 prints


def valid_accuracy(checkpoint, data):
    """Top-1 of the checkpoint's model on the whole valid split, in this one process."""
    from flower_edge.train.checkpoint import load_model
    from flower_edge.train.data import open_data
    from flower_edge.train.loaders import ImageDataset
    from flower_edge.train.transforms import eval_transform

    model, card, _ = load_model(checkpoint)
    samples = open_data(str(data)).splits["valid"]
    loader = torch.utils.data.DataLoader(ImageDataset(samples, eval_transform(card)), batch_size=8)
    correct = 0
    with torch.no_grad():
        for x, y in loader:
            correct += (model(x).argmax(1) == y).sum().item()
    return correct / len(samples)


@pytest.fixture(scope="module")
def two_ranks(synthetic_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    report = torchrun(synthetic_dir, "-o", out / "ddp.pth", "--epochs", "1")
    return out, report


@pytest.mark.slow
def test_two_processes_write_exactly_one_checkpoint(two_ranks):
    out, report = two_ranks
    assert [p.name for p in out.iterdir()] == ["ddp.pth"]
    assert report["checkpoint"] == str(out / "ddp.pth") and len(report["history"]) == 1


def test_reported_accuracy_is_over_the_whole_validation_set(two_ranks, synthetic_dir):
    out, report = two_ranks
    reported = report["metrics"]["valid_top1"]
    assert reported * 20 == pytest.approx(round(reported * 20))  # a share of all 20 photos, not of 10
    assert reported == pytest.approx(valid_accuracy(out / "ddp.pth", synthetic_dir), abs=1e-9)


@pytest.mark.slow
def test_resume_continues_at_the_right_epoch(two_ranks, synthetic_dir):
    from flower_edge.train.checkpoint import load_checkpoint

    out, first = two_ranks
    report = torchrun(synthetic_dir, "-o", out / "ddp.pth", "--resume", out / "ddp.pth", "--epochs", "2")
    assert [h["epoch"] for h in report["history"]] == [1, 2]
    assert report["history"][0] == first["history"][0]
    ckpt = load_checkpoint(out / "ddp.pth")
    assert ckpt["epoch"] == 2 and ckpt["resume"]["optimizer"]["state"]
    assert [p.name for p in out.iterdir()] == ["ddp.pth"]


def test_shards_cover_everything_and_pad_to_equal_length():
    items = list(range(7))
    shards = [Dist(rank, 2).shard(items) for rank in range(2)]
    assert sorted(shards[0] + shards[1]) == items
    padded = [Dist(rank, 2).shard(items, pad=True) for rank in range(2)]
    assert len(padded[0]) == len(padded[1]) == 4 and set(padded[0] + padded[1]) == set(items)
    assert Dist().shard(items, pad=True) == items
