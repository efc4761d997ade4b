"""Shared fixtures: a small synthetic data set and one tiny trained checkpoint, made once.

Run in parallel (``pytest -n 2``, pytest-xdist), the session's three shared things (the synthetic
photos, the tiny checkpoint and its every-format export) are still made once: the first worker to
need one makes it under a file lock, the others read what it made (``_once``)."""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SHARED_FLOWERS = SHARED_DATA / "flowers5"


def pytest_configure(config):
    """The suite checks what the int8 search chooses and records, not how fast (benchmarks/ does):
    each candidate's latency is measured for 0.1 s instead of a second (at least 5 runs either way)."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:  # the [dev] install: tests/runtime only
        return
    from flower_edge.export import search

    search.LATENCY_SECONDS = 0.1
    _export_each_model_once(config)


def _export_each_model_once(config) -> None:
    """The dynamo ONNX exporter takes about 7 s a call here, and the suite exports the same tiny
    model some twenty times: each distinct (weights, card, opset, preprocessing) goes through
    ``export_onnx`` once per worker, and later calls get its graph with their own card (the export
    date differs). Every graph is the exporter's own; a test that patches ``export_onnx``
    (test_errors.py) wraps this one."""
    import hashlib
    import shutil
    import tempfile
    from dataclasses import replace

    import onnx

    from flower_edge.common.files import atomic_write
    from flower_edge.export import onnx_export

    real = onnx_export.export_onnx
    folder = Path(tempfile.mkdtemp(prefix="flower-edge-onnx-"))
    config.add_cleanup(lambda: shutil.rmtree(folder, ignore_errors=True))

    def export_onnx(model, card, path, opset, embed_preprocessing=False):
        undated = replace(card, provenance={**card.provenance, "export_date": None})
        key = hashlib.sha256(f"{undated.to_json()}|{opset}|{embed_preprocessing}".encode())
        for name, tensor in sorted(model.state_dict().items()):
            key.update(name.encode())
            key.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        kept = folder / f"{key.hexdigest()}.onnx"
        if not kept.is_file():
            written = real(model, card, path, opset, embed_preprocessing)
            shutil.copyfile(path, kept)
            return written
        written = onnx_export.embedded_card(card) if embed_preprocessing else card
        proto = onnx.load(str(kept))
        onnx_export.set_card(proto, written)
        atomic_write(path, lambda f: f.write(proto.SerializeToString()))
        return written

    onnx_export.export_onnx = export_onnx


def _once(tmp_path_factory, name: str, make: Callable[[Path], object]):
    """``make(folder)`` once for the whole run, whichever worker asks first; the value is pickled
    beside the folder, so every worker gets the same paths and figures."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return make(tmp_path_factory.mktemp(name))
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp().parent  # shared by the workers of this run
    made = root / f"{name}.pickle"
    with FileLock(str(root / f"{name}.lock")):
        if made.is_file():
            return pickle.loads(made.read_bytes())
        folder = root / name
        folder.mkdir()
        value = make(folder)
        made.write_bytes(pickle.dumps(value))
        return value


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory) -> Path:
    from flower_edge.train.synthetic import generate

    return _once(
        tmp_path_factory, "synthetic", lambda folder: generate(folder, {"train": 10, "valid": 4, "test": 3}, size=64)
    )


@pytest.fixture(scope="session")
def tiny_checkpoint(synthetic_dir, tmp_path_factory) -> Path:
    """Lite0 at 64 px, last 2 blocks fine-tuned for one epoch on the synthetic set."""

    def make(folder: Path) -> Path:
        from flower_edge.train import train

        train(tiny_config(synthetic_dir, folder / "tiny.pth"))
        return folder / "tiny.pth"

    return _once(tmp_path_factory, "ckpt", make)


def tiny_config(data: Path, output: Path, **overrides):
    """A training config small enough for a test: 64 px, one epoch, the last 2 blocks."""
    from flower_edge.train import TrainConfig

    values = dict(
        data=str(data),
        output=str(output),
        image_size=64,
        epochs=1,
        batch_size=16,
        finetune_blocks=2,
        cache_views=1,
        workers=0,
    )
    values.update(overrides)
    return TrainConfig(**values)


