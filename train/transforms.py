"""The transforms from a photo to a model input: evaluation exactly as the card says, and the
augmentation of training (torchvision's references keep theirs in presets.py).

    x = eval_transform(card)(photo)            # (3, H, W) float32, the runtime's own numbers
    x = training_augmentation(card, config.augmentation())(photo)
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image

from flower_edge.runtime.card import ModelCard
from flower_edge.runtime.image import normalize, preprocess

from .config import Augmentation


def eval_transform(card: ModelCard) -> Callable[[Image.Image], torch.Tensor]:
    """Exactly the card's preprocessing: the runtime's numpy definition, as a tensor."""
    return functools.partial(_preprocessed, card=card)  # a partial, not a lambda: loader workers pickle it


def _preprocessed(img: Image.Image, card: ModelCard) -> torch.Tensor:
    return torch.from_numpy(preprocess(img, card))


def _augmented(img: Image.Image, augment: Callable, card: ModelCard) -> torch.Tensor:
    return torch.from_numpy(normalize(np.asarray(augment(img)), card))


def train_transform(
    card: ModelCard, scale: tuple[float, float] = (0.35, 1.0), rotation: float = 0.0, color_jitter: float = 0.0
) -> Callable:
    """Augmentation for training: random resized crop, flip, optional rotation and colour jitter."""
    from torchvision.transforms import InterpolationMode, v2

    interpolation = InterpolationMode(card.interpolation)
    steps = [v2.RandomRotation(rotation, interpolation=interpolation)] if rotation else []
    steps += [
        v2.RandomResizedCrop(card.crop_size, scale=scale, interpolation=interpolation, antialias=True),
        v2.RandomHorizontalFlip(),
    ]
    if color_jitter:
        steps.append(v2.ColorJitter(color_jitter, color_jitter, color_jitter))
    # The PIL image is augmented, then normalized by the card's own definition, as at evaluation.
    return functools.partial(_augmented, augment=v2.Compose(steps), card=card)


def training_augmentation(card: ModelCard, augmentation: Augmentation) -> Callable:
    """``train_transform`` with the run's --aug-scale, --rotation and --color-jitter (``TrainConfig.augmentation()``)."""
    return train_transform(card, augmentation.scale, augmentation.rotation, augmentation.color_jitter)
