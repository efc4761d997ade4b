"""--verify-on arm64 (issue 29): the parity arithmetic of the arm64 rows, the line that says what to
install when the machine cannot emulate, and, where it can, the tiny model's phone files on arm64."""

import stat

import numpy as np
import pytest
from typer.testing import CliRunner

from flower_edge.common.errors import ConfigError
from flower_edge.export import ExportConfig, arm64
from flower_edge.export.cli import app as export_app
from flower_edge.export.formats import FORMATS
from flower_edge.runtime.predict import log_softmax
from tests.conftest import assert_one_error_line

runner = CliRunner()


def test_arm64_rows_hold_each_file_to_its_requirement_and_count_agreement_with_this_machine():
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(10, 5)).astype(np.float32)
    config = ExportConfig(checkpoint="", min_agreement=0.95).check_options()
    same = arm64.parity("onnx", reference, reference + 1e-6, reference, False, FORMATS["onnx"], config)
    assert same.name == "onnx (arm64)" and same.format == "onnx" and same.passed and same.host_agreement == 1.0
    off = arm64.parity("onnx", reference, reference + 1e-3, reference, False, FORMATS["onnx"], config)
    assert not off.passed  # a float file is held to --atol there as here

    flipped = reference.copy()
    flipped[3] = flipped[3, ::-1]  # one answer of ten differs from PyTorch's and from this machine's
    row = arm64.parity("onnx-int8", reference, flipped, reference, False, FORMATS["onnx-int8"], config)
    assert row.top1_agreement == pytest.approx(0.9) and not row.passed  # under the 95% floor
    assert row.host_agreement == pytest.approx(0.9)
    host = flipped.copy()  # this machine's run flipped the same photo: the ISAs agree, PyTorch does not
    assert (
        arm64.parity(
            "onnx-int8",
            reference,
            flipped,
            host,
            False,
            FORMATS["onnx-int8"],
            ExportConfig(checkpoint="", min_agreement=0.9).check_options(),
        ).host_agreement
        == 1.0
    )

    probabilities = np.exp(log_softmax(reference))  # a .tflite file: log-probabilities against log-softmax
    row = arm64.parity(
        "tflite", reference, np.log(probabilities), np.log(probabilities), True, FORMATS["tflite"], config
    )
    assert row.passed and row.max_abs_diff < 1e-5


@pytest.fixture()
def no_qemu(monkeypatch, tmp_path):
    monkeypatch.delenv("FLOWER_EDGE_QEMU", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path


def test_without_qemu_the_export_stops_at_once_with_the_line_that_says_what_to_install(no_qemu, tiny_checkpoint):
    problem = arm64.missing()
    assert "qemu-aarch64" in problem and "mmdebstrap" in problem and "QEMU 8" in problem
    result = runner.invoke(export_app, [str(tiny_checkpoint), "--verify-on", "arm64", "-o", str(no_qemu / "out")])
    assert_one_error_line(result, "flower-export", "--verify-on arm64", "qemu")
    assert not (no_qemu / "out").exists()  # stopped before any work


def test_an_old_qemu_is_named_as_too_old(no_qemu, monkeypatch):
    fake = no_qemu / "qemu-aarch64"
    fake.write_text("#!/bin/sh\necho 'qemu-aarch64 version 7.2.0 (Debian 1:7.2+dfsg-7)'\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("FLOWER_EDGE_QEMU", str(fake))
    assert "version 7.2" in arm64.missing() and "before 8" in arm64.missing()
    monkeypatch.setenv("FLOWER_EDGE_QEMU", str(no_qemu / "nothing"))
    assert "is not a file" in arm64.missing()


def test_verify_on_takes_arm64_and_needs_verification():
    with pytest.raises(ConfigError, match="takes arm64"):
        ExportConfig(checkpoint="", verify_on="riscv")
    with pytest.raises(ConfigError, match="needs --verify"):
        ExportConfig(checkpoint="", verify_on="arm64", verify=False)
    with pytest.raises(ConfigError, match="--arm64-photos"):
        ExportConfig(checkpoint="", verify_on="arm64", arm64_photos=0)


@pytest.mark.slow
def test_the_phone_files_on_arm64_answer_as_on_this_machine(tiny_checkpoint, synthetic_dir, tmp_path):
    """Where this machine can emulate arm64 (QEMU 8+, mmdebstrap, Debian's mirror and PyPI, or an
    environment already cached): the tiny model's ONNX and LiteRT files, float and int8, on 6 photos."""
    problem = arm64.missing()
    if problem:
        pytest.skip(problem)
    from flower_edge.export import export

    keys = ["onnx", "onnx-int8", "tflite", "tflite-int8"]
    keys = [k for k in keys if FORMATS[k].missing() is None]
    result = export(
        ExportConfig(
            checkpoint=str(tiny_checkpoint),
            output=str(tmp_path / "out"),
            format=",".join(k for k in keys if not FORMATS[k].int8),
            quantize=True,
            calib_data=str(synthetic_dir),
            calib_size=20,
            min_agreement=0.0,
            ort_format=False,
            verify_on="arm64",
            arm64_photos=6,
        )
    )
    rows = {r.name: r for r in result.parity}
    for key in keys:
        row = rows[f"{key} (arm64)"]
        assert row.images == 6 and row.host_agreement is not None, row
        if not FORMATS[key].int8:
            assert row.passed and row.max_abs_diff <= 1e-4 and row.host_agreement == 1.0, row
