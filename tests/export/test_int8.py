"""int8 quality tools: float logits, the PyTorch twin of the QDQ graph, tuning by distillation, --explain."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper

from flower_edge.export import ExportConfig, export
from flower_edge.export.qdq_graph import QDQGraph
from flower_edge.runtime.card import ModelCard
from flower_edge.runtime.session import open_session


def test_logits_stay_float(tiny_export):
    """Rounding the logits to 256 levels ties close answers: the last layer writes float logits."""
    graph = onnx.load(tiny_export.output / "model.int8.onnx").graph
    last = next(n for n in graph.node if graph.output[0].name in n.output)
    assert last.op_type == "Gemm"
    names = {i.name for i in graph.initializer}
    assert not any(n.op_type == "QuantizeLinear" and n.input[0] == last.output[0] for n in graph.node)
    assert {i for n in graph.node for i in n.input if i} >= names  # no initializer left unused
    assert "logits float" in tiny_export.int8_card.quantization["activations"]


def test_the_pytorch_twin_computes_what_onnxruntime_computes(tiny_export, inputs):
    """The same integer graph, in PyTorch and in onnxruntime's kernels; equal up to near-ties.

    A value within float rounding of a tie between two codes may go either way, and each flipped
    code feeds the next layers: on the Flowers102 model half of the last layers' codes differ by a
    step, and the logits differ by a third of what int8 differs from float (so does onnxruntime
    with and without its graph optimizations). So: the first layer, which sees the same codes,
    agrees code for code but at near-ties, and the logits stay far closer to onnxruntime's than
    the float model's are (a twin that does not round at all would be exactly as far)."""
    path = tiny_export.output / "model.int8.onnx"
    proto = onnx.load(path)
    twin = QDQGraph(proto).eval()
    stem = next(n for n in proto.graph.node if n.op_type == "Conv")
    q = next(n for n in proto.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == stem.output[0])
    scale, zero_point, lo, hi = twin.fake_quant[q.output[0]]
    with torch.no_grad():
        logits = twin(torch.from_numpy(inputs)).numpy()
        codes = torch.clamp(
            torch.round(twin(torch.from_numpy(inputs), target=stem.output[0]) / scale) + zero_point, lo, hi
        ).numpy()
    proto.graph.output.append(onnx.helper.make_tensor_value_info(q.output[0], onnx.TensorProto.UINT8, None))
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    ort_logits, ort_codes = session.run(None, {"image": inputs})
    float_logits = open_session(tiny_export.output / "model.onnx").run(None, {"image": inputs})[0]

    flipped = np.abs(codes - ort_codes)
    assert flipped.max() <= 1 and (flipped > 0).mean() < 1e-3
    assert np.abs(logits - ort_logits).mean() < 0.5 * np.abs(ort_logits - float_logits).mean()


def test_writing_back_untrained_weights_reproduces_the_quantizer(tiny_export):
    """Built from the float weights, the twin rounds them exactly as onnxruntime's quantizer did."""
    path = tiny_export.output / "model.int8.onnx"
    proto = onnx.load(path)
    float_weights = {
        i.name: numpy_helper.to_array(i) for i in onnx.load(tiny_export.output / "model.onnx").graph.initializer
    }
    twin = QDQGraph(proto, float_weights)
    before = {i.name: numpy_helper.to_array(i).copy() for i in proto.graph.initializer}
    twin.write_into(proto)
    after = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    assert before.keys() == after.keys()
    weights = [n for n in before if n.endswith("_quantized") and before[n].dtype == np.int8]
    assert weights and all(np.array_equal(before[n], after[n]) for n in weights)
    for name, value in before.items():  # int32 biases: within float32 precision of their tiny steps
        value, new = value.astype(np.float64), after[name].astype(np.float64)
        assert (np.abs(value - new) <= np.maximum(1, 1e-6 * np.abs(value))).all(), name


