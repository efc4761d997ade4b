"""Export picks its photos from the checkpoint's DATA the way training split it."""

from PIL import Image

from flower_edge.export import ExportConfig
from flower_edge.export.images import choose_images
from flower_edge.train.photos import photo_splits


def test_a_plain_folder_is_verified_on_the_photos_training_held_out(tmp_path):
    for cls in ("daisy", "rose"):
        (tmp_path / cls).mkdir()
        for i in range(40):
            Image.new("RGB", (8, 8), (i * 5, 0, 0)).save(tmp_path / cls / f"{cls}{i}.png")
    splits = photo_splits(str(tmp_path), valid_fraction=0.2).paths
    sets = choose_images(ExportConfig(checkpoint="x", quantize=True, calib_size=1000), str(tmp_path), 0.2)
    assert set(sets.verification) == set(splits["valid"])  # exactly what training validated on
    assert set(sets.calibration) == set(splits["train"])
    assert {p.parent.name for p in sets.calibration[:10]} == {"daisy", "rose"}  # a mix, not one class first
