"""The .tflite files through MediaPipe Tasks' ImageClassifier: the client an Android, iOS or web app
calls, run here on whole photos as an app hands them over.

    scores = classify("model.tflite", card, photos)      # photos: decoded RGB images (H, W, 3) uint8
    scores.argmax(1)                                     # MediaPipe's top-1 of each photo
    region(card, width, height)                          # the card's crop as MediaPipe's region of interest

MediaPipe decodes nothing here (the photos are decoded as flower-run decodes them), but does all
the rest itself: crop, resize, normalize by the file's metadata, infer, rank the scores, name them
from the file's labels. It resizes its region of interest to the model's input, the whole image
unless told otherwise, so an app passes :func:`region`: the square the card's resize and centre crop
keep (mobile_demo/README.md). Needs the [mediapipe] extra.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np

from flower_edge.common.errors import ExportError
from flower_edge.runtime.card import ModelCard


def available() -> bool:
    """Whether mediapipe is installed (the [mediapipe] extra): the metadata writer needs its schema."""
    import importlib.util

    return importlib.util.find_spec("mediapipe") is not None


def region(card: ModelCard, width: int, height: int) -> tuple[float, float, float, float]:
    """(left, top, right, bottom), each a fraction of the image's width or height: the square the
    card's preprocessing keeps, in the geometry of runtime/image.py (the shorter side resized to
    ``resize_size``, the longer one truncated to whole pixels, the centre ``crop_size`` square at
    whole pixels, halves rounded to even). On a photo already resized that way, MediaPipe then
    takes exactly the card's pixels."""
    short, long = sorted((width, height))
    new_long = int(card.resize_size * long / short)
    new_w, new_h = (card.resize_size, new_long) if width <= height else (new_long, card.resize_size)
    crop = min(card.crop_size, new_w, new_h)
    left, top = round((new_w - crop) / 2.0), round((new_h - crop) / 2.0)
    return (left / new_w, top / new_h, (left + crop) / new_w, (top + crop) / new_h)


def classifier(path: str | os.PathLike, threads: int | None = None):
    """MediaPipe's ImageClassifier on the file, as an app creates it, giving every class's score."""
    from mediapipe.tasks.python import BaseOptions, vision

    from flower_edge.common.processes import native_stderr_silenced

    options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=str(path)), max_results=-1)
    with native_stderr_silenced():  # MediaPipe's C++ start-up notices
        return vision.ImageClassifier.create_from_options(options)


def classify(path: str | os.PathLike, card: ModelCard, photos: Iterable[np.ndarray], crop: bool = True) -> np.ndarray:
    """MediaPipe's score of every class (N, classes) for each photo (H, W, 3 uint8 RGB), with the
    card's crop as the region of interest, or the whole photo when ``crop`` is False. Raises
    ExportError when MediaPipe names a class otherwise than the card."""
    import mediapipe as mp
    from mediapipe.tasks.python.components.containers.rect import RectF
    from mediapipe.tasks.python.vision.core.image_processing_options import ImageProcessingOptions

    rows = []
    with classifier(path) as task:
        for photo in photos:
            image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(photo, dtype=np.uint8))
            options = None
            if crop:
                left, top, right, bottom = region(card, image.width, image.height)
                options = ImageProcessingOptions(
                    region_of_interest=RectF(left=left, top=top, right=right, bottom=bottom)
                )
            scores = np.zeros(len(card.labels), np.float32)
            for category in task.classify(image, options).classifications[0].categories:
                if category.category_name != card.labels[category.index]:
                    raise ExportError(
                        f"{path}: MediaPipe names class {category.index} {category.category_name!r}, "
                        f"the card {card.labels[category.index]!r}"
                    )
                scores[category.index] = category.score
            rows.append(scores)
    return np.stack(rows) if rows else np.zeros((0, len(card.labels)), np.float32)
