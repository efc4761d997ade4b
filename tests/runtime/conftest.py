"""Fixtures of the flower-run tests: tiny models built in a second (tests/tiny_models.py), a few
photos, broken files, the CLI. Nothing here trains or exports: tests/export checks real files."""

import json
from types import SimpleNamespace

import pytest
from PIL import Image

from flower_edge.runtime.cli import main
from flower_edge.train.photos import find_images
from tests.tiny_models import tiny_card, write_tiny_models


@pytest.fixture()
def run(capsys):
    """flower-run in this process: exit code, stdout and stderr."""

    def invoke(*args):
        code = main([str(a) for a in args])
        out = capsys.readouterr()
        return SimpleNamespace(exit_code=code, stdout=out.out, stderr=out.err, output=out.out + out.err)

    return invoke


@pytest.fixture(scope="session")
def tiny_models(synthetic_dir, tmp_path_factory):
    """model.onnx, model.int8.onnx, model.7bit.int8.onnx, model.ort, model.int8.ort, model.preproc.onnx."""
    names = json.loads((synthetic_dir / "cat_to_name.json").read_text())
    ids = tuple(sorted(names, key=int))
    card = tiny_card(tuple(names[i] for i in ids), ids)
    return write_tiny_models(tmp_path_factory.mktemp("tiny-models"), card)


@pytest.fixture(scope="module")
def model(tiny_models):
    return tiny_models / "model.onnx"


@pytest.fixture(scope="module")
def photos(synthetic_dir):
    return find_images(synthetic_dir / "valid")[:6]


@pytest.fixture()
def broken(tmp_path, photos):
    """One file of each kind that must fail alone: truncated, empty, not an image, too big."""
    good = photos[0].read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "notes.png").write_text("not a picture")
    Image.new("L", (9000, 8000)).save(tmp_path / "bomb.png")  # 72 MP: over the 64 MP cap
    return [tmp_path / n for n in ("truncated.jpg", "empty.jpg", "notes.png", "bomb.png")]
