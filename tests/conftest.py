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

    values = dict(data=str(data), output=str(output), image_size=64, epochs=1, batch_size=16,
                  finetune_blocks=2, cache_views=1, workers=0)
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

    config = ExportConfig(checkpoint=str(tiny_checkpoint), output=str(tmp_path_factory.mktemp("export")),
                          format="all", quantize=True, calib_data=str(synthetic_dir), calib_size=20,
                          embed_preprocessing=True, min_agreement=0.0)
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
