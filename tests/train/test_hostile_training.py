"""flower-train as a careless user or an attacker would run it (issue 22): outputs that are inputs,
a loss that is not a number, options that ask for too much, links out of DATA, names that are not
one line, two runs on one file, a full disk, and a card that ships no path of the training machine."""

import json
import os
import shutil

import pytest
from typer.testing import CliRunner

from flower_edge.common.errors import DataError, OutputError
from flower_edge.train import train
from flower_edge.train.cli import app
from flower_edge.train.data import open_data
from tests.conftest import assert_one_error_line, tiny_config

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


TINY = ("--image-size", "64", "--epochs", "1", "--batch-size", "16", "--finetune-blocks", "2", "--cache-views", "1")


def test_a_plot_or_checkpoint_that_is_an_input_is_refused_before_training(synthetic_dir, tmp_path):
    """Row 2: --plot r.pth overwrote the checkpoint with a PNG."""
    photo = next((synthetic_dir / "train").rglob("*.png"))
    before = photo.read_bytes()
    (tmp_path / "r.pth").write_bytes(b"PK\x03\x04 a checkpoint")
    for args, fragment in (
        (
            ("-o", tmp_path / "r.pth", "--plot", tmp_path / "r.pth"),
            "is the checkpoint (--output), which this run also writes",
        ),
        (("-o", tmp_path / "r.pth", "--plot", photo), "is inside DATA"),
        (("-o", tmp_path / "s.pth", "--resume", tmp_path / "r.pth", "--plot", tmp_path / "r.pth"), "is --resume"),
        (("-o", photo), "--output"),
        (("-o", synthetic_dir / "flower.pth"), "is inside DATA"),
    ):
        result = run(synthetic_dir, *args, *TINY)
        assert_one_error_line(result, "flower-train", fragment)
    assert photo.read_bytes() == before and (tmp_path / "r.pth").read_bytes() == b"PK\x03\x04 a checkpoint"


