"""flower_edge.runtime: the model card, image preprocessing and onnxruntime prediction.

    from flower_edge.runtime import Classifier
    Classifier("model.int8.onnx").predict("rose.jpg", k=5)

Depends on numpy, Pillow and onnxruntime only; it never imports torch, so a deployed model runs
without it. onnxruntime itself is imported on first use of Classifier.
"""

from flower_edge.common.errors import CardError, ConfigError, FlowerEdgeError, ImageError

from .card import SCHEMA_VERSION, ModelCard
from .image import load_image, preprocess

__all__ = [
    "SCHEMA_VERSION",
    "CardError",
    "Classifier",
    "ConfigError",
    "FlowerEdgeError",
    "ImageError",
    "ModelCard",
    "Result",
    "TopK",
    "load_image",
    "preprocess",
]


def __getattr__(name: str):
    if name in ("Classifier", "Result", "TopK"):
        from . import predict

        return getattr(predict, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
