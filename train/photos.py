"""DATA -> splits -> photo files: the one place that reads a photo folder's layout, for training
(train/data.py), export's calibration and verification photos (export/images.py) and flower-bench
(benchmarks/photos.py). Nothing is decoded here.

    photo_splits("flowers/")               # train/, valid/, test/ folders of class folders, each as it is
    photo_splits("my_photos/")             # class folders only: valid split off by a file-name hash
    photo_splits("any/", unlabelled=True)  # and any other folder of photos: 1/3 valid by a path hash
    find_images(folder)                    # every photo under a folder, in hash order

Training and export split a folder the same way (export never verifies on a photo the model
trained on), and flower-bench measures the split training held out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from flower_edge.common.errors import DataError
from flower_edge.runtime.image import is_image_file

from .folders import Walk

SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int


@dataclass(frozen=True)
class Scanned:
    """A folder's classes (in label order) and its labelled photos by split."""

    class_ids: tuple[str, ...]
    splits: dict[str, list[Sample]]


@dataclass(frozen=True)
class PhotoSplits:
    """The photo files of each split, in hash order (a stable mix of the classes), and where each
    split came from, in words."""

    paths: dict[str, list[Path]]
    where: dict[str, str]


def scan(root: Path, walk: Walk, valid_fraction: float) -> Scanned:
    """The layout of ``root``: split folders (train/, valid/, test/, each of class folders; without
    valid/, it is split off train/ by file-name hash) or class folders only (split the same way).
    The classes are train/'s (or, without it, the first split folder's)."""
    folders = [name for name in SPLITS if (root / name).is_dir()]
    if not folders:
        class_ids = _class_dirs(root, walk)
        train, valid = _split_off(_scan_split(root, class_ids, walk), valid_fraction)
        return Scanned(_at_least_two(class_ids, root), {"train": train, "valid": valid})
    first = root / folders[0]
    class_ids = _class_dirs(first, walk)
    splits = {}
    for name in folders:
        extra = sorted(set(_class_dirs(root / name, walk)) - set(class_ids))
        if extra:
            raise DataError(f"{root / name}: class {extra[0]!r} has no folder in {first}")
        splits[name] = _scan_split(root / name, class_ids, walk)
    if "train" in splits:
        _at_least_two(class_ids, first)
        if "valid" not in splits:
            splits["train"], splits["valid"] = _split_off(splits["train"], valid_fraction)
    return Scanned(class_ids, splits)


def photo_splits(
    spec: str,
    *,
    valid_fraction: float = 0.15,
    follow_symlinks: bool = False,
    cache_dir: Path | None = None,
    unlabelled: bool = False,
) -> PhotoSplits:
    """The photo files of each split of a DATA setting (a folder, 'synthetic' or 'flowers102'),
    divided exactly as flower-train divides them. With ``unlabelled``, a folder that is not in the
    classic layout may hold photos any way (loose, nested): a third of them, by a hash of each
    path, is ``valid`` and the rest ``train``."""
    from .data import data_folder, open_data

    if spec == "flowers102":
        source = open_data(spec, cache_dir=cache_dir, check_images=False)
        paths = {name: [s.path for s in samples] for name, samples in source.splits.items()}
        where = {name: f"Oxford Flowers102's {name} split" for name in paths}
    else:
        root = data_folder(spec, cache_dir)
        if unlabelled and not (root / "train").is_dir():
            everything = find_images(root)
            n_valid = len(everything) // 3
            return PhotoSplits(
                {"train": everything[n_valid:], "valid": everything[:n_valid]},
                {"train": f"{root} (2/3 by path hash)", "valid": f"{root} (the other 1/3)"},
            )
        scanned = scan(root, Walk(root, follow_symlinks), valid_fraction)
        paths = {name: [s.path for s in samples] for name, samples in scanned.splits.items()}
        where = {name: _where(root, name, valid_fraction) for name in paths}
    return PhotoSplits({name: hash_order(found) for name, found in paths.items()}, where)


def _where(root: Path, name: str, valid_fraction: float) -> str:
    if name in ("train", "valid") and not (root / "valid").is_dir():
        return f"{root} (flower-train's {name} split of it, valid {valid_fraction:.0%} by file-name hash)"
    return str(root / name)


def find_images(folder: Path) -> list[Path]:
    """Image files under ``folder``, recursively, in hash order (a stable pseudo-random order)."""
    found = [
        p
        for p in folder.rglob("*")
        if is_image_file(p) and p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    ]
    return sorted(found, key=lambda p: _hash(p.relative_to(folder)))


def hash_order(paths: list[Path]) -> list[Path]:
    """Photos of class folders in ``find_images``' order: by the hash of <class>/<file name>."""
    return sorted(paths, key=lambda p: _hash(Path(p.parent.name, p.name)))


def _hash(path: Path) -> str:
    return hashlib.sha1(str(path).encode()).hexdigest()


def _at_least_two(class_ids: tuple[str, ...], folder: Path) -> tuple[str, ...]:
    """One class trains a model that is always right and knows nothing ("100% valid")."""
    if len(class_ids) < 2:
        raise DataError(f"{folder}: one class folder ({class_ids[0]}); a classifier needs at least two")
    return class_ids


def _class_dirs(folder: Path, walk: Walk) -> tuple[str, ...]:
    names = [p.name for p in walk.class_dirs(folder)]
    if not names:
        raise DataError(f"{folder}: no class folders (expected {folder}/<class-id>/*.jpg)")
    # Numeric ids sort as numbers (1, 2, ..., 10), as people number their classes.
    key = (lambda n: (int(n), n)) if all(n.isdigit() for n in names) else (lambda n: (0, n))
    return tuple(sorted(names, key=key))


def _scan_split(folder: Path, class_ids: Sequence[str], walk: Walk) -> list[Sample]:
    samples = []
    for index, cid in enumerate(class_ids):
        class_dir = folder / cid
        if not class_dir.is_dir() or not walk.allowed(class_dir):
            continue  # a class may be absent from valid or test
        files = sorted(p for p in walk.files(class_dir) if is_image_file(p) and p.is_file())
        if not files:
            raise DataError(f"{class_dir}: class folder has no images (.jpg, .png, ...)")
        samples += [Sample(p, index) for p in files]
    return samples


def _split_off(samples: list[Sample], fraction: float) -> tuple[list[Sample], list[Sample]]:
    """Deterministic per-class split by a hash of the file name: stable when files are added."""
    if not 0 < fraction < 1:
        raise DataError(f"the validation fraction must be between 0 and 1, found {fraction}")
    train, valid = [], []
    for s in samples:
        h = int.from_bytes(hashlib.sha1(s.path.name.encode()).digest()[:4], "big") / 2**32
        (valid if h < fraction else train).append(s)
    return train, valid