@pytest.mark.parametrize("key", ["tflite-int8", "pte-int8"])
def test_pt2e_rounds_a_convolution_and_its_relu6_once(key, tiny_checkpoint):
    """Each convolution followed by ReLU6 is quantized after the ReLU6 only: no int8 rounding of
    the convolution's own output, which would waste most of the 256 steps on values ReLU6 clips."""
    from flower_edge.export.formats import FORMATS
    from flower_edge.export.pt2e import calibrated
    from flower_edge.train.checkpoint import load_model

    if FORMATS[key].missing() is not None:
        pytest.skip(FORMATS[key].missing())
    if key == "tflite-int8":
        from litert_torch.quantize import pt2e_quantizer as pq

        quantizer = pq.PT2EQuantizer().set_global(pq.get_symmetric_quantization_config(is_per_channel=True))
    else:
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
            XNNPACKQuantizer,
            get_symmetric_quantization_config,
        )

        quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    model, card, _ = load_model(tiny_checkpoint)
    photos = list(np.random.default_rng(0).standard_normal((4, *card.input_size)).astype(np.float32))
    stem = "features.0.conv"
    whole = calibrated(
        model,
        (torch.zeros(1, *card.input_size),),
        quantizer,
        photos,
        lambda line: None,
        key,
        [stem],
        fold_quantize=False,
    )
    nodes = [n for n in whole[0].graph.nodes if n.op == "call_function"]
    relu6 = [n for n in nodes if "hardtanh" in str(n.target)]
    assert len(relu6) >= 10
    for node in relu6:  # conv -> relu6 -> quantize, never conv -> quantize -> dequantize -> relu6
        assert "conv" in str(node.args[0].target), (node, node.args[0])
        assert all("quantize_per_tensor" in str(user.target) for user in node.users), node
    x = torch.from_numpy(np.stack(photos))
    with torch.no_grad():
        assert torch.isfinite(whole(x)).all()


def test_pixel_levels_land_exactly_on_the_input_grid_and_the_stem_bias_makes_up_the_shift(tiny_export):
    """Mean 0.5 puts every normalized pixel level half a step between two uint8 codes; the graph
    shifts it onto a code, and the stem's bias subtracts what the shift adds."""
    graph = onnx.load(tiny_export.output / "model.int8.onnx").graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    card = tiny_export.int8_card
    assert tuple(card.mean) == (0.5,) * 3 and "exactly on the uint8 grid" in card.quantization["input"]
    shift = next(n for n in graph.node if n.op_type == "Add" and graph.input[0].name in n.input)
    pad = next(n for n in graph.node if n.op_type == "Pad" and n.input[0] == shift.output[0])
    q = next(n for n in graph.node if n.op_type == "QuantizeLinear" and n.input[0] == pad.output[0])
    levels = (np.arange(256, dtype=np.float32) / 255 - np.float32(0.5)) / np.float32(0.5)  # as the card normalizes
    codes = (levels + inits[shift.input[1]]) / inits[q.input[1]] + inits[q.input[2]]
    assert np.abs(codes - np.arange(256)).max() < 1e-3  # level p is code p: no rounding left

    # stem bias (int32 x its step) + shift x the int8 weights' sums = the float model's stem bias
    producer = {o: n for n in graph.node for o in n.output}
    dq = next(n for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] == q.output[0])
    conv = next(n for n in graph.node if n.op_type == "Conv" and n.input[0] == dq.output[0])
    w_dq, b_dq = producer[conv.input[1]], producer[conv.input[2]]
    w = inits[w_dq.input[0]].astype(np.float64) * inits[w_dq.input[1]].reshape(-1, 1, 1, 1)
    bias = inits[b_dq.input[0]] * inits[b_dq.input[1]].astype(np.float64)
    floats = {i.name: numpy_helper.to_array(i) for i in onnx.load(tiny_export.output / "model.onnx").graph.initializer}
    float_bias = floats[b_dq.input[0].removesuffix("_quantized")]
    made_up = bias + float(inits[shift.input[1]]) * w.reshape(len(w), -1).sum(1)
    step = inits[b_dq.input[1]].astype(np.float64)  # the int32 bias's own step: rounded twice, by
    assert (np.abs(made_up - float_bias) <= step * 1.01 + 1e-7).all()  # the quantizer and the shift
    assert (np.abs(bias - float_bias) > step).any()  # the correction is not nothing


def _without_channel_pad(proto: onnx.ModelProto) -> onnx.ModelProto:
    """``proto`` as it was before align_input_channels: no Pad, the stem's weights 3 channels wide."""
    proto = onnx.ModelProto.FromString(proto.SerializeToString())
    graph = proto.graph
    pad = next(n for n in graph.node if n.op_type == "Pad")
    for node in graph.node:
        node.input[:] = [pad.input[0] if i == pad.output[0] else i for i in node.input]
    graph.node.remove(pad)
    stem = next(n for n in graph.node if n.op_type == "Conv")
    weight = next(n for n in graph.node if n.output[0] == stem.input[1]).input[0]
    init = next(i for i in graph.initializer if i.name == weight)
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init)[:, :3], weight))
    return proto


