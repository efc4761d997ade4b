"""flower_edge.runtime: the model card, image preprocessing and (soon) onnxruntime prediction.

Depends on numpy and Pillow only; it never imports torch, so a deployed model runs without it.
"""

from .card import SCHEMA_VERSION, ModelCard
from .errors import (
    CardError,
    CheckpointError,
    ConfigError,
    DataError,
    ExportError,
    FlowerEdgeError,
    ImageError,
)
from .image import load_image, preprocess

__all__ = [
    "SCHEMA_VERSION",
    "ModelCard",
    "CardError",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "ExportError",
    "FlowerEdgeError",
    "ImageError",
    "load_image",
    "preprocess",
]
