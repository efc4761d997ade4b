"""flower_edge.train: data sources, backbones, the head, the training loop and checkpoint I/O."""

from .checkpoint import load_checkpoint, load_model, save_checkpoint
from .config import TrainConfig
from .loop import TrainResult, train
from .model import FlowerNet, build_model

__all__ = ["TrainConfig", "TrainResult", "train", "FlowerNet", "build_model",
           "load_checkpoint", "load_model", "save_checkpoint"]
