"""Data sources: where the photos come from, and how training and evaluation read them.

    open_data("flowers/")      # DIR/train/<id>/*.jpg, DIR/valid/<id>/, optional test/, cat_to_name.json
    open_data("my_photos/")    # DIR/<class>/*.jpg; a validation split is taken off deterministically
    open_data("synthetic")     # procedural flowers, generated once into the cache (offline default)
    open_data("flowers102")    # torchvision's Oxford Flowers102 download (needs a network)

Every image is decoded once when the source is opened; a broken one is reported and skipped, so
one bad file never stops a long training run.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from flower_edge.common.errors import DataError, ImageError
from flower_edge.runtime.image import load_image

from .folders import Walk, check_names
from .photos import SPLITS, Sample, scan

__all__ = ["SPLITS", "DataSource", "Sample", "data_folder", "default_cache_dir", "open_data"]

log = logging.getLogger(__name__)

LABELS_FILE = "cat_to_name.json"


@dataclass(frozen=True)
class DataSource:
    """Labelled image paths per split, and what the classes are called."""

    description: str
    root: Path
    class_ids: tuple[str, ...]
    labels: tuple[str, ...]
    splits: dict[str, list[Sample]]
    skipped: list[str] = field(default_factory=list)
    """One line per image that could not be read: path and reason."""
    skipped_links: int = 0
    """Symbolic links under the folder that point outside it, not followed (``follow_symlinks``)."""

    @property
    def num_classes(self) -> int:
        return len(self.class_ids)


def default_cache_dir() -> Path:
    return Path(os.environ.get("FLOWER_EDGE_CACHE", Path.home() / ".cache" / "flower-edge"))


def open_data(
    spec: str,
    *,
    valid_fraction: float = 0.15,
    labels_file: Path | None = None,
    cache_dir: Path | None = None,
    check_images: bool = True,
    task=None,
    follow_symlinks: bool = False,
) -> DataSource:
    """Resolve the DATA argument of flower-train into a DataSource.

    ``task(description, total)``, when given, makes a progress task (``advance(n)``, ``close()``) for
    the check that decodes every image once. Symbolic links under a folder that point outside it
    (a class folder linked to /usr/share, say) are skipped and counted unless ``follow_symlinks``."""
    if spec == "flowers102":
        return _open_flowers102((cache_dir or default_cache_dir()) / "flowers102", labels_file)
    root = data_folder(spec, cache_dir)
    description = "synthetic" if spec == "synthetic" else str(root)
    return _open_folder(root, description, valid_fraction, labels_file, check_images, task, follow_symlinks)


def data_folder(spec: str, cache_dir: Path | None = None) -> Path:
    """The folder a DATA setting names ('synthetic': procedural flowers, generated once into the cache)."""
    if spec == "synthetic":
        from .synthetic import ensure_synthetic

        return ensure_synthetic((cache_dir or default_cache_dir()) / "synthetic")
    root = Path(spec)
    if not root.exists():
        raise DataError(f"{spec}: no such directory (expected a folder of photos, 'synthetic' or 'flowers102')")
    if not root.is_dir():
        raise DataError(f"{spec}: is a file; DATA must be a folder of photos, 'synthetic' or 'flowers102'")
    return root


def _open_folder(
    root: Path,
    description: str,
    valid_fraction: float,
    labels_file: Path | None,
    check_images: bool,
    task=None,
    follow_symlinks: bool = False,
) -> DataSource:
    walk = Walk(root, follow_symlinks)
    scanned = scan(root, walk, valid_fraction)
    if "train" not in scanned.splits:
        raise DataError(f"{root / 'train'}: no such folder (the classic layout: train/<class-id>/*.jpg beside valid/)")
    class_ids, splits = scanned.class_ids, scanned.splits
    labels = _read_labels(labels_file or root / LABELS_FILE, class_ids, required=labels_file is not None)
    check_names(class_ids, labels, labels_file or root / LABELS_FILE)
    skipped: list[str] = []
    if check_images:
        progress = task("checking images", sum(map(len, splits.values()))) if task else None
        splits = {name: _drop_broken(samples, skipped, progress) for name, samples in splits.items()}
        if progress:
            progress.close()
    for name, samples in splits.items():
        if not samples and name != "test":
            raise DataError(f"{root}: the {name} split has no readable images")
    return DataSource(description, root, class_ids, labels, splits, skipped, len(walk.links))


def _check(sample: Sample) -> str | None:
    try:
        load_image(sample.path)
    except ImageError as e:
        return str(e)
    return None


def _drop_broken(samples: list[Sample], skipped: list[str], progress=None) -> list[Sample]:
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
        problems = []
        for problem in pool.map(_check, samples, chunksize=64):
            problems.append(problem)
            if progress:
                progress.advance(1)
    kept = []
    for sample, problem in zip(samples, problems):
        if problem is None:
            kept.append(sample)
        else:
            log.warning("skipping broken image %s", problem)
            skipped.append(problem)
    return kept


def _read_labels(path: Path, class_ids: Sequence[str], required: bool) -> tuple[str, ...]:
    if not path.is_file():
        if required:
            raise DataError(f"{path}: no such labels file")
        return tuple(class_ids)
    from flower_edge.runtime.card import MAX_CARD_BYTES

    try:
        if path.stat().st_size > MAX_CARD_BYTES:
            raise DataError(f"{path}: over the limit of {MAX_CARD_BYTES:,} bytes for a labels file")
        names = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        raise DataError(f"{path}: not a readable JSON labels file ({str(e)[:200]})") from None
    if not isinstance(names, dict) or not all(isinstance(v, str) for v in names.values()):
        raise DataError(f'{path}: expected an object of class id -> name, like {{"1": "daisy"}}')
    missing = [c for c in class_ids if c not in names]
    if missing:
        log.warning("%s names no class %s; using the id as its label", path, ", ".join(missing[:5]))
    return tuple(names.get(c, c) for c in class_ids)


def _open_flowers102(root: Path, labels_file: Path | None) -> DataSource:
    from torchvision.datasets import Flowers102

    splits: dict[str, list[Sample]] = {}
    for ours, theirs in (("train", "train"), ("valid", "val"), ("test", "test")):
        try:
            ds = Flowers102(str(root), split=theirs, download=True)
        except Exception as e:  # URLError, socket errors, HTTP errors, a bad archive
            raise DataError(
                f"flowers102: could not download Oxford Flowers102 into {root} "
                f"({type(e).__name__}; no network?). Offline, pass a folder in the classic layout "
                "or 'synthetic'"
            ) from None
        # The dataset keeps file paths and labels (0-based) in these attributes.
        splits[ours] = [Sample(Path(p), int(y)) for p, y in zip(ds._image_files, ds._labels)]
    class_ids = tuple(str(i) for i in range(1, 103))
    names = tuple(getattr(ds, "classes", None) or class_ids)
    labels = _read_labels(labels_file, class_ids, True) if labels_file else names
    return DataSource("flowers102", root, class_ids, labels, splits)
