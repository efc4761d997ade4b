"""flower-bench on the tiny exported model: every figure present and typed, the threshold bites."""

import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from PIL import Image
from typer.testing import CliRunner

from flower_edge.bench.cli import app
from flower_edge.bench.plot import HEIGHT, WIDTH
from flower_edge.export.formats import FORMATS
from tests.conftest import write_record

runner = CliRunner()
FAST = ("--cold-starts", "1", "--latency-runs", "5")


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def bench(tiny_checkpoint, tiny_export, synthetic_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    every = ",".join(["torch", *(f.key for f in FORMATS.values() if not f.missing("write") and not f.missing("run"))])
    result = run(
        tiny_checkpoint,
        "--data",
        synthetic_dir,
        "--models",
        tiny_export.output,
        "--out",
        out,
        "--formats",
        every,
        "--fail-under-agreement",
        "0",
        "--json",
        *FAST,
    )
    return result, out


def test_every_figure_is_present_and_typed(bench):
    result, out = bench
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert json.loads((out / "bench.json").read_text()) == doc
    # the reference, then every row of the format table (that this install writes and runs)
    expected = ["torch", *(f.key for f in FORMATS.values() if not f.missing("write") and not f.missing("run"))]
    assert [r["format"] for r in doc["rows"]] == expected
    floats = (
        "size_mb",
        "top1",
        "top5",
        "agreement",
        "max_prob_diff",
        "latency_ms_median",
        "latency_ms_p95",
        "throughput_ips",
        "cold_start_s",
        "cold_start_peak_rss_mb",
        "gflops_per_s",
        "fraction_of_peak",
    )
    for row in doc["rows"]:
        for key in floats:
            assert isinstance(row[key], float) and np.isfinite(row[key]) and row[key] >= 0, (row["format"], key)
        assert 0 <= row["top1"] <= row["top5"] <= 1 and 0 <= row["agreement"] <= 1
        assert row["latency_ms_median"] <= row["latency_ms_p95"]
        assert row["cold_start_peak_rss_mb"] > 20 and row["passed"] is True
    rows = {r["format"]: r for r in doc["rows"]}
    assert rows["torch"]["agreement"] == 1.0 and rows["torch"]["max_prob_diff"] == 0.0
    for key, row in rows.items():  # float formats answer as PyTorch does, whatever their runtime
        if key != "torch" and not FORMATS[key].int8:
            assert row["agreement"] == 1.0 and row["max_prob_diff"] < 1e-4, key
    assert rows["onnx"]["agreement"] == 1.0 and rows["onnx"]["max_prob_diff"] < 1e-4
    assert rows["onnx-int8"]["size_mb"] < rows["onnx"]["size_mb"]
    machine = doc["machine"]
    for key in ("cpu", "cores", "threads", "matmul_peak_gflops", "python", "torch", "onnxruntime", "numpy", "date"):
        assert key in machine
    assert machine["matmul_peak_gflops"] > 1 and doc["model"]["gflops_per_image"] > 0
    from flower_edge.runtime.cpu import cpu_int8

    assert machine["int8"] == cpu_int8().to_dict()  # the CPU's int8 features, and the path they call for
    assert rows["onnx-int8"]["int8_path"] == cpu_int8().int8_path and rows["torch"]["int8_path"] == ""
    assert doc["model"]["photos"] == 20 and doc["failed"] == []


def test_table_and_plot_are_written(bench):
    _, out = bench
    table = (out / "bench.md").read_text()
    assert table.startswith("| format | size MB | top-1") and table.count("\n| onnx") == 3
    assert "int8 features:" in table and "int8 kernels: " in table
    with Image.open(out / "bench.png") as img:
        assert img.format == "PNG" and img.size == (WIDTH, HEIGHT)


def test_agreement_under_the_threshold_fails(tiny_checkpoint, tiny_export, synthetic_dir, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    proto = onnx.load(tiny_export.output / "model.onnx")
    gemm = next(n for n in proto.graph.node if n.op_type == "Gemm")
    bias = next(i for i in proto.graph.initializer if i.name == gemm.input[2])
    values = numpy_helper.to_array(bias).copy()
    values[0] += 100.0  # class 0 wins every photo
    bias.CopyFrom(numpy_helper.from_array(values, bias.name))
    onnx.save(proto, models / "model.onnx")
    write_record(models, "onnx")
    args = (
        tiny_checkpoint,
        "--data",
        synthetic_dir,
        "--models",
        models,
        "--formats",
        "onnx",
        "--out",
        tmp_path / "out",
        *FAST,
    )
    failed = run(*args, "--json")
    assert failed.exit_code == 1
    doc = json.loads(failed.stdout)
    assert doc["failed"] == ["onnx"] and doc["rows"][0]["agreement"] < 0.5
    assert "top-1 agreement under 99.00%: onnx" in failed.stderr
    assert run(*args, "--fail-under-agreement", "0.1").exit_code == 0


def test_bad_inputs_are_one_line(tiny_checkpoint, tiny_export, synthetic_dir, tmp_path):
    (tmp_path / "empty").mkdir()
    for args, fragment in (
        (("--data", tmp_path / "none", "--models", tiny_export.output), "no such directory"),
        (("--data", synthetic_dir, "--models", tmp_path / "empty"), "not a flower-export folder (no export.json)"),
        (("--data", synthetic_dir, "--formats", "gif"), "--formats takes"),
        (("--data", synthetic_dir, "--threads", "1000"), "--threads must be between 1 and"),
    ):
        result = run(tiny_checkpoint, *args, "--out", tmp_path / "out", "--quiet")
        assert result.exit_code == 1 and result.stderr.count("\n") == 1, result.output
        assert fragment in result.stderr


def test_a_folder_of_class_folders_is_measured_on_the_split_training_held_out(
    tiny_checkpoint, tiny_export, synthetic_dir, tmp_path
):
    """Issue 28: flower-bench takes the layout flower-train takes, and measures the photos it held out."""
    import shutil

    from flower_edge.train.photos import photo_splits

    data = tmp_path / "photos"  # no train/ or valid/: class folders only, as a user's own photos come
    for photo in sorted((synthetic_dir / "train").rglob("*.png")):
        (data / photo.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(photo, data / photo.parent.name / photo.name)
    held_out = photo_splits(str(data), valid_fraction=0.15).paths["valid"]
    args = (tiny_checkpoint, "--data", data, "--models", tiny_export.output, "--formats", "onnx")
    result = run(*args, "--out", tmp_path / "out", "--json", *FAST)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["model"]["photos"] == len(held_out) > 0
    assert "flower-train's valid split of it" in result.stderr
    refused = run(*args, "--split", "test", "--out", tmp_path / "out2", "--quiet")
    assert refused.exit_code == 1 and "has no test split" in refused.stderr, refused.output


def test_without_torch_the_extra_is_named(monkeypatch, tiny_checkpoint, synthetic_dir, tmp_path):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    result = run(tiny_checkpoint, "--data", synthetic_dir, "--out", tmp_path, "--quiet")
    assert result.exit_code == 1 and result.stderr.count("\n") == 1, result.output
    assert "pip install 'flower-edge[train]'" in result.stderr and "internal error" not in result.stderr


def test_a_broken_photo_is_left_out_not_fatal(tiny_checkpoint, tiny_export, synthetic_dir, tmp_path):
    """Issue 22: one failed input never aborts a batch; flower-bench measures the rest."""
    import shutil

    data = tmp_path / "data"
    shutil.copytree(synthetic_dir / "valid", data / "valid")
    first = sorted((data / "valid").iterdir())[0]
    (first / "broken.png").write_bytes(b"not a png")
    result = run(
        tiny_checkpoint,
        "--data",
        data,
        "--models",
        tiny_export.output,
        "--formats",
        "onnx",
        "--out",
        tmp_path / "out",
        "--json",
        *FAST,
    )
    assert result.exit_code == 0, result.output
    assert "skipped broken image" in result.stderr and "broken.png" in result.stderr
    assert json.loads(result.stdout)["model"]["photos"] == len(list((synthetic_dir / "valid").rglob("*.png")))
