"""What a DATA folder holds: its folders and files, with symbolic links that leave it skipped, and
class names that are one line of text each.

    walk = Walk(Path("flowers"), follow=False)
    files = list(walk.files(Path("flowers/train/1"))); len(walk.links)   # links skipped
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from flower_edge.common.errors import DataError

log = logging.getLogger(__name__)


class Walk:
    """Folders and files under a DATA root, symbolic links that leave it skipped and counted."""

    def __init__(self, root: Path, follow: bool = False) -> None:
        self.root, self.follow = root.resolve(), follow
        self.links: set[Path] = set()

    def allowed(self, path: Path) -> bool:
        if self.follow or not path.is_symlink():
            return True
        target = path.resolve()
        if target == self.root or self.root in target.parents:
            return True
        self.links.add(path)
        log.info("skipping %s: a symbolic link to %s, outside %s", path, target, self.root)
        return False

    def class_dirs(self, folder: Path) -> list[Path]:
        return [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".") and self.allowed(p)]

    def files(self, folder: Path):
        real = folder.resolve()  # a link back up the tree (to DATA itself, say) is never walked again
        seen = {self.root, *(p for p in real.parents if p == self.root or self.root in p.parents)}
        for here, dirs, names in os.walk(folder, followlinks=True):
            real = Path(here).resolve()
            if real in seen:  # a link back up the tree: walk each real folder once
                dirs[:] = []
                continue
            seen.add(real)
            dirs[:] = [d for d in dirs if not d.startswith(".") and self.allowed(Path(here, d))]
            yield from (Path(here, n) for n in names if self.allowed(Path(here, n)))


def check_names(class_ids: Sequence[str], labels: Sequence[str], labels_file: Path) -> None:
    """Class names are one line of text each, and each class has its own (the card refuses the
    rest; here the message names the folder or labels file to fix)."""
    from flower_edge.common.output import control_character, printable

    for cid, label in zip(class_ids, labels):
        for what, name in (("class folder", cid), (f"{labels_file}: the name of class {printable(cid)!r}", label)):
            if control_character(name) is not None:
                raise DataError(
                    f"{what} {printable(name)!r} holds a control character (a newline, say); "
                    "class names must be one line of text"
                )
    seen: dict[str, str] = {}
    for cid, label in zip(class_ids, labels):
        if label in seen:
            raise DataError(
                f"{labels_file}: classes {printable(seen[label])!r} and {printable(cid)!r} are both named "
                f"{printable(label)!r}; each class needs its own name"
            )
        seen[label] = cid
