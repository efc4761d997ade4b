"""Shared fixtures: a small synthetic data set and one tiny trained checkpoint, made once."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SHARED_FLOWERS = SHARED_DATA / "flowers5"


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory) -> Path:
    from flower_edge.train.synthetic import generate

    return generate(tmp_path_factory.mktemp("synthetic"), {"train": 10, "valid": 4, "test": 3}, size=64)


@pytest.fixture(scope="session")
def tiny_checkpoint(synthetic_dir, tmp_path_factory) -> Path:
    """Lite0 at 64 px, last 2 blocks fine-tuned for one epoch on the synthetic set."""
    from flower_edge.train import train

    out = tmp_path_factory.mktemp("ckpt") / "tiny.pth"
    train(tiny_config(synthetic_dir, out))
    return out


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
    from flower_edge.export import ExportConfig, export

    config = ExportConfig(
        checkpoint=str(tiny_checkpoint),
        output=str(tmp_path_factory.mktemp("export")),
        format="all",
        quantize=True,
        calib_data=str(synthetic_dir),
        calib_size=20,
        embed_preprocessing=True,
        min_agreement=0.0,
    )
    return export(config)


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
