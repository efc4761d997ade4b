"""The format table: what --format selects, the missing-extra line, and a new row needing no other edit."""

import importlib.util
import shutil

import pytest

from flower_edge.common.errors import ConfigError
from flower_edge.export import formats
from flower_edge.export.formats import FORMATS, Format, by_file
from flower_edge.export.selection import select
from flower_edge.runtime.card import ModelCard
from flower_edge.runtime.session import onnx_runner


def keys(text, **options):
    return [f.key for f in select(text, **options)[0]]


def _extras(monkeypatch, missing=()):
    """Every module a format needs is installed but ``missing``, whatever this machine has: what the
    selection does must not depend on which extras the test run happens to have."""
    needed = {m for f in FORMATS.values() for m in (*f.write_needs, *f.run_needs)}
    real = importlib.util.find_spec
    monkeypatch.setattr(
        formats.importlib.util,
        "find_spec",
        lambda name, *a: None if name in missing else real("json") if name in needed else real(name, *a),
    )


def test_selection_adds_int8_counterparts_ort_copies_and_sources(monkeypatch):
    _extras(monkeypatch)
    assert keys("onnx", ort=False) == ["onnx"]
    assert keys("onnx") == ["onnx", "ort"]
    assert keys("onnx", quantize=True, ort=False) == ["onnx", "onnx-int8"]
    assert keys("ort-int8", ort=False) == ["onnx", "onnx-int8", "ort-int8"]  # sources are written first
    assert keys("tflite,pte", quantize=True) == ["tflite", "tflite-int8", "pte", "pte-int8"]
    assert keys("onnx", preprocessing=True) == ["onnx", "onnx-preproc", "ort", "ort-preproc"]
    assert "onnx-preproc" not in keys("all")  # the preprocessing variant has its own flag
    with pytest.raises(ConfigError, match=r"--format takes .* found 'onxx'"):
        select("onxx")


def test_every_file_name_maps_back_to_its_row():
    assert len({f.file for f in FORMATS.values()}) == len(FORMATS)
    for f in FORMATS.values():
        assert by_file(f"out/{f.file}") is f
        assert f.source is None or list(FORMATS).index(f.source) < list(FORMATS).index(f.key)
    assert by_file("rose.int8.tflite").key == "tflite-int8"
    with pytest.raises(ConfigError, match="not a file flower-export writes"):
        by_file("model.h5")


@pytest.fixture
def no_litert(monkeypatch):
    _extras(monkeypatch, missing=("litert_torch", "ai_edge_litert"))


def test_a_missing_extra_is_one_line_that_names_it(no_litert, tiny_checkpoint, tmp_path):
    with pytest.raises(
        ConfigError,
        match=r"tflite needs litert_torch, ai_edge_litert, from the \[litert\] extra: "
        r"pip install 'flower-edge\[litert\]'",
    ):
        select("onnx,tflite")
    chosen, notes = select("all")
    assert not any(f.key.startswith("tflite") for f in chosen)
    assert notes == [f"skipped {k}: {FORMATS[k].missing()}" for k in ("tflite", "tflite-int8")]

    from typer.testing import CliRunner

    from flower_edge.export.cli import app
    from tests.conftest import assert_one_error_line

    result = CliRunner().invoke(app, [str(tiny_checkpoint), "--format", "tflite-int8", "-o", str(tmp_path)])
    assert_one_error_line(result, "flower-export", "pip install 'flower-edge[litert]'")
    assert not any(tmp_path.iterdir())


def copy_onnx(job, fmt):
    """A hypothetical format's writer: all that adding a format takes besides its row."""
    from flower_edge.export.job import Written

    shutil.copy(job.staging / "model.onnx", job.staging / fmt.file)
    return Written()


@pytest.mark.slow
def test_a_new_row_is_written_and_verified_with_no_other_change(monkeypatch, tiny_checkpoint, synthetic_dir, tmp_path):
    row = Format(
        "onnx-copy",
        "model.copy.onnx",
        copy_onnx,
        onnx_runner,
        ModelCard.from_onnx,
        "a copy of model.onnx",
        source="onnx",
    )
    monkeypatch.setitem(FORMATS, row.key, row)
    from flower_edge.export import ExportConfig, export

    result = export(
        ExportConfig(
            checkpoint=str(tiny_checkpoint),
            output=str(tmp_path),
            format="onnx-copy",
            calib_data=str(synthetic_dir),
            ort_format=False,
        )
    )
    assert result.formats == ["onnx", "onnx-copy"]
    assert [r.name for r in result.parity] == ["onnx", "onnx-copy"] and all(r.passed for r in result.parity)
    assert (tmp_path / "model.copy.onnx").read_bytes() == (tmp_path / "model.onnx").read_bytes()


def test_the_table_and_the_onnx_runner_leave_torch_out(tiny_export):
    """flower-bench's cold start of an ONNX file goes through the table: it must not pay for torch."""
    import subprocess
    import sys

    code = (
        "import sys, numpy as np; from flower_edge.export.formats import FORMATS; "
        f"card = FORMATS['onnx-int8'].read_card({str(tiny_export.output / 'model.int8.onnx')!r}); "
        f"run = FORMATS['onnx-int8'].open({str(tiny_export.output / 'model.int8.onnx')!r}, 1); "
        "out = run(np.zeros((1, *card.input_size), np.float32)); "
        "print(out.shape[1] == card.num_classes, 'torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["True", "False"], done.stderr


def test_labels_round_trip_through_every_file_we_write(tiny_export, tmp_path):
    """Issue 22, row 6: labels are data, not layout. Names with quotes, accents, other scripts and
    separators come back from labels.txt (one line each), card.json and the card inside the file."""
    import json
    import zipfile
    from dataclasses import replace

    from flower_edge.export.tflite import attach_card, read_card

    names = ('giant "white" arum lily', "fleur-de-lis \u00e9", "\u83ca", "a, b; c", "sweet pea \u2014 pink")
    card = replace(tiny_export.card, labels=names)
    path = tmp_path / "model.tflite"
    path.write_bytes(b"\0\0\0\0TFL3" + b"\0" * 100)  # attach_card appends after any flatbuffer
    attach_card(path, card)
    with zipfile.ZipFile(path) as archive:
        lines = archive.read("labels.txt").decode().split("\n")
    assert lines[:-1] == list(names) and lines[-1] == ""
    assert read_card(path).labels == names
    assert tuple(json.loads(card.to_json())["labels"]) == names
