"""flower-export, flower-bundle and flower-bench never destroy what the user did not ask to replace
(issue 22, rows 1, 3, 11, 15, 16): folders they did not write are refused, an export folder holds
one export, a bundle takes what export.json lists, and a broken phone file is one line."""

import json
import os
import shutil

import pytest
import torch
from typer.testing import CliRunner

from flower_edge.bundle import ORT_FILES, bundle
from flower_edge.bundle.cli import app as bundle_app
from flower_edge.common.errors import ExportError, OutputError
from flower_edge.export import ExportConfig, export
from flower_edge.export.cli import app as export_app
from flower_edge.runtime import ModelCard
from tests.conftest import assert_one_error_line, digest, write_record

runner = CliRunner()


@pytest.fixture()
def ort_web(tmp_path):
    """Stand-ins for onnxruntime-web's three files: the bundle copies them, nothing runs them here."""
    folder = tmp_path / "ort-web"
    folder.mkdir()
    for name in ORT_FILES:
        (folder / name).write_text(f"// {name}")
    return folder


@pytest.fixture()
def small_export(tiny_export, tmp_path):
    """A copy of the tiny export's ONNX files with their record."""
    folder = tmp_path / "export"
    folder.mkdir()
    for name in ("model.onnx", "model.int8.onnx"):
        shutil.copy(tiny_export.output / name, folder / name)
    write_record(folder, "onnx", "onnx-int8")
    return folder


def test_bundle_refuses_folders_it_did_not_write_and_those_holding_its_inputs(
    small_export, ort_web, tmp_path, monkeypatch
):
    """Row 1: d/keep was deleted, and so were the export folder, its parent and '.'."""
    d = tmp_path / "d"
    d.mkdir()
    (d / "keep").write_text("mine")
    before = digest(d, small_export, ort_web)
    for target, fragment in (
        (d, "holds files that flower-bundle did not write"),
        (small_export, "contains the model"),
        (tmp_path, "contains the model"),
        (ort_web, "is onnxruntime-web's folder"),
        (ort_web / "sub", "is inside onnxruntime-web"),
    ):
        with pytest.raises(OutputError, match=fragment):
            bundle(small_export, target, ort_web=ort_web)
    monkeypatch.chdir(small_export)
    result = runner.invoke(bundle_app, [".", "-o", ".", "--ort-web", str(ort_web)])
    assert_one_error_line(result, "flower-bundle", "contains the model")
    assert digest(d, small_export, ort_web) == before
    out = bundle(small_export, d, ort_web=ort_web, force=True)  # asked for: replaced, once complete
    assert not (out / "keep").exists() and json.loads((out / "bundle.json").read_text())["model"] == "model.int8.onnx"
    again = bundle(small_export, d, ort_web=ort_web)  # an earlier bundle needs no --force
    assert (again / "index.html").is_file()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no staging left


def test_a_killed_bundles_staging_folder_is_removed(small_export, ort_web, tmp_path):
    """Row 16: a killed flower-bundle left a 14 MB .web-* folder."""
    stale = tmp_path / f".web-bundle-{2**22 + 12345}-abc"  # a pid no process has
    stale.mkdir()
    (stale / "model.int8.onnx").write_bytes(b"x" * 1000)
    bundle(small_export, tmp_path / "web", ort_web=ort_web)
    assert not stale.exists()


@pytest.mark.slow
def test_one_export_per_folder_and_the_bundle_takes_what_export_json_lists(
    tiny_checkpoint, synthetic_dir, ort_web, tmp_path
):
    """Row 3: a second export left the first one's int8 model beside its card; the bundle shipped the
    first model with the second one's labels."""
    other = tmp_path / "b.pth"
    ckpt = torch.load(tiny_checkpoint, weights_only=True)
    ckpt["card"]["labels"] = [f"other {name}" for name in ckpt["card"]["labels"]]
    torch.save(ckpt, other)
    folder = tmp_path / "X"
    common = dict(output=str(folder), calib_data=str(synthetic_dir), calib_size=10, verify=False, ort_format=False)
    export(ExportConfig(checkpoint=str(tiny_checkpoint), format="onnx,onnx-int8", **common))
    assert (folder / "model.int8.onnx").is_file()
    result = export(ExportConfig(checkpoint=str(other), format="onnx", **common))
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["card.json", "export.json", "labels.json", "model.onnx"]
    assert json.loads((folder / "export.json").read_text())["formats"] == ["onnx"] == result.formats
    out = bundle(folder, tmp_path / "web", ort_web=ort_web)
    assert json.loads((out / "bundle.json").read_text())["model"] == "model.onnx"
    assert ModelCard.from_json((out / "card.json").read_text()).labels[0].startswith("other ")
    (folder / "model.onnx").write_bytes((folder / "model.onnx").read_bytes() + b"\0")  # changed after the export
    with pytest.raises(ExportError, match=r"changed since the export that export.json records"):
        bundle(folder, tmp_path / "web2", ort_web=ort_web)


