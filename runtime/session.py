"""The one way flower-edge opens an onnxruntime session (``.onnx`` or ``.ort``).

    session = open_session("model.int8.onnx", threads=2)

int8 models run with exact integer arithmetic on every CPU. x86 CPUs without VNNI (AVX2 only)
otherwise multiply uint8 by int8 with a 16-bit saturating instruction whose sums overflow with
8-bit weights: on the default Lite0 model top-1 agreement with PyTorch fell from 94% to 82%.
``session.x64quantprecision`` makes onnxruntime take the exact path there; float models and
other CPUs are unaffected.
"""

from __future__ import annotations

import os

import onnxruntime as ort

from .errors import FlowerEdgeError


def open_session(path: str | os.PathLike, threads: int | None = None) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.add_session_config_entry("session.x64quantprecision", "1")
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph/NoSuchFile kinds
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise FlowerEdgeError(f"{path}: onnxruntime cannot load this model ({reason[:300]})") from None
