"""Issue 23: the .tflite files load in MediaPipe Tasks' ImageClassifier as they are, answer as
flower-run does, and carry TFLite metadata that names the labels, the normalization and the card."""

import importlib.util
import zipfile

import numpy as np
import pytest

from flower_edge.export import mediapipe_check
from flower_edge.export.formats import FORMATS
from flower_edge.runtime.image import load_image, preprocess
from flower_edge.runtime.predict import Classifier
from flower_edge.train.photos import find_images

TFLITE = ("tflite", "tflite-int8")
needs_mediapipe = pytest.mark.skipif(
    FORMATS["tflite"].missing() is not None or not mediapipe_check.available(),
    reason="needs the [litert] and [mediapipe] extras",
)


@pytest.fixture(scope="module")
def photos(synthetic_dir):
    """Whole decoded photos, as an app hands them to MediaPipe."""
    return [np.asarray(load_image(p)) for p in find_images(synthetic_dir / "valid")]


@needs_mediapipe
@pytest.mark.parametrize("key", TFLITE)
def test_mediapipe_loads_the_file_and_answers_as_flower_run(key, tiny_export, photos, synthetic_dir):
    path = tiny_export.output / FORMATS[key].file
    card = FORMATS[key].read_card(path)
    scores = mediapipe_check.classify(path, card, photos)  # raises if a label is named otherwise than the card
    assert scores.shape == (len(photos), len(card.labels))
    np.testing.assert_allclose(scores.sum(1), 1.0, atol=1e-3)  # probabilities, as flower-run prints
    flower_run = Classifier(tiny_export.output / "model.onnx")
    expected = [flower_run.predict(p, k=1)[0] for p in find_images(synthetic_dir / "valid")]
    agree = np.mean([s.argmax() == e.index for s, e in zip(scores, expected)])
    if key == "tflite":  # 64 px photos of a 64 px model: no resize, so the same pixels as flower-run
        assert agree == 1.0
        np.testing.assert_allclose(scores.max(1), [e.prob for e in expected], atol=1e-4)
    else:  # the int8 file against the float one: the export's own agreement, within a photo
        row = next(r for r in tiny_export.parity if r.name == f"{key} (MediaPipe)")
        assert abs(agree - row.top1_agreement) <= 1 / len(photos) + 1e-9
        interpreter = FORMATS[key].open(path, threads=1)
        x = np.stack([preprocess(load_image(p), card) for p in find_images(synthetic_dir / "valid")])
        assert np.mean(interpreter(x).argmax(1) == scores.argmax(1)) >= 0.9  # the same file, the same answers


@needs_mediapipe
def test_the_parity_table_has_a_mediapipe_row_per_tflite_file(tiny_export):
    rows = {r.name: r for r in tiny_export.parity}
    for key in TFLITE:
        row = rows[f"{key} (MediaPipe)"]
        assert row.images == rows[key].images and row.format == key and row.passed
    assert rows["tflite (MediaPipe)"].top1_agreement == 1.0


@needs_mediapipe
@pytest.mark.parametrize("key", TFLITE)
def test_metadata_names_labels_normalization_and_the_card(key, tiny_export):
    from flower_edge.export.tflite_metadata import describe

    path = tiny_export.output / FORMATS[key].file
    card = FORMATS[key].read_card(path)
    meta = describe(path)
    assert meta["input"]["color_space"] == "RGB"
    assert meta["input"]["mean"] == pytest.approx([255 * m for m in card.mean])
    assert meta["input"]["std"] == pytest.approx([255 * s for s in card.std])
    assert meta["output"]["associated_files"] == [{"name": "labels.txt", "type": "TENSOR_AXIS_LABELS"}]
    assert meta["associated_files"] == [{"name": "card.json", "type": "DESCRIPTIONS"}]
    assert card.arch in meta["name"] and meta["version"] == card.provenance["export_date"]
    with zipfile.ZipFile(path) as archive:  # the files the metadata names travel inside the model
        assert archive.read("labels.txt").decode().splitlines() == list(card.labels)
        stored = type(card).from_json(archive.read("card.json").decode())
    assert stored == card and (card.layout, card.output) == ("NHWC", "probabilities")
    assert stored.labels == tiny_export.card.labels  # flower-run's labels, in the same order


def test_region_is_the_cards_centre_crop(tiny_export):
    """The region MediaPipe is given, applied to a photo, keeps exactly the pixels the card keeps."""
    from dataclasses import replace

    from PIL import Image

    from flower_edge.runtime.image import center_crop, resize_shorter

    card = replace(tiny_export.card, resize_size=256, crop_size=224, input_size=(3, 224, 224))
    # 400 x 300 -> 341 x 256, whose centre 224 square starts at x = round(58.5) = 58, y = 16
    assert mediapipe_check.region(card, 400, 300) == pytest.approx((58 / 341, 16 / 256, 282 / 341, 240 / 256))
    rng = np.random.default_rng(0)
    for w, h in [(299, 224), (224, 341), (256, 256)]:  # already resized as the card says: odd margins too
        photo = Image.fromarray(rng.integers(0, 256, (h, w, 3), np.uint8))
        resized = resize_shorter(photo, 224, "bilinear")
        left, top, right, bottom = mediapipe_check.region(replace(card, resize_size=224), *resized.size)
        box = (
            round(left * resized.width),
            round(top * resized.height),
            round(right * resized.width),
            round(bottom * resized.height),
        )
        assert np.array_equal(np.asarray(resized.crop(box)), np.asarray(center_crop(resized, 224)))


@pytest.mark.skipif(FORMATS["tflite"].missing() is not None, reason="needs the [litert] extra")
@pytest.mark.slow
def test_without_mediapipe_one_line_names_the_extra_and_the_export_goes_on(
    monkeypatch, tiny_checkpoint, synthetic_dir, tmp_path
):
    from flower_edge.export import ExportConfig, export

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mediapipe" else real(name, *a))
    lines = []
    result = export(
        ExportConfig(
            checkpoint=str(tiny_checkpoint),
            output=str(tmp_path),
            format="tflite",
            calib_data=str(synthetic_dir),
            ort_format=False,
        ),
        lines.append,
    )
    named = [line for line in lines if "mediapipe" in line]
    assert len(named) == 1 and "pip install 'flower-edge[mediapipe]'" in named[0] and "tflite" in named[0]
    assert result.ok and [r.name for r in result.parity] == ["tflite"]
    path = tmp_path / "model.tflite"
    assert FORMATS["tflite"].read_card(path).output == "probabilities"  # the card still travels inside
    monkeypatch.undo()
    if mediapipe_check.available():
        from flower_edge.export.tflite_metadata import describe

        assert describe(path) is None  # no metadata was written
