"""A tiny end-to-end run on a few Flowers102 classes: the seed projects' layout trains, evaluates,
exports, and flower-run feeds the model exactly what the card records."""

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from flower_edge.export import ExportConfig, export
from flower_edge.runtime.cli import main as flower_run
from flower_edge.runtime.image import load_image
from flower_edge.train import train
from flower_edge.train.checkpoint import load_model

CLASSES = ("1", "51", "77")  # pink primrose, petunia, passion flower


@pytest.fixture(scope="module")
def few_classes(flowers102, tmp_path_factory):
    """train/ and valid/ of three classes (12 and 4 photos each) and the original cat_to_name.json."""
    root = tmp_path_factory.mktemp("flowers102-few")
    for split, count in (("train", 12), ("valid", 4)):
        for cid in CLASSES:
            (root / split / cid).mkdir(parents=True)
            for photo in sorted((flowers102 / split / cid).glob("*.jpg"))[:count]:
                shutil.copy(photo, root / split / cid / photo.name)
    shutil.copy(flowers102 / "cat_to_name.json", root)
    return root


@pytest.fixture(scope="module")
def trained(few_classes, make_config, tmp_path_factory):
    out = tmp_path_factory.mktemp("f102") / "f102.pth"
    result = train(make_config(few_classes, out, epochs=2, cache_views=2))
    return result, out


@pytest.mark.real
def test_trains_and_evaluates_end_to_end(trained):
    result, out = trained
    assert [r["epoch"] for r in result.history] == [1, 2]
    assert all(0 <= r["valid_top1"] <= 1 and np.isfinite(r["train_loss"]) for r in result.history)
    assert result.card.labels == ("pink primrose", "petunia", "passion flower")
    assert result.card.class_ids == CLASSES
    assert result.card.metrics["valid_top1"] == max(r["valid_top1"] for r in result.history)
    _, card, ckpt = load_model(out)
    assert card == result.card and ckpt["best_epoch"] == result.best_epoch


@pytest.mark.real
@pytest.mark.slow
def test_flower_run_applies_the_cards_aspect_keeping_centre_crop(trained, few_classes, tmp_path, capsys):
    """The card records resize-the-shorter-side then centre-crop; flower-run computes exactly the
    PyTorch model's answer on torchvision's Resize + CenterCrop of each photo, and a squashed photo
    (the whole photo scaled to a square) would give other answers."""
    from torchvision.transforms import v2

    _, out = trained
    model, card, _ = load_model(out)
    assert card.resize_size == card.crop_size == card.input_size[1]  # shorter side to 64, crop 64
    export(ExportConfig(checkpoint=str(out), output=str(tmp_path), format="onnx", ort_format=False))
    photos = sorted((few_classes / "valid").rglob("*.jpg"))
    assert all(Image.open(p).size[0] != Image.open(p).size[1] for p in photos)  # none is square

    assert flower_run([str(tmp_path / "model.onnx"), *map(str, photos), "--json", "--top-k", "3"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    got = np.array([[t["prob"] for t in sorted(r["top_k"], key=lambda t: t["index"])] for r in results])

    def torch_probs(transform):
        x = torch.stack([transform(load_image(p)) for p in photos])
        with torch.no_grad():
            return torch.softmax(model(x), 1).numpy()

    tail = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(card.mean, card.std)]
    interp = v2.InterpolationMode(card.interpolation)
    cropped = torch_probs(v2.Compose([v2.Resize(card.resize_size, interp), v2.CenterCrop(card.crop_size), *tail]))
    squashed = torch_probs(v2.Compose([v2.Resize((card.crop_size, card.crop_size), interp), *tail]))
    assert np.abs(got - cropped).max() < 1e-4
    assert np.abs(got - squashed).max() > 1e-3
