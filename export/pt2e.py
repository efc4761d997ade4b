"""PyTorch 2 export quantization (PT2E), calibrated on the photos every int8 format shares.

    graph = calibrated(model, example, quantizer, photos, progress, "tflite-int8")

LiteRT and ExecuTorch both quantize this way, each with its own quantizer (the one that matches
its kernels): export the model, insert observers, run the calibration photos through it, convert.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from flower_edge.common.errors import ExportError
from flower_edge.common.progress import ProgressLines

BATCH = 25
"""Photos per calibration step: the activation observers (histograms) cost about the same per call
whatever the batch, so batches make calibration many times faster than one photo at a time."""


def calibrated(
    model,
    example: tuple,
    quantizer,
    photos: Sequence[np.ndarray],
    progress: Callable[[str], None],
    what: str,
    float_layers: Sequence[str] = (),
    fold_quantize: bool = True,
):
    """``model`` (a FlowerNet) with its features quantized to int8, observed on ``photos`` (each
    (3, H, W), normalized); the convolutions named in ``float_layers`` (export/search.py's choice,
    the same as the int8 ONNX file's) and the classifier stay float.

    Why the classifier stays float: the activation observers (histograms) clip outliers to lower the
    average error, while the top logit is the outlier that matters. Quantized whole, the Flowers102
    model agreed with PyTorch on 96% of the valid photos.

    The quantized part is observed with a dynamic batch axis; the caller exports the whole again
    with its own (batch 1) example, which fixes the file's input shape."""
    from collections import OrderedDict

    import torch
    from torch import nn
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    if not photos:
        raise ExportError("no readable calibration photos")
    model = model.eval()
    modules = dict(model.named_modules())
    for name in float_layers:
        if not isinstance(modules.get(name), nn.Conv2d):
            raise ExportError(f"{what}: the model has no convolution named {name!r}")
    body = nn.Sequential(OrderedDict(features=model.features, pool=model.pool, flatten=nn.Flatten(1))).eval()
    batch = torch.export.Dim("batch", max=1024)
    program = torch.export.export(
        body, (example[0].expand(2, *example[0].shape[1:]).contiguous(),), dynamic_shapes=({0: batch},)
    )
    graph = prepare_pt2e(program.module(), _annotated(quantizer, float_layers))
    lines = ProgressLines(f"{what}: calibrating", len(photos), progress)
    with torch.no_grad():
        for i in range(0, len(photos), BATCH):
            chunk = torch.from_numpy(np.stack(photos[i : i + BATCH]).astype(np.float32))  # (B, 3, H, W)
            graph(chunk)
            lines.advance(len(chunk))
    lines.close()
    quantized = move_exported_model_to_eval(convert_pt2e(graph, fold_quantize=fold_quantize))
    whole = nn.Sequential(quantized, model.head)
    for module in whole.modules():  # the flag converters check; the graphs are eval already
        module.training = False
    return whole


def calibrated_within_budget(
    job, model, example: tuple, make_quantizer: Callable[[], object], what: str, fold_quantize: bool = True
):
    """:func:`calibrated` with the float layers of the int8 search (export/search.py), and, when
    this quantizer loses more than onnxruntime's there, with more of the same order until the
    budget holds on the verification photos: (model, quantizer, float layers, trials), a trial
    being (float layers, agreement) as measured here, in PyTorch, before conversion; when none
    keeps the budget, the one that agreed best.

    Why a row may keep more: these quantizers take int8 activations, the pixels too, observed by
    histograms. On a Flowers102 model that onnxruntime quantized whole at 100% agreement, LiteRT's
    and ExecuTorch's all-int8 files agreed on 97.5% and 98%; the stem float won that back."""
    import torch

    from .search import LADDER

    plan = job.int8_plan()
    floor = job.options.int8.floor
    # The stem stays float here whatever the ONNX search chose: these quantizers round the pixels to
    # int8, and measured in PyTorch before conversion an int8 stem looked fine (100%) where the
    # files agreed on 98.3% (the README's synthetic model); on plain Flowers102, 98% -> 99.5-100%.
    stem = next(name for name, m in model.named_modules() if isinstance(m, torch.nn.Conv2d))
    chosen = tuple(plan.chosen.candidate.float_layers)
    ladder = [chosen if stem in chosen else (stem, *chosen)]
    x = job.verification
    if job.options.int8.float_layers is None and len(x):
        order = plan.float_order(job)
        ladder += [tuple(order[:k]) for k in LADDER if len(ladder[0]) < k <= len(order)]
    reference = job.reference_logits().argmax(1) if len(x) else None
    trials, best = [], None
    for layers in ladder:
        quantizer = make_quantizer()
        graph = calibrated(model, example, quantizer, job.calibration, job.progress, what, layers, fold_quantize)
        if reference is None:
            return graph, quantizer, layers, trials
        with torch.no_grad():
            answers = np.concatenate(
                [graph(torch.from_numpy(x[i : i + BATCH])).argmax(1).numpy() for i in range(0, len(x), BATCH)]
            )
        agreement = float((answers == reference).mean())
        trials.append((list(layers), agreement))
        job.progress(
            f"{what}: {len(layers)} float layer{'' if len(layers) == 1 else 's'}: agreement {agreement:.2%} (floor {floor:.2%})"
        )
        if best is None or agreement > best[3]:
            best = (graph, quantizer, layers, agreement)
        if agreement >= floor:
            return graph, quantizer, layers, trials
    return (*best[:3], trials)


def quantization_record(tool: str, quantizer: str, job, layers, trials=()) -> dict:
    """The card's quantization record of a PT2E file made with the job's int8 plan
    (export/search.py), keeping ``layers`` float after ``trials`` (:func:`calibrated_within_budget`)."""
    from .record import QuantizationRecord

    plan = job.int8_plan()
    return QuantizationRecord(
        f"{tool} ({quantizer})",
        "PT2E static",
        "int8, per tensor, asymmetric; the classifier and the logits float",
        "int8, per channel, symmetric",
        tuple(layers),
        "histogram (the quantizer's HistogramObserver)",
        job.calibration_source,
        len(job.calibration),
        tuning="not applied: only the ONNX file is tuned" if plan.chosen.candidate.tune else None,
        budget={
            "max_drop_points": plan.max_drop,
            "agreement_floor": plan.floor,
            "search": "the int8 ONNX search's float layers, more of its order if this quantizer needed them",
            "candidates": [{"float_layers": len(names), "agreement": a} for names, a in trials],
        },
    ).to_dict()


def _annotated(quantizer, names: Sequence[str]):
    """``quantizer`` with two things annotated before it runs (both quantizers skip a node that is
    annotated already):

    - the convolutions of the modules ``names`` left float, with an empty annotation. Neither
      quantizer has one way to say so (LiteRT's refuses ``set_module_name(name, None)``).
      Module names are the model's (``features.0.conv``), as the exported body keeps them.
    - each convolution followed by ReLU6 (``hardtanh``) as one unit, quantized after the ReLU6
      only, as the quantizers do for ReLU. Left to them, the convolution's own output is rounded to
      int8 over its whole range first, then clipped to [0, 6] and rounded again. On the Flowers102
      default model (818 valid photos) LiteRT's file agreed with PyTorch on 98.78% with the stem
      float and no better than 98.90% with 16 float layers; fused, 99.27% with the stem float
      (ExecuTorch's: 99.39%). EfficientNet-Lite has 33 such pairs."""
    import torch
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation, Quantizer

    names = set(names)
    convolutions = {torch.ops.aten.conv2d.default, torch.ops.aten.convolution.default}
    relu6 = {torch.ops.aten.hardtanh.default, torch.ops.aten.hardtanh_.default}

    class Annotated(Quantizer):
        def transform_for_annotation(self, model):
            return quantizer.transform_for_annotation(model)

        def annotate(self, model):
            config = quantizer.global_config
            for node in model.graph.nodes:
                stack = node.meta.get("nn_module_stack") or {}
                if node.op == "call_function" and stack and list(stack.values())[-1][0] in names:
                    node.meta["quantization_annotation"] = QuantizationAnnotation(_annotated=True)
            for node in model.graph.nodes:
                conv = node.args[0] if node.op == "call_function" and node.target in relu6 else None
                if (
                    conv is None
                    or getattr(conv, "target", None) not in convolutions
                    or len(conv.users) != 1
                    or "quantization_annotation" in conv.meta
                    or tuple(node.args[1:3]) not in {(), (0.0, 6.0)}
                ):
                    continue
                inputs = {conv.args[0]: config.input_activation, conv.args[1]: config.weight}
                if len(conv.args) > 2 and isinstance(conv.args[2], torch.fx.Node):
                    inputs[conv.args[2]] = config.bias
                conv.meta["quantization_annotation"] = QuantizationAnnotation(input_qspec_map=inputs, _annotated=True)
                node.meta["quantization_annotation"] = QuantizationAnnotation(
                    output_qspec=config.output_activation, _annotated=True
                )
            return quantizer.annotate(model)

        def validate(self, model) -> None:
            quantizer.validate(model)

    return Annotated()
