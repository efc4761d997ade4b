"""flower_edge.export: a checkpoint to every deployable format (formats.py's table), each verified.

Needs the ``[train]`` extra (torch, onnx); LiteRT files need ``[litert]``, ExecuTorch ``[executorch]``. Names are imported on first use, so that
``flower-export --help`` works without torch.
"""

from importlib import import_module

_EXPORTS = {
    "ExportConfig": "config",
    "ExportResult": "pipeline",
    "export": "pipeline",
    "export_onnx": "onnx_export",
    "export_torchscript": "torchscript",
    "load_torchscript": "torchscript",
    "quantize_int8": "quantize",
    "CardCalibrationReader": "calibration",
    "FORMATS": "formats",
    "Parity": "verify",
    "parity_table": "verify",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
