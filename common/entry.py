"""The console scripts of the typer commands: each checks that its extra is installed before it
imports anything of it, so a runtime-only install gets one line naming the extra, not a traceback.

    flower-train = "flower_edge.common.entry:train"     # pyproject.toml [project.scripts]

flower-run is argparse and needs nothing beyond the runtime; it is its own entry point.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

_COMMANDS = {
    # script: (module with the typer app, modules it needs, the extra that installs them)
    "flower-train": ("flower_edge.train.cli", ("typer", "rich"), "train"),
    "flower-export": ("flower_edge.export.cli", ("typer", "rich"), "train"),
    "flower-bench": ("flower_edge.bench.cli", ("typer", "rich"), "train"),
    "flower-bundle": ("flower_edge.bundle.cli", ("typer",), "app"),
}


def _run(script: str) -> None:
    module, needs, extra = _COMMANDS[script]
    missing = [m for m in needs if importlib.util.find_spec(m) is None]
    if missing:
        print(
            f"{script}: error: needs {', '.join(missing)}, from the [{extra}] extra: pip install 'flower-edge[{extra}]'",
            file=sys.stderr,
        )
        sys.exit(1)
    importlib.import_module(module).app()


def train() -> None:
    _run("flower-train")


def export() -> None:
    _run("flower-export")


def bench() -> None:
    _run("flower-bench")


def bundle() -> None:
    _run("flower-bundle")
