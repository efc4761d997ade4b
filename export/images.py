"""Which photos calibrate the int8 model and which verify the exports: never the same ones.

    sets = choose_images(config, train_config.data, train_config.valid_fraction)
    sets.calibration, sets.verification          # tuples of paths

The checkpoint's own DATA is split exactly as training split it (``train/photos.py: photo_splits``):
calibration from its ``train`` photos, verification on ``valid``, which the model never trained on.
A ``--calib-data`` folder in the classic layout is read the same way; any other ``--calib-data``
folder (loose photos or class folders, not this model's DATA) is split by a hash of each file's
path, and a third of it verifies.
Each list is in hash order, a stable pseudo-random mix of the classes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from flower_edge.common.errors import DataError, ExportError, ImageError
from flower_edge.runtime.image import load_image
from flower_edge.train.photos import find_images, photo_splits

from .config import MAX_PHOTOS, ExportConfig


@dataclass(frozen=True)
class ImageSets:
    calibration: tuple[Path, ...]
    verification: tuple[Path, ...]
    calibration_source: str
    verification_source: str
    tuning: tuple[Path, ...] = ()
    """Photos for int8 tuning: the calibration pool's first ones, never a verification photo."""


def choose_images(
    config: ExportConfig,
    train_data: str,
    valid_fraction: float = 0.15,
    follow_symlinks: bool = False,
    int8: bool | None = None,
) -> ImageSets:
    """Calibration, tuning and verification photos for an export of a model trained on ``train_data``
    (split as that training split it: ``follow_symlinks`` as it was trained with); ``int8``: whether
    an int8 format is written (None: ``config.quantize``)."""
    int8 = config.quantize if int8 is None else int8
    if config.calib_data:
        root = Path(config.calib_data)
        if not root.is_dir():
            raise ExportError(f"--calib-data {root}: no such folder")
        splits = photo_splits(str(root), unlabelled=True)
        source, held_source = splits.where["train"], splits.where["valid"]
    else:
        try:
            splits = photo_splits(train_data, valid_fraction=valid_fraction, follow_symlinks=follow_symlinks)
        except DataError as e:
            raise ExportError(
                f"the checkpoint's training data ({train_data}) is not on this machine ({e}); "
                "pass --calib-data DIR, a folder of photos like the ones the model will see"
            ) from None
        source, held_source = f"{train_data} (its training photos)", f"{train_data} (its validation photos)"
    pool, held_out = splits.paths["train"], splits.paths["valid"]  # photo_splits always holds both
    if not pool and (int8 or not config.verify_data):
        raise ExportError(f"{source}: no images to calibrate on or verify with (.jpg, .png, ...)")

    if config.verify_data:
        vroot = Path(config.verify_data)
        if not vroot.is_dir():
            raise ExportError(f"--verify-data {vroot}: no such folder")
        held_out, held_source = find_images(vroot), str(vroot)
    calibration = tuple(pool[: config.calib_size])
    # Photos a search may tune on are kept out of verification even when it does not tune.
    tuning = tuple(pool[: config.tune_size]) if int8 and config.tune is not False else ()
    used = {p.resolve() for p in calibration + tuning} if int8 else set()
    held_out = [p for p in held_out if p.resolve() not in used]
    if config.verify and not held_out:
        raise ExportError(f"no photos left to verify with in {held_source}; pass --verify-data DIR (or --no-verify)")
    verification = tuple(held_out[: config.verify_size or MAX_PHOTOS])
    return ImageSets(calibration, verification, source, held_source, tuning)


def read_photos(
    paths: Iterable[Path],
    convert: Callable[[Image.Image], np.ndarray],
    keep_paths: bool = False,
    progress: Callable[[str], None] | None = None,
    what: str = "reading photos",
):
    """``convert`` applied to each readable photo (a list, or with ``keep_paths`` a dict by path),
    and one line for each broken one; with ``progress``, lines as the reading goes."""
    from flower_edge.common.progress import ProgressLines

    paths = list(paths)
    lines = ProgressLines(what, len(paths), progress) if progress else None
    arrays: dict[Path, np.ndarray] = {}
    broken = []
    for path in paths:
        try:
            arrays[path] = convert(load_image(path))
        except ImageError as e:
            broken.append(str(e))
        if lines:
            lines.advance()
    if lines:
        lines.close()
    return (arrays if keep_paths else list(arrays.values())), broken
