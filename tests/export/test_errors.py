"""flower-export's bad inputs and failed checks: one line, exit 1, nothing left behind."""

import json

import onnx
import pytest
import torch
from onnx import numpy_helper
from typer.testing import CliRunner

from flower_edge.common.errors import ExportError
from flower_edge.export.cli import app
from flower_edge.export.config import ExportConfig
from flower_edge.export.images import choose_images
from tests.conftest import assert_one_error_line

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_error_line(result, *fragments):
    assert_one_error_line(result, "flower-export", *fragments)


def nothing_written(folder):
    return not folder.exists() or not any(folder.iterdir())


def test_help_explains_the_contract_options():
    result = run("--help")
    assert result.exit_code == 0
    for option in (
        "--format",
        "--quantize",
        "--calib-data",
        "--calib-size",
        "--calib-method",
        "--opset",
        "--output",
        "--no-verify",
        "--min-agreement",
        "--embed-preprocessing",
        "model.int8.tflite",
        "model.pte",
        "[litert]",
        "[executorch]",
    ):
        assert option in result.output


def test_checkpoint_from_another_tool(tmp_path):
    foreign = tmp_path / "foreign.pth"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, foreign)
    one_error_line(run(foreign, "-o", tmp_path / "out"), "not a flower-edge checkpoint")
    assert nothing_written(tmp_path / "out")


def test_checkpoint_with_an_unknown_arch(tiny_checkpoint, tmp_path):
    ckpt = torch.load(tiny_checkpoint, weights_only=True)
    ckpt["card"]["arch"] = "resnet9000"
    path = tmp_path / "odd.pth"
    torch.save(ckpt, path)
    one_error_line(run(path, "-o", tmp_path / "out"), "unknown arch 'resnet9000'")
    assert nothing_written(tmp_path / "out")


def test_unwritable_output_folder(tiny_checkpoint, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    one_error_line(run(tiny_checkpoint, "-o", blocker / "out", "--no-verify"), "cannot create the output folder")


def test_calibration_folder_without_images(tiny_checkpoint, tmp_path):
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "notes.txt").write_text("no photos here")
    one_error_line(
        run(tiny_checkpoint, "--quantize", "--calib-data", empty, "-o", tmp_path / "out"), "no images to calibrate on"
    )
    assert nothing_written(tmp_path / "out")


def test_missing_training_data_needs_calib_data(tiny_checkpoint, tmp_path, monkeypatch):
    ckpt = torch.load(tiny_checkpoint, weights_only=True)
    ckpt["config"]["data"] = str(tmp_path / "gone")
    path = tmp_path / "moved.pth"
    torch.save(ckpt, path)
    one_error_line(run(path, "--quantize", "-o", tmp_path / "out"), "pass --calib-data")


def test_bad_option_values(tiny_checkpoint, tmp_path):
    one_error_line(run(tiny_checkpoint, "--format", "onnx,gif"), "--format takes", "tflite-int8", "'onnx,gif'")
    one_error_line(run(tiny_checkpoint, "--opset", "13"), "--opset must be 17 or newer")


def test_plain_folder_is_split_without_overlap(tmp_path):
    from PIL import Image

    for i in range(12):
        Image.new("RGB", (8, 8), (i * 20, 0, 0)).save(tmp_path / f"{i}.png")
    sets = choose_images(ExportConfig(checkpoint="x", quantize=True, calib_data=str(tmp_path)), "unused")
    assert len(sets.calibration) == 8 and len(sets.verification) == 4
    assert not set(sets.calibration) & set(sets.verification)
    again = choose_images(ExportConfig(checkpoint="x", quantize=True, calib_data=str(tmp_path)), "unused")
    assert again == sets


def test_torchscript_export_through_the_cli_prints_json(tiny_checkpoint, synthetic_dir, tmp_path):
    result = run(tiny_checkpoint, "--format", "torchscript", "--calib-data", synthetic_dir, "-o", tmp_path, "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert set(doc["files"]) == {"model.pt", "card.json", "labels.json", "export.json"}
    [row] = doc["parity"]
    assert row["name"] == "torchscript" and row["passed"] and row["images"] == 20
    assert json.loads((tmp_path / "export.json").read_text())["parity"] == doc["parity"]


@pytest.mark.slow
def test_a_corrupted_export_is_caught_and_nothing_is_left(tiny_checkpoint, synthetic_dir, tmp_path, monkeypatch):
    from flower_edge.export import onnx_export, pipeline

    real = onnx_export.export_onnx

    def corrupted(model, card, path, opset, embed_preprocessing=False):
        real(model, card, path, opset, embed_preprocessing)
        proto = onnx.load(path)
        gemm = next(n for n in proto.graph.node if n.op_type == "Gemm")
        bias = next(i for i in proto.graph.initializer if i.name == gemm.input[2])
        values = numpy_helper.to_array(bias).copy()
        values[0] += 0.01  # one logit off by 1e-2: a bug a user would never see by eye
        bias.CopyFrom(numpy_helper.from_array(values, bias.name))
        onnx.save(proto, path)

    monkeypatch.setattr(onnx_export, "export_onnx", corrupted)
    out = tmp_path / "out"
    config = ExportConfig(
        checkpoint=str(tiny_checkpoint), output=str(out), calib_data=str(synthetic_dir), ort_format=False
    )
    with pytest.raises(ExportError, match="verification failed") as failure:
        pipeline.export(config)
    assert "onnx" in str(failure.value) and "FAILED" in str(failure.value)
    assert list(out.iterdir()) == []  # no model, no staging folder


def test_a_killed_exports_leftovers_are_removed_and_a_live_ones_kept(tiny_checkpoint, synthetic_dir, tmp_path):
    import os
    import subprocess

    dead = subprocess.Popen(["true"])
    dead.wait()  # a process id that no longer runs: a SIGKILLed export's
    stale = tmp_path / f".flower-export-{dead.pid}-abc"
    stale.mkdir()
    (stale / "model.onnx").write_bytes(b"half")
    stale_report = tmp_path / f".export.json.{dead.pid}.xyz.tmp"
    stale_report.write_text("{")
    live = tmp_path / f".flower-export-{os.getpid()}-def"  # this process: alive, maybe exporting
    live.mkdir()
    lines = []
    config = ExportConfig(
        checkpoint=str(tiny_checkpoint),
        output=str(tmp_path),
        format="onnx",
        calib_data=str(synthetic_dir),
        ort_format=False,
        verify=False,
    )
    from flower_edge.export import export

    export(config, lines.append)
    assert not stale.exists() and not stale_report.exists() and live.is_dir()
    assert sum("left in" in line and "killed" in line for line in lines) == 2
