"""int8 tuning by distillation (export/tune.py): closer to the float model, through the export, bounded."""

import json

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from typer.testing import CliRunner

from flower_edge.common.errors import ConfigError
from flower_edge.export import ExportConfig
from flower_edge.export.cli import app
from flower_edge.export.qdq_graph import QDQGraph
from flower_edge.export.quantize import quantize_int8
from flower_edge.export.tune import tune
from flower_edge.runtime.session import open_session


def test_tuning_brings_the_int8_graph_closer_to_the_float_model(tiny_export, inputs, tmp_path):
    # everything int8, so that there is error to remove
    path = tmp_path / "int8.onnx"
    quantize_int8(tiny_export.output / "model.onnx", path, tiny_export.card, list(inputs), float_layers=())
    proto = onnx.load(path)
    float_weights = {
        i.name: numpy_helper.to_array(i) for i in onnx.load(tiny_export.output / "model.onnx").graph.initializer
    }
    twin = QDQGraph(proto, float_weights)
    both = np.ascontiguousarray(np.concatenate([inputs, inputs[..., ::-1]]))
    reference = open_session(tiny_export.output / "model.onnx").run(None, {"image": both})[0]

    def divergence(logits):  # what tuning minimizes: KL between the softened answers
        p, q = torch.log_softmax(torch.from_numpy(reference) / 2, 1), torch.log_softmax(torch.as_tensor(logits) / 2, 1)
        return float(torch.nn.functional.kl_div(q, p, reduction="batchmean", log_target=True))

    with torch.no_grad():
        start = divergence(twin(torch.from_numpy(both)))
    report = tune(twin, inputs, reference, epochs=4, batch_size=8, lr=2e-3, from_pixels=None)
    assert len(report.losses) == 4 and all(np.isfinite(report.losses))
    assert report.start == "image" and report.trained_parameters == report.parameters
    twin.write_into(proto)  # the file computes what was trained
    tuned = tmp_path / "tuned.onnx"
    onnx.save(proto, tuned)
    assert divergence(open_session(tuned).run(None, {"image": both})[0]) < start


@pytest.mark.slow
def test_tune_and_explain_through_the_export(tiny_checkpoint, synthetic_dir, tmp_path):
    result = CliRunner().invoke(
        app,
        [
            str(tiny_checkpoint),
            "-o",
            str(tmp_path),
            "--quantize",
            "--tune",
            "--tune-size",
            "16",
            "--tune-epochs",
            "1",
            "--explain",
            "--calib-data",
            str(synthetic_dir),
            "--calib-size",
            "8",
            "--min-agreement",
            "0",
            "--no-ort",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "int8 error by layer" in result.stdout and "lowest local SQNR" in result.stdout
    report = json.loads((tmp_path / "export.json").read_text())
    q = report["quantization"]
    assert q["tuning_size"] == 16 and q["tuning_epochs"] == 1 and len(q["tuning_loss"]) == 1
    layers = report["explain"]
    assert len(layers) > 20 and [r["index"] for r in layers] == sorted(r["index"] for r in layers)
    convs = [r for r in layers if r["weight_db"] is not None]
    assert convs and all(r["weight_db"] > 20 for r in convs)  # 8-bit weights: about 40 dB
    assert all(r["accumulated_db"] is not None for r in layers)
    assert all(r["local_db"] > 15 for r in layers)  # 8-bit rounding of one tensor, clipping excluded
    card = json.loads((tmp_path / "card.json").read_text())
    assert card.get("quantization") is None  # the float card stays float; the int8 file carries its own


def test_tuning_photos_are_never_verification_photos(tiny_checkpoint, synthetic_dir):
    from flower_edge.export.images import choose_images

    config = ExportConfig(
        checkpoint=str(tiny_checkpoint), quantize=True, tune=True, tune_size=10_000, calib_data=str(synthetic_dir)
    )
    sets = choose_images(config, "synthetic")
    assert sets.tuning and not set(sets.tuning) & set(sets.verification)
    assert set(sets.calibration) <= set(sets.tuning)


@pytest.mark.parametrize(
    "field, value", [("tune_size", 0), ("tune_size", 10**6), ("tune_epochs", 0), ("tune_epochs", 51)]
)
def test_tuning_resources_are_bounded(field, value):
    with pytest.raises(ConfigError, match=f"--{field.replace('_', '-')} must be between"):
        ExportConfig(checkpoint="x.pth", **{field: value})


def test_tuning_from_a_cut_keeps_the_start_of_the_graph_as_quantized(tiny_export, inputs):
    proto = onnx.load(tiny_export.output / "model.int8.onnx")
    twin = QDQGraph(proto)
    reference = open_session(tiny_export.output / "model.onnx").run(
        None, {"image": np.ascontiguousarray(np.concatenate([inputs, inputs[..., ::-1]]))}
    )[0]
    source = twin.cut(torch.from_numpy(inputs), 8 * 8)
    assert source != "image" and twin.schedule(source) is not None
    assert twin.schedule(twin.nodes[5].output[0]) is None  # early tensors do not carry the whole rest
    before = {i.name: numpy_helper.to_array(i).copy() for i in proto.graph.initializer}
    report = tune(twin, inputs, reference, epochs=2, batch_size=8, lr=5e-3, from_pixels=1 / 64)  # 64 px: cut at 8 x 8
    assert report.start == source and 0 < report.trained_parameters < report.parameters
    twin.write_into(proto)
    after = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    frozen = twin.schedule("image", source)
    frozen_weights = {twin.weights[n.output[0]]["init"] for n in frozen if n.output[0] in twin.weights}
    assert frozen_weights and all(np.array_equal(before[w], after[w]) for w in frozen_weights)
    assert any(
        not np.array_equal(before[w], after[w]) for w in before if w.endswith("_quantized") and w not in frozen_weights
    )
