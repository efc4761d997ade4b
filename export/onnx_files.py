"""The format table's writers of the ONNX files (export/formats.py): float, pixels in, and int8.

The work is done by export/onnx_export.py (the dynamo exporter) and export/search.py with
export/quantize.py (int8 by budget); those import torch and onnx, so they are imported here when a
writer runs, and the table stays light.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from flower_edge.common.files import atomic_write

from .job import Written

if TYPE_CHECKING:
    from .formats import Format
    from .job import WriteJob


def write_float(job: WriteJob, fmt: Format) -> Written:
    from .onnx_export import export_onnx

    job.progress(f"ONNX: exporting at opset {job.options.opset}, checking, optimizing")
    export_onnx(job.model, job.card, job.staging / fmt.file, job.options.opset)
    return Written()


def write_preprocessing(job: WriteJob, fmt: Format) -> Written:
    from .onnx_export import export_onnx

    job.progress("ONNX: the variant that takes uint8 pixels")
    export_onnx(job.model, job.card, job.staging / fmt.file, job.options.opset, embed_preprocessing=True)
    return Written()


def write_int8(job: WriteJob, fmt: Format) -> Written:
    """The int8 ONNX file the search chose (export/search.py), its card recording the choice and
    the budget; with --explain, each layer's error on the calibration photos."""
    import onnx

    from .onnx_export import set_card

    plan = job.int8_plan()
    chosen = plan.chosen.result
    assert chosen is not None  # the search quantized it
    card = replace(chosen.card, quantization=chosen.record.with_budget(plan.budget()).to_dict())
    proto = onnx.load(str(plan.chosen.path))
    set_card(proto, card)
    path = job.staging / fmt.file
    atomic_write(path, lambda f: f.write(proto.SerializeToString()))
    explain: tuple = ()
    if job.options.int8.explain:
        from .explain import explain_int8

        job.progress(f"int8: each layer's error on {len(job.calibration)} calibration photos (--explain)")
        explain = tuple(explain_int8(plan.prepared, path, job.calibration))
    return Written(card=card, explain=explain)