def test_an_existing_file_that_is_no_checkpoint_is_not_replaced(synthetic_dir, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    result = run(synthetic_dir, "-o", tmp_path / "notes.txt", *TINY)
    assert_one_error_line(result, "flower-train", "exists and is not a PyTorch checkpoint file")
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_a_loss_that_is_not_finite_stops_and_keeps_the_last_finite_checkpoint(synthetic_dir, tmp_path):
    """Row 4: --lr 1e30 exited 0 with NaN weights and "valid_loss": NaN in the JSON."""
    out = tmp_path / "r.pth"
    result = run(synthetic_dir, "-o", out, "--lr", "1e30", "--json", "--quiet", *TINY)
    assert_one_error_line(
        result, "flower-train", "is not a finite number, so training stopped", "no checkpoint was written by this run"
    )
    assert result.stdout == "" and not out.exists()


def test_divergence_in_a_later_epoch_keeps_the_epoch_before(synthetic_dir, tmp_path, monkeypatch):
    """The weights turn NaN during epoch 2 (poisoned here): epoch 1's checkpoint stays as written."""
    import torch

    from flower_edge.common.errors import TrainingDiverged
    from flower_edge.train import run

    real, calls, saved = run.train_one_epoch, [], []

    def poisoned(step, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            with torch.no_grad():
                next(p for p in step.model.head.parameters()).fill_(float("nan"))
        return real(step, *args, **kwargs)

    monkeypatch.setattr(run, "train_one_epoch", poisoned)
    out = tmp_path / "r.pth"
    real_save = run.save_checkpoint
    monkeypatch.setattr(
        run, "save_checkpoint", lambda path, payload: saved.append(payload["epoch"]) or real_save(path, payload)
    )
    with pytest.raises(TrainingDiverged, match=f"epoch 2: the training loss .* {out} holds epoch 1, the last finite"):
        train(tiny_config(synthetic_dir, out, epochs=2))
    assert saved == [1] and torch.load(out, weights_only=True)["epoch"] == 1


@pytest.mark.parametrize(
    "option, value, fragment",
    [
        ("--workers", "1000", "--workers must be between 0 and"),
        ("--workers", "-1", "--workers must be 0"),
        ("--seed", "-1", "--seed must be between 0 and 2^32-1"),
        ("--label-smoothing", "2", "--label-smoothing must be in [0, 1)"),
        ("--label-smoothing", "-1", "--label-smoothing must be in [0, 1)"),
        ("--weight-decay", "-1", "--weight-decay must be in [0, 1]"),
        ("--gamma", "-1", "--gamma must be in (0, 1]"),
        ("--bn-momentum", "5", "--bn-momentum must be in [0, 1]"),
        ("--lr", "nan", "--lr must be a finite number"),
        ("--lr", "inf", "--lr must be a finite number"),
        ("--batch-size", "100000", "--batch-size must be between 1 and 4,096"),
        ("--cache-views", "1000", "--cache-views must be between 1 and 50"),
        ("--resize-size", "20000", "--resize-size must be at most 4,096"),
        ("--hidden", "10000000", "--hidden sizes must be at most"),
    ],
)
def test_every_resource_an_option_asks_for_is_bounded(synthetic_dir, tmp_path, option, value, fragment):
    """Rows 10 and 16: --workers 1000 started 1,002 processes (13 GB); the others were torch's
    internal errors or were accepted."""
    result = run(synthetic_dir, "-o", tmp_path / "r.pth", option, value)
    assert_one_error_line(result, "flower-train", fragment)
    assert not (tmp_path / "r.pth").exists()


def test_symbolic_links_out_of_data_are_skipped_and_counted(synthetic_dir, tmp_path):
    """Row 13: a class folder linked to a system folder trained thousands of unrelated images."""
    data = tmp_path / "data"
    shutil.copytree(synthetic_dir / "train", data)
    outside = tmp_path / "outside"
    shutil.copytree(synthetic_dir / "valid" / os.listdir(synthetic_dir / "valid")[0], outside)
    os.symlink(outside, data / "linked-class")
    first = next(p for p in data.iterdir() if p.is_dir() and not p.is_symlink())
    os.symlink(next(outside.iterdir()), first / "linked-photo.png")
    os.symlink(next(first.iterdir()), first / "inside-link.png")  # a link within DATA is followed
    os.symlink(data, first / "loop")  # and a loop back up is walked once
    source = open_data(str(data), check_images=False)
    assert "linked-class" not in source.class_ids and source.skipped_links == 2
    names = {s.path.name for split in source.splits.values() for s in split}
    assert "linked-photo.png" not in names and "inside-link.png" in names
    followed = open_data(str(data), check_images=False, follow_symlinks=True)
    assert "linked-class" in followed.class_ids and followed.skipped_links == 0


@pytest.mark.parametrize(
    "names, fragment",
    [
        ({"a": "rose", "b": "rose"}, "are both named 'rose'"),
        ({"a": "red\nrose", "b": "tulip"}, "holds a control character"),
        ({"a": "\x1b[31mrose", "b": "tulip"}, "holds a control character"),
    ],
)
def test_class_names_are_one_line_each_and_distinct(tmp_path, synthetic_dir, names, fragment):
    """Rows 6 and 16: a newline shifted labels.txt; duplicate names were accepted."""
    photo = next((synthetic_dir / "train").rglob("*.png"))
    for split in ("train", "valid"):
        for cid in names:
            (tmp_path / "d" / split / cid).mkdir(parents=True)
            shutil.copy(photo, tmp_path / "d" / split / cid / "1.png")
    (tmp_path / "d" / "cat_to_name.json").write_text(json.dumps(names))
    with pytest.raises(DataError, match=fragment.replace("(", r"\(").replace("[", r"\[")):
        open_data(str(tmp_path / "d"), check_images=False)


def test_a_class_folder_name_with_a_newline_is_refused(tmp_path, synthetic_dir):
    photo = next((synthetic_dir / "train").rglob("*.png"))
    for split in ("train", "valid"):
        for cid in ("tulip", "red\nrose"):
            (tmp_path / "d" / split / cid).mkdir(parents=True)
            shutil.copy(photo, tmp_path / "d" / split / cid / "1.png")
    result = run(tmp_path / "d", "-o", tmp_path / "r.pth", *TINY)
    assert_one_error_line(result, "flower-train", "class folder 'red\\\\nrose' holds a control character")


def test_two_runs_on_one_checkpoint_do_not_both_succeed(synthetic_dir, tmp_path):
    """Row 16: both reported success though one result was lost."""
    from flower_edge.common.processes import exclusive

    with exclusive(tmp_path / "r.pth", "flower-train"):
        with pytest.raises(OutputError, match="another flower-train is writing it now"):
            train(tiny_config(synthetic_dir, tmp_path / "r.pth"))


def test_a_full_disk_says_so_and_keeps_nothing_half_written(synthetic_dir, full_disk):
    """Row 15: the message was an internal error about inline_container.cc."""
    result = run(synthetic_dir, "-o", full_disk / "r.pth", "--quiet", *TINY)
    assert_one_error_line(result, "flower-train", f"{full_disk / 'r.pth'}: No space left on device")
    assert list(full_disk.iterdir()) == []


def test_the_card_names_the_data_not_its_path(tiny_checkpoint, synthetic_dir):
    """Row 17: provenance.data was the training folder's absolute path, shipped to every phone."""
    from flower_edge.train import load_model

    _, card, ckpt = load_model(tiny_checkpoint)
    assert card.provenance["data"] == synthetic_dir.name and os.sep not in card.provenance["data"]
    assert ckpt["config"].data == str(synthetic_dir)  # the checkpoint (never shipped) keeps where it was
