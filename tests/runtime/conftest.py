"""Fixtures of the flower-run tests: the tiny exported model, a few photos, broken files, the CLI."""

from types import SimpleNamespace

import pytest
from PIL import Image

from flower_edge.export.images import find_images
from flower_edge.runtime.cli import main


@pytest.fixture()
def run(capsys):
    """flower-run in this process: exit code, stdout and stderr."""

    def invoke(*args):
        code = main([str(a) for a in args])
        out = capsys.readouterr()
        return SimpleNamespace(exit_code=code, stdout=out.out, stderr=out.err, output=out.out + out.err)

    return invoke


@pytest.fixture(scope="module")
def model(tiny_export):
    return tiny_export.output / "model.onnx"


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
