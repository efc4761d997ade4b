"""The int8 graph, rewritten where onnxruntime's quantizer leaves it slow or lossy, and its layers named.

    layers = conv_layers(proto)        # {"features.0.conv": "node_Conv_0", ...}: float layers are chosen by these
    global_pooling(prepared)           # before quantizing: the final mean as a quantizable GlobalAveragePool
    float_output(int8); exact_input(int8, card); align_input_channels(int8)     # after it

Each rewrite returns whether it applied, so the card records what the file holds
(export/quantize.py); each is the same arithmetic, or closer to the float model's, and each was
kept because onnxruntime's profile or the agreement measured it (figures in the docstrings).
"""

from __future__ import annotations

import math

import numpy as np
import onnx

from flower_edge.runtime.card import ModelCard


def global_pooling(proto: onnx.ModelProto) -> bool:
    """Write the mean over the feature map (``ReduceMean`` over axes 2, 3, as PyTorch exports
    ``x.mean((2, 3), keepdim=True)``) as ``GlobalAveragePool``, the same arithmetic; True when it did.

    onnxruntime's quantizer leaves ``ReduceMean`` float, so the int8 graph dequantized the last
    feature map and onnxruntime transposed it back from its NHWC int8 layout first; the quantized
    ``GlobalAveragePool`` runs in NHWC int8. Flowers102 Lite0, batch 1, 2 threads, AMD EPYC
    (VNNI): 1.21 -> 1.18 ms."""
    graph = proto.graph
    constants = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer}
    done = False
    for index, node in enumerate(list(graph.node)):
        if node.op_type != "ReduceMean" or len(node.input) != 2 or node.input[1] not in constants:
            continue
        axes = sorted(int(a) % 4 for a in constants[node.input[1]].reshape(-1))
        keepdims = next((a.i for a in node.attribute if a.name == "keepdims"), 1)
        shape = _shape(graph, node.input[0])
        if axes != [2, 3] or not keepdims or len(shape) != 4:
            continue
        graph.node.remove(node)
        graph.node.insert(
            index,
            onnx.helper.make_node("GlobalAveragePool", [node.input[0]], list(node.output), name=f"{node.name}_global"),
        )
        done = True
    used = {i for node in graph.node for i in node.input}
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)
    return done


def _shape(graph: onnx.GraphProto, name: str) -> list:
    """The inferred shape of tensor ``name`` ([] when unknown)."""
    for info in list(graph.value_info) + list(graph.input) + list(graph.output):
        if info.name == name:
            return list(info.type.tensor_type.shape.dim)
    return []


def conv_layers(proto: onnx.ModelProto) -> dict[str, str]:
    """The convolutions of a graph in order, by layer name: the PyTorch module whose weight the
    node reads (``features.0.conv.weight`` -> ``features.0.conv``), to the node's name. The same
    names select float layers in the ONNX file and in the PT2E (LiteRT, ExecuTorch) ones."""
    layers = {}
    for node in proto.graph.node:
        if node.op_type == "Conv" and len(node.input) > 1:
            layers[node.input[1].removesuffix(".weight")] = node.name
    return layers


def exact_input(proto: onnx.ModelProto, card: ModelCard) -> bool:
    """Put every photo's pixel levels exactly on the input's uint8 grid; True when it did.

    The card normalizes a pixel level ``p`` to ``(p / 255 - mean) / std``: 256 values one step
    ``1 / (255 std)`` apart. The calibrated input grid has that step, but its zero point must be an
    integer, so with mean 0.5 (the EfficientNet-Lite cards) every level falls half a step between
    two codes and is rounded up or down by its parity: noise of half a step on every pixel. Measured
    on the Flowers102 default model (PyTorch evaluation of the QDQ graph, 300 valid photos, only
    the input rounded): 0.053 of standard deviation in the top-1 minus top-2 logit margin, as much
    as the six largest activations together. Here the graph adds the missing fraction of a step
    before quantizing (``x + delta``, then codes ``p`` with zero point ``floor(255 mean)``) and the
    convolutions that read the input subtract what ``delta`` adds (``delta`` times each output
    channel's weight sum) from their biases: exact except where the padding meets the border.
    Needs one mean and one std for all channels (else the levels of the channels differ)."""
    graph = proto.graph
    name = graph.input[0].name
    quantize = [n for n in graph.node if n.op_type == "QuantizeLinear" and n.input[0] == name]
    if len(quantize) != 1 or len(set(card.mean)) != 1 or len(set(card.std)) != 1:
        return False
    q = quantize[0]
    inits = {i.name: i for i in graph.initializer}
    zero_point = onnx.numpy_helper.to_array(inits[q.input[2]])
    if zero_point.dtype != np.uint8:
        return False
    step = np.float64(1.0) / (255.0 * np.float64(card.std[0]))
    level = 255.0 * np.float64(card.mean[0])  # the level that normalizes to 0
    zero = math.floor(level)
    delta = (level - zero) * step
    readers = [n for n in graph.node if q.output[0] in n.input]
    dequantized = [n.output[0] for n in readers if n.op_type == "DequantizeLinear"]
    convs = [n for n in graph.node if set(n.input) & set(dequantized)]
    if (
        len(dequantized) != len(readers)
        or not convs
        or any(n.op_type != "Conv" or n.input[0] not in dequantized or len(n.input) < 3 for n in convs)
    ):
        return False
    updates = _shifted_biases(graph, convs, inits, delta, step)
    if updates is None:
        return False
    for key, value in updates:
        inits[key].CopyFrom(onnx.numpy_helper.from_array(value, key))
    inits[q.input[1]].CopyFrom(onnx.numpy_helper.from_array(np.array(step, np.float32), q.input[1]))
    inits[q.input[2]].CopyFrom(onnx.numpy_helper.from_array(np.array(zero, np.uint8), q.input[2]))
    if delta:
        shifted = f"{name}_shifted"
        graph.initializer.append(onnx.numpy_helper.from_array(np.array(delta, np.float32), f"{name}_shift"))
        graph.node.insert(0, onnx.helper.make_node("Add", [name, f"{name}_shift"], [shifted], name=f"{name}_shift"))
        q.input[0] = shifted
    return True


