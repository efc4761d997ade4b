"""ONNX Runtime Mobile's ``.ort`` copies of the ONNX files, and their ``required_operators.config``.

    flower-export runs/flower.pth --format onnx,onnx-int8      # writes model.ort, model.int8.ort too

Made as onnxruntime's convert_onnx_models_to_ort makes them: fixed optimizations, no x86-only
NCHWc layout, plus the exact int8 arithmetic that the ONNX files get at load time (the .ort file
bakes in the kernels chosen while it is written). The operator config, for a reduced ONNX Runtime
Mobile build, covers every .ort file of the export.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from .job import Written

if TYPE_CHECKING:
    from .formats import Format
    from .job import WriteJob

ORT_CONFIG = "required_operators.config"


def write(job: WriteJob, fmt: Format) -> Written:
    """The format table's writer (export/formats.py): the .ort copy of ``fmt.source``'s file, which
    has the same name with .onnx (model.int8.ort: model.int8.onnx)."""
    import onnxruntime as ort
    from onnxruntime.tools.ort_format_model import create_config_from_models

    source = job.staging / Path(fmt.file).with_suffix(".onnx").name
    job.progress(f"{fmt.key}: ONNX Runtime Mobile copy of {source.name}")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = str(job.staging / fmt.file)
    options.add_session_config_entry("session.save_model_format", "ORT")
    options.add_session_config_entry("session.x64quantprecision", "1")
    options.add_session_config_entry("session.qdqisint8allowed", "0")
    ort.InferenceSession(
        str(source),
        options,
        providers=["CPUExecutionProvider"],
        disabled_optimizers=["NchwcTransformer"],
    )
    made = sorted(Path(job.staging).glob("*.ort"))
    logging.disable(logging.INFO)  # it logs each file at INFO
    try:
        create_config_from_models(made, job.staging / ORT_CONFIG, enable_type_reduction=False)
    finally:
        logging.disable(logging.NOTSET)
    config = job.staging / ORT_CONFIG  # its header names the models by their staging paths
    config.write_text(config.read_text().replace(f"{job.staging}{os.sep}", ""))
    return Written(files=(ORT_CONFIG,))
