"""Calibration for onnxruntime's quantizer: the photos fed to it, its methods, its noise kept quiet.

    with quantizer_quiet():
        quantize_static(fp32, int8, CardCalibrationReader(photos), calibrate_method=METHODS["minmax"])

The photos are the export's calibration pool (export/images.py), preprocessed exactly as the card
says; the same reader feeds onnxruntime's debugging tools in export/explain.py.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator, Sequence

import numpy as np
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod

from flower_edge.common.progress import ProgressLines

from .onnx_export import INPUT_NAME

METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}


class CardCalibrationReader(CalibrationDataReader):
    """Feeds photos to the calibrator one at a time, preprocessed exactly as the card says."""

    def __init__(
        self, inputs: Sequence[np.ndarray], input_name: str = INPUT_NAME, lines: ProgressLines | None = None
    ) -> None:
        self.inputs, self.input_name, self.lines = inputs, input_name, lines
        self._next = iter(self.inputs)

    def get_next(self) -> dict[str, np.ndarray] | None:
        x = next(self._next, None)
        if self.lines is not None:
            if x is None:
                self.lines.close()
                self.lines = None  # one pass is reported; the calibrator may read again
            else:
                self.lines.advance()
        return None if x is None else {self.input_name: x[None]}  # (1, ...) batch of one

    def rewind(self) -> None:
        self._next = iter(self.inputs)


@contextlib.contextmanager
def quantizer_quiet() -> Iterator[None]:
    """onnxruntime's quantization tools log advice to the root logger and print histogram progress."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)
