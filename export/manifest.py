"""export.json: the record of one export, and the list of the files that belong together.

    record = read_manifest("runs/")            # None when the folder holds no export
    files = exported_files("runs/")            # {"onnx-int8": Path("runs/model.int8.onnx"), ...}, each checked

flower-export writes it last, beside the files it lists (name, size and SHA-256 of each); an export
into the same folder replaces exactly the files the record lists, and flower-bundle and flower-bench
take the files from the record, not from whatever is in the folder. A file that changed since (a
second export's model beside the first one's card) is refused, never shipped.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from flower_edge.common.errors import ExportError
from flower_edge.common.output import read_json_marker

MANIFEST = "export.json"
CARD, LABELS = "card.json", "labels.json"


def known_names() -> set[str]:
    """Every file name an export can write: a record naming anything else is not trusted with it."""
    from .formats import FORMATS
    from .golden import GOLDEN
    from .ort import ORT_CONFIG

    return {f.file for f in FORMATS.values()} | {CARD, LABELS, GOLDEN, ORT_CONFIG}


def read_manifest(folder: str | os.PathLike) -> dict | None:
    """The record of the export in ``folder``, or None when there is none (or it is not ours)."""
    record = read_json_marker(Path(folder) / MANIFEST, "formats", "files")
    if record is None or not isinstance(record["files"], dict) or not isinstance(record["formats"], list):
        return None
    return record


def is_export_folder(folder: Path) -> bool:
    return read_manifest(folder) is not None


def listed_files(record: dict | None) -> list[str]:
    """The files a record lists that an export could have written (plain names in the table)."""
    if record is None:
        return []
    names = known_names()
    return [name for name in record["files"] if isinstance(name, str) and name in names]


def exported_files(folder: str | os.PathLike) -> dict[str, Path]:
    """The format files of the export in ``folder``, by format key, each checked against the record
    (present, same size and SHA-256): what belongs together, and nothing else that lies there."""
    from .formats import FORMATS

    folder = Path(folder)
    record = read_manifest(folder)
    if record is None:
        raise ExportError(f"{folder}: not a flower-export folder (no {MANIFEST}); write one with flower-export")
    hashes = record.get("sha256") or {}
    files = {}
    for key in record["formats"]:
        if key not in FORMATS:
            continue
        name = FORMATS[key].file
        path = folder / name
        if not path.is_file():
            raise ExportError(f"{path}: listed in {folder / MANIFEST} but missing; export again")
        if name in hashes and sha256(path) != hashes[name]:
            raise ExportError(
                f"{path}: changed since the export that {MANIFEST} records (another export or an "
                "edit wrote it); export again"
            )
        files[key] = path
    return files


def sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
