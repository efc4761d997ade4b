"""The one way flower-edge opens an onnxruntime session (``.onnx`` or ``.ort``).

    session = open_session("model.int8.onnx", threads=2)
    session = open_session("model.int8.onnx", int8_path="exact")   # force the exact kernels
    kernel_path(session)                                           # "exact" or "fast"

int8 models take the kernel path that is right for this CPU (see ``runtime/cpu.py``): onnxruntime's
fast kernels wherever they are exact (VNNI x86 CPUs, Arm), about twice as fast; the exact path
(``session.x64quantprecision``) on x86 CPUs without VNNI, whose fast uint8 x int8 kernel saturates
16-bit sums with 8-bit weights (top-1 agreement with PyTorch fell from 94% to 82% on the default
flowers5 model). A model with 7-bit weights (``flower-export --reduce-range``) cannot saturate, so
it takes the fast path there too. Float models are unaffected.
"""

from __future__ import annotations

import json
import os

import onnxruntime as ort

from flower_edge.common.errors import ConfigError, FlowerEdgeError

from .card import ONNX_METADATA_KEY
from .cpu import int8_path as choose_int8_path

_PATH_KEY = "flower_edge.int8_path"  # remembered on the session for kernel_path()


def check_threads(threads: int | None) -> None:
    """None is onnxruntime's default (one per core); more threads than cores only oversubscribe
    (256 took 40x longer and 100,000 asked for 16 GB), so the bound is this machine's cores."""
    cores = os.cpu_count() or 1
    if threads is not None and not 1 <= threads <= cores:
        raise ConfigError(f"--threads must be between 1 and {cores} (the cores of this machine), found {threads}")


def session_options(threads: int | None = None, exact_int8: bool = False) -> ort.SessionOptions:
    check_threads(threads)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if exact_int8:
        options.add_session_config_entry("session.x64quantprecision", "1")
    return options


def open_session(
    path: str | os.PathLike, threads: int | None = None, *, int8_path: str | None = None
) -> ort.InferenceSession:
    """A CPU session for ``path``; ``int8_path``: auto (default: what this CPU needs), exact or fast."""
    chosen = choose_int8_path(int8_path)
    session = _load(path, session_options(threads, chosen == "exact"))
    if chosen == "exact" and int8_path in (None, "auto") and seven_bit_weights(session):
        chosen = "fast"  # 7-bit weights cannot saturate: the fast kernels are exact for this model
        session = _load(path, session_options(threads, False))
    setattr(session, _PATH_KEY, chosen)
    return session


def kernel_path(session: ort.InferenceSession) -> str:
    """The int8 kernel path ``session`` was opened with: exact or fast."""
    return getattr(session, _PATH_KEY, "fast")


def seven_bit_weights(session: ort.InferenceSession) -> bool:
    """Whether the model's card says its int8 weights are 7-bit (``--reduce-range``)."""
    text = session.get_modelmeta().custom_metadata_map.get(ONNX_METADATA_KEY)
    try:
        quantization = json.loads(text).get("quantization") or {} if text else {}
    except (ValueError, AttributeError):
        return False
    return bool(quantization.get("reduce_range"))


def _load(path: str | os.PathLike, options: ort.SessionOptions) -> ort.InferenceSession:
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph/NoSuchFile kinds
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise FlowerEdgeError(f"{path}: onnxruntime cannot load this model ({reason[:300]})") from None


class onnx_runner:  # lower case: the format table calls it like the other formats' runner functions
    """A function from an input batch to the model's first output, for ``.onnx`` and ``.ort`` files
    (the format table's runner; ``.int8_path`` says which int8 kernels it took)."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        self.session = open_session(path, threads)
        self.name = self.session.get_inputs()[0].name
        self.int8_path = kernel_path(self.session)

    def __call__(self, x):
        return self.session.run(None, {self.name: x})[0]
