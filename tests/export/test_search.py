"""int8 by budget (export/search.py): the search, what the files record, and a failing row."""

import itertools
import json

import pytest
from typer.testing import CliRunner

from flower_edge.common.errors import ConfigError
from flower_edge.export import ExportConfig, export
from flower_edge.export.cli import app
from flower_edge.export.formats import FORMATS


def _export(checkpoint, data, out, **options):
    values = dict(
        checkpoint=str(checkpoint),
        output=str(out),
        format="onnx",
        quantize=True,
        calib_data=str(data),
        calib_size=8,
        ort_format=False,
        tune=False,
    )
    values.update(options)
    return export(ExportConfig(**values))


@pytest.fixture(scope="module")
def loose(tiny_checkpoint, synthetic_dir, tmp_path_factory):
    """Any agreement will do: the first candidate, everything int8, is kept."""
    return _export(tiny_checkpoint, synthetic_dir, tmp_path_factory.mktemp("loose"), max_drop=100)


@pytest.mark.slow
def test_a_loose_budget_keeps_everything_int8_and_stops_at_once(loose):
    plan = loose.search
    assert [t.candidate.float_layers for t in plan.trials] == [()]
    assert plan.chosen is plan.trials[0] and plan.met and plan.floor == 0.0


@pytest.mark.slow
def test_a_tight_budget_keeps_layers_float(tiny_checkpoint, synthetic_dir, tmp_path, loose):
    """A floor just above what the all-int8 model agrees on (measured on this CPU: int8 kernels
    differ between CPUs) makes the search go past it: more float layers, in the sensitivity order."""
    first = loose.search.trials[0]
    if first.agreement == 1.0:
        pytest.skip("the all-int8 tiny model agrees on every photo on this CPU: no budget can be missed")
    photos = loose.search.photos
    allowed = (1 - first.agreement) * 100 - 50 / photos  # half a photo less than the all-int8 model lost
    result = _export(tiny_checkpoint, synthetic_dir, tmp_path, max_drop=max(allowed, 0.0), calib_method="minmax")
    plan = result.search
    counts = [len(t.candidate.float_layers) for t in plan.trials]
    assert counts[0] == 0 and not plan.trials[0].passed
    assert counts == sorted(counts) and len(counts) > 1  # the ladder climbs: 0, 1, 2, 4, ...
    import onnx

    from flower_edge.export.int8_rewrites import conv_layers

    network = tuple(conv_layers(onnx.load(str(result.output / "model.onnx"))))  # the network order
    by_sensitivity = [
        t.candidate.float_layers
        for t in plan.trials
        if t.candidate.float_layers != network[: len(t.candidate.float_layers)]
    ]
    assert all(a == b[: len(a)] for a, b in itertools.pairwise(by_sensitivity))  # one order, longer prefixes
    if plan.met:
        assert len(plan.chosen.candidate.float_layers) > 0 and plan.chosen.agreement >= plan.floor
        assert plan.chosen is next(t for t in plan.trials if t.passed)  # the first that passed: the cheapest
    else:
        assert "onnx-int8" in result.not_written


def test_the_card_and_export_json_record_the_budget_and_the_candidates(loose):
    from flower_edge.runtime.card import ModelCard

    card = ModelCard.from_onnx(loose.output / "model.int8.onnx")
    budget = card.quantization["budget"]
    assert budget["max_drop_points"] == 100 and budget["agreement_floor"] == 0.0
    assert budget["agreement"] == loose.search.chosen.agreement and budget["met"] is True
    assert card.quantization["float_layer_names"] == []
    record = json.loads((loose.output / "export.json").read_text())
    search = record["int8_search"]
    assert search["budget"] == budget and len(search["candidates"]) == 1
    assert {"agreement", "latency_ms", "size", "float_layers"} <= set(search["candidates"][0])