def _shifted_biases(graph: onnx.GraphProto, convs, inits, delta: float, step: float) -> list | None:
    """The int32 biases (and their scales, on the exact input grid) of the convolutions that read the
    input, less what the input's shift by ``delta`` adds; None where a bias cannot be rewritten."""
    producer = {out: node for node in graph.node for out in node.output}
    updates = []
    for conv in convs:
        w_dq, b_dq = producer[conv.input[1]], producer[conv.input[2]]
        if w_dq.op_type != "DequantizeLinear" or b_dq.op_type != "DequantizeLinear":
            return None
        w = onnx.numpy_helper.to_array(inits[w_dq.input[0]]).astype(np.float64)
        w_scale = onnx.numpy_helper.to_array(inits[w_dq.input[1]]).astype(np.float64)
        bias = onnx.numpy_helper.to_array(inits[b_dq.input[0]]).astype(np.float64)
        bias *= onnx.numpy_helper.to_array(inits[b_dq.input[1]]).astype(np.float64)
        bias -= delta * w.reshape(len(w), -1).sum(1) * w_scale
        bias_scale = np.float32(step) * w_scale.astype(np.float32)
        codes = np.round(bias / bias_scale.astype(np.float64))
        if np.abs(codes).max() > np.iinfo(np.int32).max:
            return None
        updates += [(b_dq.input[0], codes.astype(np.int32)), (b_dq.input[1], bias_scale)]
    return updates


def align_input_channels(proto: onnx.ModelProto) -> bool:
    """Pad the quantized photo with zero channels to a multiple of 4, and the int8 convolution
    that reads it with zero weights for them; True when it did.

    onnxruntime's fast symmetric int8 convolution (MlasConvSym, VNNI) takes input channels in
    multiples of 4; the stem's 3 went through im2col and a generic GEMM, slower than the float
    stem. The padded channel adds nothing to any output (its weights are 0). Flowers102 Lite0,
    batch 1, 2 threads, AMD EPYC (VNNI), onnxruntime's profile: stem 0.17 -> 0.09 ms; whole model
    1.18 -> 1.13 ms."""
    graph = proto.graph
    inits = {i.name: i for i in graph.initializer}
    name = graph.input[0].name
    producer = {out: node for node in graph.node for out in node.output}
    quantize = [
        n
        for n in graph.node
        if n.op_type == "QuantizeLinear"
        and (n.input[0] == name or (n.input[0] in producer and producer[n.input[0]].input[0] == name))
    ]
    if len(quantize) != 1:
        return False  # the input is not quantized (the stem stays float)
    q = quantize[0]
    readers = [n for n in graph.node if q.output[0] in n.input]
    if len(readers) != 1 or readers[0].op_type != "DequantizeLinear":
        return False
    convs = [n for n in graph.node if readers[0].output[0] in n.input]
    if len(convs) != 1 or convs[0].op_type != "Conv" or convs[0].input[0] != readers[0].output[0]:
        return False
    weight = producer.get(convs[0].input[1])
    if weight is None or weight.op_type != "DequantizeLinear" or weight.input[0] not in inits:
        return False
    w = onnx.numpy_helper.to_array(inits[weight.input[0]])
    extra = -w.shape[1] % 4
    if not extra or w.ndim != 4 or any(a.name == "group" and a.i != 1 for a in convs[0].attribute):
        return False
    w = np.concatenate([w, np.zeros((w.shape[0], extra, *w.shape[2:]), w.dtype)], axis=1)
    inits[weight.input[0]].CopyFrom(onnx.numpy_helper.from_array(w, weight.input[0]))
    pads, padded = f"{name}_channel_pads", f"{q.input[0]}_padded"
    graph.initializer.append(onnx.numpy_helper.from_array(np.array([0, 0, 0, 0, 0, extra, 0, 0], np.int64), pads))
    graph.node.insert(
        list(graph.node).index(q),
        onnx.helper.make_node("Pad", [q.input[0], pads], [padded], name=f"{name}_channel_pad", mode="constant"),
    )
    q.input[0] = padded
    return True


def float_output(proto: onnx.ModelProto) -> None:
    """Drop the QuantizeLinear/DequantizeLinear pair on the graph's output: the logits stay float.

    Rounding the logits to 256 levels over their calibrated range (steps of about 0.1) ties and
    flips close answers for no gain in speed; onnxruntime still fuses the last layer (QGemm with a
    float output)."""
    graph = proto.graph
    producer = {out: node for node in graph.node for out in node.output}
    output = graph.output[0].name
    dq = producer.get(output)
    q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
    if q is None or q.op_type != "QuantizeLinear":
        return
    consumers = [n for n in graph.node for i in n.input if i in (q.output[0], dq.output[0])]
    if consumers != [dq]:
        return  # the quantized logits feed something else too; leave the graph as it is
    source = q.input[0]
    graph.node.remove(dq)
    graph.node.remove(q)
    unused = set(q.input[1:]) | set(dq.input[1:])
    unused -= {i for node in graph.node for i in node.input}
    for init in [i for i in graph.initializer if i.name in unused]:
        graph.initializer.remove(init)
    for node in graph.node:
        for i, name in enumerate(node.output):
            if name == source:
                node.output[i] = output
        for i, name in enumerate(node.input):
            if name == source:
                node.input[i] = output