@pytest.mark.slow
def test_export_never_replaces_a_file_it_did_not_write(tiny_checkpoint, synthetic_dir, tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    args = [str(tiny_checkpoint), "--format", "onnx", "--calib-data", str(synthetic_dir), "--no-verify", "-q"]
    result = runner.invoke(export_app, [*args, "-o", str(foreign)])
    assert_one_error_line(result, "flower-export", "holds files that flower-export did not write", "--force")
    result = runner.invoke(export_app, [*args, "-o", str(foreign), "--force"])
    assert result.exit_code == 0, result.output
    assert (foreign / "notes.txt").read_text() == "mine" and (foreign / "model.onnx").is_file()
    # the default folder is the checkpoint's: a model file there that no export wrote is kept
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(tiny_checkpoint, home / "model.pt")  # a checkpoint named like the TorchScript file
    (home / "model.onnx").write_text("the user's own")
    result = runner.invoke(export_app, [str(home / "model.pt"), "--format", "onnx", "--no-verify", "-q"])
    assert_one_error_line(result, "flower-export", "model.onnx is there and no earlier export wrote it")
    result = runner.invoke(
        export_app, [str(home / "model.pt"), "--format", "torchscript", "--no-verify", "-q", "--force"]
    )
    assert_one_error_line(result, "flower-export", "model.pt: is the checkpoint this run reads")
    assert (home / "model.onnx").read_text() == "the user's own" and (home / "model.pt").stat().st_size > 1000
    result = runner.invoke(export_app, [*args, "-o", str(synthetic_dir / "out")])
    assert_one_error_line(result, "flower-export", "is inside --calib-data")


def test_a_failed_commit_puts_every_earlier_file_back(tmp_path, monkeypatch):
    """Row 16: a failed export could leave model files moved into place before export.json failed."""
    from flower_edge.export import folder

    output, staging = tmp_path / "out", tmp_path / "out" / ".flower-export-1-x"
    staging.mkdir(parents=True)
    for name in ("model.onnx", "model.int8.onnx", "export.json"):
        (output / name).write_text(f"old {name}")
    for name in ("model.onnx", "export.json"):
        (staging / name).write_text(f"new {name}")
    real, calls = os.replace, []

    def failing(src, dst):
        calls.append(dst)
        if len(calls) == 5:  # the last move: export.json into place
            raise OSError(28, "No space left on device", str(dst))
        real(src, dst)

    monkeypatch.setattr(folder.os, "replace", failing)
    with pytest.raises(OSError):
        folder.commit(staging, output, ["model.onnx", "export.json"], ["model.onnx", "model.int8.onnx"])
    monkeypatch.undo()
    for name in ("model.onnx", "model.int8.onnx", "export.json"):
        assert (output / name).read_text() == f"old {name}"


@pytest.mark.slow
def test_export_into_a_full_disk_says_so(tiny_checkpoint, synthetic_dir, full_disk):
    """Row 15: the message was an internal error about SaveToOrtFormat or inline_container.cc."""
    result = runner.invoke(
        export_app,
        [
            str(tiny_checkpoint),
            "--format",
            "onnx",
            "--no-verify",
            "-q",
            "--calib-data",
            str(synthetic_dir),
            "-o",
            str(full_disk),
        ],
    )
    assert_one_error_line(result, "flower-export", "No space left on device", str(full_disk))
    assert list(full_disk.iterdir()) == []


def test_a_file_a_native_runtime_would_abort_on_is_one_line(tiny_checkpoint, synthetic_dir, tmp_path, monkeypatch):
    """Row 11: a random-bytes model.pte killed flower-bench (SIGABRT inside ExecuTorch)."""
    from flower_edge.bench.cli import app as bench_app
    from flower_edge.export import formats, probe

    models = tmp_path / "models"
    models.mkdir()
    (models / "model.pte").write_bytes(os.urandom(5000))
    write_record(models, "pte")
    result = runner.invoke(
        bench_app,
        [
            str(tiny_checkpoint),
            "--data",
            str(synthetic_dir),
            "--models",
            str(models),
            "--formats",
            "pte",
            "--out",
            str(tmp_path / "out"),
            "--quiet",
        ],
    )
    assert_one_error_line(result, "flower-bench", "model.pte: not a pte file")
    # a file that passes the first bytes and still aborts the runtime: read in a child, reported
    (models / "model.pte").write_bytes(b"\0\0\0\0ET12" + os.urandom(5000))
    monkeypatch.setattr(probe, "command", lambda key, path: ["python3", "-c", "import os; os.abort()"])
    with pytest.raises(ExportError, match="the pte runtime crashed reading this file \\(SIGABRT\\)"):
        formats.FORMATS["pte"].probe(models / "model.pte")
