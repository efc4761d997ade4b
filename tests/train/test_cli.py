import json

import pytest
from typer.testing import CliRunner

from flower_edge.train.cli import app
from tests.conftest import assert_one_error_line

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_error_line(result, *fragments):
    assert_one_error_line(result, "flower-train", *fragments)


def test_help_explains_the_contract_options():
    result = run("--help")
    assert result.exit_code == 0
    for option in (
        "--arch",
        "--weights",
        "--hidden",
        "--dropout",
        "--epochs",
        "--batch-size",
        "--lr",
        "--freeze",
        "--finetune",
        "--device",
        "--seed",
        "--resume",
        "--output",
        "synthetic",
    ):
        assert option in result.output


def test_missing_directory(tmp_path):
    one_error_line(run(tmp_path / "nowhere"), "no such directory")


def test_empty_class_folder(tmp_path):
    (tmp_path / "train" / "1").mkdir(parents=True)
    one_error_line(run(tmp_path), "class folder has no images", "train/1")


def test_unknown_arch(synthetic_dir):
    one_error_line(run(synthetic_dir, "--arch", "resnet5"), "unknown arch 'resnet5'", "efficientnet_lite0")


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--optimizer", "sgd"], "only adamw, adam are supported"),
        (["--image-size", "100"], "multiple of 32"),
        (["--hidden", "big"], "--hidden takes sizes"),
        (["--device", "cuda"], "no CUDA GPU"),
        (["--weights", "missing.pth"], "--weights must be imagenet, none or a file"),
    ],
)
def test_bad_options(synthetic_dir, args, fragment, tmp_path):
    one_error_line(run(synthetic_dir, "-o", tmp_path / "x.pth", *args), fragment)


def test_unwritable_output_fails_before_training(synthetic_dir, tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file, not a folder")
    one_error_line(run(synthetic_dir, "-o", blocker / "model.pth"), "cannot create its folder")
    one_error_line(run(synthetic_dir, "-o", tmp_path), "is a folder")


def test_truncated_resume_checkpoint(synthetic_dir, tmp_path, tiny_checkpoint):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(tiny_checkpoint.read_bytes()[:1000])
    one_error_line(run(synthetic_dir, "--resume", bad), "truncated or corrupt")
    assert not (tmp_path / "flower.pth").exists()


def test_unreadable_image_is_skipped_and_training_finishes(synthetic_dir, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(synthetic_dir, data)
    (data / "train" / "3" / "zz_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    out = tmp_path / "model.pth"
    result = run(
        data,
        "-o",
        out,
        "--image-size",
        "64",
        "--epochs",
        "1",
        "--finetune-blocks",
        "1",
        "--cache-views",
        "1",
        "--batch-size",
        "16",
        "--json",
        "--quiet",
        "--plot",
        tmp_path / "curves.png",
    )
    assert result.exit_code == 0, result.output
    assert "zz_broken.jpg" in result.stderr
    report = json.loads(result.stdout)
    assert report["checkpoint"] == str(out) and out.is_file()
    assert 0 <= report["metrics"]["valid_top1"] <= 1
    assert [r["epoch"] for r in report["history"]] == [1]
    from PIL import Image

    with Image.open(tmp_path / "curves.png") as curves:
        assert curves.format == "PNG" and curves.size == (840, 300)


def test_without_torch_says_which_extra_to_install(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    one_error_line(run("synthetic"), "pip install 'flower-edge[train]'")


def test_list_archs():
    result = run("--list-archs")
    assert result.exit_code == 0
    assert "efficientnet_lite0" in result.stdout and "mobilenet_v3_small" in result.stdout


def test_output_to_a_file_gets_progress_lines(synthetic_dir, tmp_path):
    """Not a terminal (a log file, CI): every phase reports in lines, with a rate, then a summary."""
    out = tmp_path / "model.pth"
    result = run(
        synthetic_dir,
        "-o",
        out,
        "--image-size",
        "64",
        "--epochs",
        "2",
        "--finetune-blocks",
        "1",
        "--cache-views",
        "2",
        "--batch-size",
        "16",
    )
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    for phase in (
        "checking images",
        "caching frozen features, view 1/2",
        "caching frozen features, view 2/2",
        "caching frozen features, evaluation",
        "epoch 1/2",
        "epoch 2/2",
        "validating",
    ):
        summary = [line for line in lines if line.startswith(f"{phase}: ") and " img in " in line]
        assert summary, f"no summary line for {phase!r} in:\n{result.stderr}"
        assert summary[0].endswith(" img/s") or " img/s, " in summary[0]
    assert any(line.startswith("epoch   2  train loss") for line in lines)


def test_one_class_is_refused(tmp_path):
    from PIL import Image

    (tmp_path / "data" / "only").mkdir(parents=True)
    for i in range(4):
        Image.new("RGB", (16, 16), (i * 50, 0, 0)).save(tmp_path / "data" / "only" / f"{i}.png")
    result = run(tmp_path / "data", "-o", tmp_path / "x.pth")
    assert_one_error_line(result, "flower-train", "one class folder (only); a classifier needs at least two")
    assert not (tmp_path / "x.pth").exists()


def test_ctrl_c_says_what_this_run_left_on_disk(tmp_path, monkeypatch):
    from flower_edge.train import loop
    from flower_edge.train.cli import RichReporter

    reporter = RichReporter(None, quiet=True)
    assert "no checkpoint was written by this run" in reporter.interrupted()
    reporter.saved("runs/x.pth", 3)
    assert reporter.interrupted() == "interrupted; runs/x.pth holds epoch 3 (--resume runs/x.pth goes on from there)"

    def stopped(config, reporter, resume=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "train", stopped)
    result = run("synthetic", "-o", tmp_path / "x.pth")
    assert result.exit_code == 130
    assert "interrupted before the first epoch finished; no checkpoint was written" in result.stderr


def test_every_training_option_is_declared_once_and_reaches_the_config(tmp_path, monkeypatch):
    from dataclasses import fields

    from flower_edge.train import TrainConfig, loop

    help_text = run("--help").output
    for f in fields(TrainConfig):  # each field is an option (or DATA), with its help text
        if f.name != "data":
            flag = f.metadata.get("flags", (f"--{f.name.replace('_', '-')}",))[0].split("/")[0]
            assert flag in help_text, flag
    seen = []

    def record(config, reporter, resume=None):
        seen.append(config)
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "train", record)
    run("synthetic", "-o", tmp_path / "x.pth")
    assert seen[-1] == TrainConfig("synthetic", output=str(tmp_path / "x.pth"))  # the CLI's defaults are the config's
    run(
        "synthetic",
        "--freeze",
        "--hidden",
        "512,256",
        "--labels",
        tmp_path / "names.json",
        "--bn-momentum",
        "0.05",
        "--interpolation",
        "bicubic",
        "--finetune-blocks",
        "3",
    )
    assert seen[-1] == TrainConfig(
        "synthetic",
        mode="freeze",
        hidden=(512, 256),
        labels=str(tmp_path / "names.json"),
        bn_momentum=0.05,
        interpolation="bicubic",
        finetune_blocks=3,
    )
