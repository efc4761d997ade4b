"""flower_edge.train: data sources, backbones, the head, the training loop and checkpoint I/O.

Needs the ``[train]`` extra (torch, torchvision). Names are imported on first use, so that
``flower-train --help`` and a clear "install the extra" message work without torch.
"""

from importlib import import_module

_EXPORTS = {
    "TrainConfig": "config",
    "TrainResult": "loop",
    "train": "loop",
    "FlowerNet": "model",
    "build_model": "model",
    "load_checkpoint": "checkpoint",
    "load_model": "checkpoint",
    "save_checkpoint": "checkpoint",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