@pytest.mark.slow
def test_every_int8_format_keeps_the_layers_the_search_chose(tiny_checkpoint, synthetic_dir, tmp_path):
    """One choice for every int8 row: --float-layers 3 here (the search's own choice is a list of
    names the same way), read back from each file's card."""
    keys = [k for k in ("tflite-int8", "pte-int8") if FORMATS[k].missing() is None]
    result = _export(
        tiny_checkpoint,
        synthetic_dir,
        tmp_path,
        format=",".join(["onnx", *keys]),
        float_layers=3,
        min_agreement=0.0,
        verify=False,  # what is checked here is each file's card; the other tests verify the files
    )
    names = result.search.chosen.candidate.float_layers
    assert len(names) == 3 and names[0] == "features.0.conv"
    for key in ["onnx-int8", *keys]:
        q = FORMATS[key].read_card(tmp_path / FORMATS[key].file).quantization
        assert q["float_layer_names"] == list(names), key
        assert q["budget"]["agreement_floor"] == 0.0, key


@pytest.mark.slow
def test_a_failing_row_does_not_discard_the_others(tiny_checkpoint, synthetic_dir, tmp_path, monkeypatch):
    """An int8 file under its budget is left out with one line; the files that passed are written."""
    from dataclasses import replace

    from flower_edge.export import verify

    real = verify.compare

    def int8_fails(name, *args, **kwargs):  # as if the int8 file flipped answers on this CPU
        row = real(name, *args, **kwargs)
        return replace(row, passed=False) if name == "onnx-int8" else row

    monkeypatch.setattr(verify, "compare", int8_fails)
    result = CliRunner().invoke(
        app,
        [
            str(tiny_checkpoint),
            "-o",
            str(tmp_path),
            "--format",
            "onnx,torchscript",
            "--quantize",
            "--no-tune",
            "--calib-data",
            str(synthetic_dir),
            "--calib-size",
            "8",
            "--max-drop",
            "100",
            "--no-ort",
            "--quiet",
        ],
    )
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "not written: onnx-int8" in lines[0] and "the other files were written" in lines[0]
    assert (tmp_path / "model.onnx").is_file() and (tmp_path / "model.pt").is_file()
    assert not (tmp_path / "model.int8.onnx").exists() and not list(tmp_path.glob(".flower-export-*"))
    record = json.loads((tmp_path / "export.json").read_text())
    assert record["not_written"] == ["onnx-int8"] and "model.int8.onnx" not in record["files"]
    assert "int8 candidates" in result.stdout  # the table is printed all the same


@pytest.mark.parametrize("value", [-0.1, 100.5, float("nan")])
def test_the_budget_is_bounded(value):
    with pytest.raises(ConfigError, match="--max-drop must be between 0 and 100"):
        ExportConfig(checkpoint="x.pth", max_drop=value)


def test_the_budget_in_points_sets_the_floor():
    assert ExportConfig(checkpoint="x.pth", max_drop=0.2).agreement_floor == 0.998
    assert ExportConfig(checkpoint="x.pth", min_agreement=0.97).agreement_floor == 0.97
    assert ExportConfig(checkpoint="x.pth").agreement_floor == 0.99  # the default: 1 point


@pytest.mark.parametrize(
    "photos, max_drop, said",
    [
        (426, 0.2, "so no photo may flip"),
        (818, 0.2, "so at most 1 may flip"),
        (200, 1.0, "so at most 2 may flip"),
        (500, 0.2, "so at most 1 may flip"),
    ],
)
def test_the_table_says_the_budget_in_photos(loose, photos, max_drop, said):
    """0.2 points of 426 photos is 0.85 of a photo: no flip at all, which a user should read in the
    table rather than work out (500 photos: exactly one)."""
    from dataclasses import replace

    from flower_edge.export.plan import search_table

    plan = replace(loose.search, photos=photos, floor=round(1 - max_drop / 100, 6), max_drop=max_drop)
    assert said in search_table(plan).splitlines()[0]
