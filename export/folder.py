"""The output folder of an export: what it may write there, and the commit that puts the files in.

    earlier = claim(output, names, config, reads)          # refuses a folder of the user's, an input
    removed = commit(staging, output, names, listed_files(earlier))

Every file is written into a hidden staging folder inside the output folder (``STAGING``), checked,
then renamed into place, the earlier export's files set aside first and put back on a failure: a
failed or killed export leaves the folder as it was.
"""

from __future__ import annotations

import os
from pathlib import Path

from flower_edge.common.errors import ExportError, OutputError
from flower_edge.common.output import check_output_file, check_output_folder

from .config import ExportConfig
from .manifest import MANIFEST as REPORT
from .manifest import is_export_folder, listed_files, read_manifest

STAGING = ".flower-export-"
"""The hidden staging folder's prefix, followed by the exporting process's id."""


def claim(output: Path, names: list[str], config: ExportConfig, reads) -> dict | None:
    """Check that an export may write ``names`` into ``output`` (creating it); returns the earlier
    export's record there, if any. The default folder is the checkpoint's own, where flower-train
    wrote: files go in beside it, and no file there that an earlier export did not write is ever
    replaced (:func:`check_targets`)."""
    check_output_folder(
        output,
        "--output",
        reads,
        marker=is_export_folder,
        tool="flower-export",
        force=config.force or config.output is None,
        leftovers=(STAGING, f".{REPORT}."),
    )
    _check_writable(output)
    earlier = read_manifest(output)
    check_targets(output, names, earlier, config.force, reads)
    return earlier


def reads(config: ExportConfig, train_data: str) -> list[tuple[str, str]]:
    """What an export reads, which no path it writes may be or hold: the checkpoint and the photos."""
    reads = [("the checkpoint", config.checkpoint)]
    if config.calib_data:
        reads.append(("--calib-data", config.calib_data))
    if config.verify_data:
        reads.append(("--verify-data", config.verify_data))
    if not config.calib_data and train_data not in ("synthetic", "flowers102") and Path(train_data).is_dir():
        reads.append(("the training data", train_data))
    return reads


def check_targets(output: Path, names: list[str], earlier: dict | None, force: bool, reads) -> None:
    """Every file an export puts into ``output``: never an input, and never a file there that the
    earlier export's record does not list (a user's own file, the checkpoint) unless --force."""
    ours = set(listed_files(earlier)) | ({REPORT} if earlier is not None else set())
    for name in names:
        target = check_output_file(output / name, "--output", reads)
        if not force and (target.exists() or target.is_symlink()) and name not in ours:
            raise OutputError(
                f"--output {output}: {name} is there and no earlier export wrote it (it is not in "
                f"{REPORT}); move it, choose another folder, or pass --force to replace it"
            )


def commit(staging: Path, output: Path, names: list[str], earlier: list[str]) -> list[str]:
    """Move the verified files from ``staging`` into ``output``, the record last, in place of the
    earlier export's files: those this export does not write are removed, so the folder holds one
    export. Renames only (no space needed); a failure puts every earlier file back. Returns the
    names of the earlier files removed."""
    aside = staging / ".earlier"
    aside.mkdir()
    removed = [n for n in earlier if n not in names and (output / n).is_file()]
    moved_aside, moved_in = [], []
    try:
        for name in [*names, *removed]:
            if (output / name).exists() or (output / name).is_symlink():
                os.replace(output / name, aside / name)
                moved_aside.append(name)
        for name in names:
            os.replace(staging / name, output / name)
            moved_in.append(name)
    except BaseException:
        for name in moved_in:
            os.replace(output / name, staging / name)
        for name in moved_aside:
            os.replace(aside / name, output / name)
        raise
    return removed


def _check_writable(output: Path) -> None:
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ExportError(f"{output}: cannot create the output folder ({e.strerror})") from None
    if not output.is_dir():
        raise ExportError(f"{output}: is not a folder")
    if not os.access(output, os.W_OK | os.X_OK):
        raise ExportError(f"{output}: the output folder is not writable")
