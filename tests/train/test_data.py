import json

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from flower_edge.common.errors import DataError
from flower_edge.runtime import ModelCard, load_image, preprocess
from flower_edge.train import transforms as transforms_module
from flower_edge.train.data import open_data


def photo(path, color=(200, 50, 50), size=(24, 24)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


def test_classic_layout_with_labels(synthetic_dir):
    source = open_data(str(synthetic_dir))
    assert source.class_ids == ("1", "2", "3", "4", "5")
    assert source.labels[0] == "star daisy"
    assert {name: len(s) for name, s in source.splits.items()} == {"train": 50, "valid": 20, "test": 15}
    # Each sample's label is the index of the class folder it came from.
    for s in source.splits["valid"]:
        assert source.class_ids[s.label] == s.path.parent.name


def test_numeric_class_ids_sort_as_numbers_and_missing_names_fall_back(tmp_path):
    for cid in ("10", "2", "1"):
        photo(tmp_path / "train" / cid / "a.png")
        photo(tmp_path / "valid" / cid / "b.png")
    (tmp_path / "cat_to_name.json").write_text(json.dumps({"1": "daisy", "10": "tulip"}))
    source = open_data(str(tmp_path))
    assert source.class_ids == ("1", "2", "10")
    assert source.labels == ("daisy", "2", "tulip")


def test_plain_folder_split_is_deterministic_and_disjoint(tmp_path):
    for cid in ("rose", "tulip"):
        for i in range(40):
            photo(tmp_path / cid / f"{cid}_{i}.png")
    a = open_data(str(tmp_path), valid_fraction=0.25)
    b = open_data(str(tmp_path), valid_fraction=0.25)
    assert a.splits == b.splits
    train = {s.path for s in a.splits["train"]}
    valid = {s.path for s in a.splits["valid"]}
    assert not train & valid and len(train | valid) == 80
    assert 8 <= len(valid) <= 32
    assert a.labels == ("rose", "tulip")


def test_broken_image_is_reported_and_skipped(tmp_path):
    for cid in ("1", "2"):
        photo(tmp_path / "train" / cid / "ok.png")
        photo(tmp_path / "valid" / cid / "ok.png")
    (tmp_path / "train" / "2" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    source = open_data(str(tmp_path))
    assert len(source.splits["train"]) == 2
    assert len(source.skipped) == 1 and "broken.jpg" in source.skipped[0]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda root: None, "no such directory"),
        (lambda root: root.mkdir(), "no class folders"),
        (lambda root: (root / "train" / "1").mkdir(parents=True), "class folder has no images"),
    ],
)
def test_bad_folders_name_the_problem(tmp_path, make, message):
    root = tmp_path / "data"
    make(root)
    with pytest.raises(DataError, match=message):
        open_data(str(root))


def test_valid_class_missing_from_train_is_an_error(tmp_path):
    photo(tmp_path / "train" / "1" / "a.png")
    photo(tmp_path / "valid" / "7" / "a.png")
    with pytest.raises(DataError, match="class '7' has no folder"):
        open_data(str(tmp_path))


def test_flowers102_offline_gives_one_clear_error(tmp_path, monkeypatch):
    import torchvision.datasets

    class Offline:
        def __init__(self, *args, **kwargs):
            raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.datasets, "Flowers102", Offline)
    with pytest.raises(DataError, match=r"could not download Oxford Flowers102.*no network"):
        open_data("flowers102", cache_dir=tmp_path)


def torchvision_eval(card: ModelCard):
    return v2.Compose(
        [
            v2.Resize(card.resize_size, interpolation=v2.InterpolationMode(card.interpolation), antialias=True),
            v2.CenterCrop(card.crop_size),
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(card.mean, card.std),
        ]
    )


@pytest.mark.real
@pytest.mark.parametrize(
    "size, resize, interpolation", [(224, 224, "bilinear"), (224, 256, "bicubic"), (96, 110, "bilinear")]
)
def test_numpy_preprocessing_equals_torchvision_eval_transform(flowers5, size, resize, interpolation):
    card = ModelCard(
        arch="x",
        labels=("a",),
        class_ids=("1",),
        input_size=(3, size, size),
        resize_size=resize,
        crop_size=size,
        interpolation=interpolation,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
    )
    photos = sorted((flowers5 / "valid").rglob("*.jpg"))[::40][:10]
    assert len(photos) == 10
    reference = torchvision_eval(card)
    for path in photos:
        img = load_image(path)
        ours = preprocess(img, card)
        theirs = reference(img).numpy()
        assert ours.shape == theirs.shape
        assert np.abs(ours - theirs).max() <= 1e-5, path


def test_train_transform_yields_normalized_crops(synthetic_dir):
    card = ModelCard(
        arch="x",
        labels=("a",),
        class_ids=("1",),
        input_size=(3, 64, 64),
        resize_size=64,
        crop_size=64,
        interpolation="bilinear",
        mean=(0.5,) * 3,
        std=(0.5,) * 3,
    )
    img = load_image(next((synthetic_dir / "train" / "1").iterdir()))
    x = transforms_module.train_transform(card)(img)
    assert x.shape == (3, 64, 64) and x.dtype == torch.float32
    assert -1.0 <= x.min() and x.max() <= 1.0


def test_decode_all_reads_each_photo_once_within_a_memory_budget(synthetic_dir):
    from flower_edge.train.loaders import ImageDataset, decode_all
    from flower_edge.train.transforms import eval_transform

    samples = open_data(str(synthetic_dir)).splits["valid"]
    images = decode_all(samples)
    assert len(images) == len(samples)
    assert all(np.array_equal(np.asarray(a), np.asarray(load_image(s.path))) for a, s in zip(images, samples))
    one = images[0].width * images[0].height * 3
    assert decode_all(samples, budget=one * (len(samples) - 1)) is None  # over budget: nothing kept
    card = ModelCard(
        arch="x",
        labels=("a",),
        class_ids=("1",),
        input_size=(3, 64, 64),
        resize_size=64,
        crop_size=64,
        interpolation="bilinear",
        mean=(0.5,) * 3,
        std=(0.5,) * 3,
    )
    from_memory, from_files = (
        ImageDataset(samples, eval_transform(card), images),
        ImageDataset(samples, eval_transform(card)),
    )
    assert all(
        torch.equal(from_memory[i][0], from_files[i][0]) and from_memory[i][1] == from_files[i][1]
        for i in range(len(samples))
    )


def test_photos_far_over_the_decoding_budget_are_not_decoded_up_to_it(synthetic_dir, monkeypatch):
    """The headers tell the size: a set twice the budget returns at once instead of filling it first."""
    from flower_edge.train import loaders

    samples = open_data(str(synthetic_dir)).splits["train"]
    decoded = []
    real = loaders.load_image
    monkeypatch.setattr(loaders, "load_image", lambda path: decoded.append(path) or real(path))
    one = Image.open(samples[0].path).size
    assert loaders.decode_all(samples, budget=one[0] * one[1] * 3 * len(samples) // 2) is None
    assert decoded == []
    assert len(loaders.decode_all(samples, budget=one[0] * one[1] * 3 * len(samples))) == len(samples)
