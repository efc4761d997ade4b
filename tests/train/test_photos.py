"""train/photos.py, the one reader of a DATA folder's layout: what training, export and bench each get."""

import pytest
from PIL import Image

from flower_edge.common.errors import DataError
from flower_edge.train.data import open_data
from flower_edge.train.photos import find_images, photo_splits


def photos(folder, *names, count=6):
    for name in names:
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            Image.new("RGB", (8, 8), (i * 20, 0, 0)).save(folder / name / f"{name.replace('/', '-')}{i}.png")


def test_split_folders_are_taken_as_they_are_and_the_paths_match_training(tmp_path):
    photos(tmp_path, "train/a", "train/b", "valid/a", "valid/b", "test/b")
    splits = photo_splits(str(tmp_path))
    source = open_data(str(tmp_path), check_images=False)
    assert set(splits.paths) == {"train", "valid", "test"} == set(source.splits)
    for name, samples in source.splits.items():
        assert sorted(splits.paths[name]) == sorted(s.path for s in samples)
        assert splits.where[name] == str(tmp_path / name)
    assert [p.parent.name for p in splits.paths["train"][:6]] != ["a"] * 6  # a mix, not one class first


def test_class_folders_are_split_as_training_splits_them(tmp_path):
    photos(tmp_path, "a", "b", count=30)
    splits = photo_splits(str(tmp_path), valid_fraction=0.3)
    source = open_data(str(tmp_path), valid_fraction=0.3, check_images=False)
    assert sorted(splits.paths["valid"]) == sorted(s.path for s in source.splits["valid"]) != []
    assert "flower-train's valid split of it, valid 30% by file-name hash" in splits.where["valid"]
    assert "test" not in splits.paths


def test_a_folder_of_held_out_photos_only_can_be_measured_but_not_trained_on(tmp_path):
    """flower-bench --data photos/ with only valid/: measured as it is; flower-train says what is missing."""
    photos(tmp_path, "valid/a")
    assert len(photo_splits(str(tmp_path)).paths["valid"]) == 6
    with pytest.raises(DataError, match=r"train: no such folder"):
        open_data(str(tmp_path))


def test_loose_photos_calibrate_on_two_thirds_and_verify_on_the_rest(tmp_path):
    photos(tmp_path, "x/y", "z", count=9)  # nested, not class folders of a model
    splits = photo_splits(str(tmp_path), unlabelled=True)
    every = find_images(tmp_path)
    assert splits.paths["valid"] == every[:6] and splits.paths["train"] == every[6:]
    assert len(every) == 18 and "2/3 by path hash" in splits.where["train"]