@pytest.fixture(scope="session")
def make_config():
    return tiny_config


@pytest.fixture(scope="session")
def flowers5() -> Path:
    if not (SHARED_FLOWERS / "valid").is_dir():
        pytest.skip(f"the shared flower photos are not at {SHARED_FLOWERS}")
    return SHARED_FLOWERS


@pytest.fixture(scope="session")
def flowers102() -> Path:
    """Oxford Flowers102 in the seed projects' layout (train/, valid/, cat_to_name.json)."""
    root = SHARED_DATA / "flowers102"
    if not (root / "valid").is_dir():
        pytest.skip(f"the shared Flowers102 photos are not at {root}")
    return root


@pytest.fixture(scope="session")
def tiny_export(tiny_checkpoint, synthetic_dir, tmp_path_factory):
    """The tiny checkpoint exported once in every format, int8 included, verified."""

    def make(folder: Path):
        from flower_edge.export import ExportConfig, export

        config = ExportConfig(
            checkpoint=str(tiny_checkpoint),
            output=str(folder),
            format="all",
            quantize=True,
            calib_data=str(synthetic_dir),
            calib_size=20,
            embed_preprocessing=True,
            min_agreement=0.0,
        )
        return export(config)

    return _once(tmp_path_factory, "export", make)


def assert_one_error_line(result, prog: str, *fragments: str) -> None:
    """A CliRunner result that failed with exactly one 'PROG: error: ...' line on stderr."""
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{prog}: error: ")
    for fragment in fragments:
        assert fragment in lines[0]
    assert "Traceback" not in result.output


def write_record(folder: Path, *keys: str) -> None:
    """An export.json for model files put into ``folder`` by hand, as flower-export writes it."""
    import json

    from flower_edge.export.formats import FORMATS
    from flower_edge.export.manifest import sha256

    names = [FORMATS[k].file for k in keys]
    (folder / "export.json").write_text(
        json.dumps(
            {
                "formats": list(keys),
                "files": {n: (folder / n).stat().st_size for n in names},
                "sha256": {n: sha256(folder / n) for n in names},
            }
        )
    )


def digest(*roots: Path) -> dict[str, str]:
    """Every byte under ``roots`` (files and folders), as {path: SHA-256}; a folder's entry lists it."""
    import hashlib

    out = {}
    for root in roots:
        paths = [root] if root.is_file() else sorted(root.rglob("*"))
        if root.is_dir():
            out[str(root)] = "folder: " + ",".join(sorted(p.name for p in root.iterdir()))
        for p in paths:
            if p.is_file():
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
            elif p.is_dir():
                out[str(p)] = "folder: " + ",".join(sorted(c.name for c in p.iterdir()))
    return out


@pytest.fixture()
def full_disk(tmp_path):
    """A real 1 MB file system, where the machine lets root mount one (CI runs as root)."""
    import subprocess

    mount = tmp_path / "full"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.decode().strip()[:80]})")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def pytest_collection_modifyitems(config, items):
    """Every test of the every-format export (about two minutes here, once) is ``slow`` too, so
    ``-m 'not slow'`` is the quick loop. And the order files are handed out in a parallel run
    (``-n 2``; pyproject.toml asks for ``--dist loadfile --no-loadscope-reorder``): the first file of
    the export, then files of slow tests that do not need it (the other worker runs them while the
    export is made), then the export's slow files, then the quick ones, so neither worker is left
    alone at the end with a long file."""
    needs = {item.path for item in items if "tiny_export" in getattr(item, "fixturenames", ())}
    heavy = {item.path for item in items if item.get_closest_marker("slow")}
    for item in items:
        if item.path in needs:
            item.add_marker(pytest.mark.slow)
    first = next((item.path for item in items if item.path in needs), None)

    def rank(item) -> int:
        if item.path == first:
            return 0
        return (1 if item.path in heavy else 3) + (item.path in needs)

    items.sort(key=rank)