def test_the_photo_is_padded_to_four_channels_for_the_fast_kernel_and_answers_the_same(tiny_export, inputs):
    """onnxruntime's fast int8 convolution takes input channels in multiples of 4: a zero fourth
    channel with zero weights changes no answer."""
    proto = onnx.load(tiny_export.output / "model.int8.onnx")
    graph = proto.graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    pad = next(n for n in graph.node if n.op_type == "Pad")
    assert inits[pad.input[1]].tolist() == [0, 0, 0, 0, 0, 1, 0, 0]
    stem = next(n for n in graph.node if n.op_type == "Conv")
    weight = inits[next(n for n in graph.node if n.output[0] == stem.input[1]).input[0]]
    assert weight.shape[1] == 4 and not weight[:, 3].any() and weight[:, :3].any()
    assert "multiple of 4" in tiny_export.int8_card.quantization["input_channels"]

    padded = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    plain = ort.InferenceSession(_without_channel_pad(proto).SerializeToString(), providers=["CPUExecutionProvider"])
    a, b = padded.run(None, {"image": inputs})[0], plain.run(None, {"image": inputs})[0]
    float_logits = open_session(tiny_export.output / "model.onnx").run(None, {"image": inputs})[0]
    assert (a.argmax(1) == b.argmax(1)).all()  # the same integers; only kernels' near-ties may differ
    assert np.abs(a - b).mean() <= 0.5 * np.abs(b - float_logits).mean()
    with torch.no_grad():  # the twin computes the padded graph too
        twin = QDQGraph(proto).eval()(torch.from_numpy(inputs)).numpy()
    assert (twin.argmax(1) == a.argmax(1)).mean() >= 11 / 12


def test_the_final_mean_is_a_quantized_global_average_pool(tiny_export, tmp_path, inputs):
    """ReduceMean over the feature map stays float in onnxruntime's quantizer (a dequantize and a
    transpose out of the int8 layout); GlobalAveragePool, the same arithmetic, is quantized."""
    from flower_edge.export.quantize import prepare

    prepared = tmp_path / "prepared.onnx"
    prepare(tiny_export.output / "model.onnx", prepared)
    ops = [n.op_type for n in onnx.load(prepared).graph.node]
    assert "ReduceMean" not in ops and ops.count("GlobalAveragePool") == 1
    before = open_session(tiny_export.output / "model.onnx").run(None, {"image": inputs})[0]
    after = open_session(prepared).run(None, {"image": inputs})[0]
    np.testing.assert_allclose(after, before, atol=1e-5)

    graph = onnx.load(tiny_export.output / "model.int8.onnx").graph
    pool = next(n for n in graph.node if n.op_type == "GlobalAveragePool")
    producer = {o: n for n in graph.node for o in n.output}
    assert producer[pool.input[0]].op_type == "DequantizeLinear"
    assert any(n.op_type == "QuantizeLinear" and n.input[0] == pool.output[0] for n in graph.node)


@pytest.mark.slow
def test_reduce_range_writes_a_seven_bit_model_that_says_so(tiny_checkpoint, synthetic_dir, tmp_path, monkeypatch):
    """--reduce-range: every int8 weight fits 7 bits and the card says so, so that flower-run takes the
    fast kernels for it on an AVX2-only CPU (tests/runtime/test_cpu.py checks the choice itself)."""
    from flower_edge.runtime import cpu
    from flower_edge.runtime.session import kernel_path

    result = export(
        ExportConfig(
            checkpoint=str(tiny_checkpoint),
            output=str(tmp_path),
            quantize=True,
            reduce_range=True,
            calib_data=str(synthetic_dir),
            calib_size=20,
            ort_format=False,
            min_agreement=0.0,
        )
    )
    model = result.output / "model.int8.onnx"
    assert ModelCard.from_onnx(model).quantization["reduce_range"] is True
    weights = [
        numpy_helper.to_array(i)
        for i in onnx.load(str(model)).graph.initializer
        if i.data_type == onnx.TensorProto.INT8 and i.dims and len(i.dims) > 1
    ]
    assert weights and all(np.abs(w.astype(np.int16)).max() <= 64 for w in weights)
    fake = cpu.CpuInt8("x86_64", "an AVX2-only CPU", True, False, False, "exact", "test")
    monkeypatch.setattr(cpu, "cpu_int8", lambda: fake)
    assert kernel_path(open_session(model)) == "fast"
