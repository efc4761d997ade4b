"""The photos flower-bench measures on: the split of DATA as flower-train made it, read once.

paths, labels, raw, normalized = read_split(config, card, trained_config, progress)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from flower_edge.common.errors import DataError


def read_split(config, card, trained, progress: Callable[[str], None]):
    """The photos of ``config.split`` and their labels, their pixels as the card crops them (N, H, W, 3)
    and normalized (N, 3, H, W); a broken photo is reported and left out, the rest are measured."""
    from flower_edge.export.images import read_photos
    from flower_edge.runtime.image import normalize, pixels

    photos, labels, where = _split(
        Path(config.data), config.split, card.class_to_idx, trained.valid_fraction, trained.follow_symlinks
    )
    progress(f"{len(photos)} photos in {where}")
    readable, broken = read_photos(photos, lambda img: pixels(img, card), keep_paths=True)
    for line in broken:
        progress(f"skipped broken image {line}")
    if not readable:
        raise DataError(f"{where}: none of its photos could be read")
    labels = np.array([y for p, y in zip(photos, labels) if p in readable])
    raw = np.stack(list(readable.values()))
    return list(readable), labels, raw, np.stack([normalize(p, card) for p in raw])


def _split(
    root: Path, split: str, class_to_idx: dict[str, int], valid_fraction: float, follow_symlinks: bool
) -> tuple[list[Path], np.ndarray, str]:
    """The photos of ``split`` with their labels, and where they came from: as flower-train splits
    ``root`` (train/photos.py), so a folder of class folders is measured on the photos it held out."""
    from flower_edge.train.photos import photo_splits

    splits = photo_splits(str(root), valid_fraction=valid_fraction, follow_symlinks=follow_symlinks)
    if split not in splits.paths:
        raise DataError(f"{root}: has no {split} split (expected {root}/{split}/<class-id>/*.jpg)")
    photos = [p for p in splits.paths[split] if p.parent.name in class_to_idx]
    where = splits.where[split]
    if not photos:
        raise DataError(
            f"{where}: no photos in class folders the model knows ({', '.join(list(class_to_idx)[:5])}, ...)"
        )
    return photos, np.array([class_to_idx[p.parent.name] for p in photos]), where
