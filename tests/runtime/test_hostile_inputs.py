"""flower-run and Classifier against hostile input: thread counts, foreign cards, thin strips, odd
image modes, plot paths and unreadable files (each one line, and nothing lost)."""

import pytest
from PIL import Image

from flower_edge.runtime import Classifier
from flower_edge.runtime.image import load_image


@pytest.mark.parametrize("threads", ["0", "-1", "100000"])
def test_threads_out_of_bounds_are_one_line(model, photos, run, threads):
    result = run(model, photos[0], "--threads", threads)
    assert result.exit_code == 1 and result.stderr.count("\n") == 1, result.output
    assert "--threads must be between 1 and" in result.stderr and "cores of this machine" in result.stderr


@pytest.mark.parametrize("labels", [3, 7])
def test_a_card_that_names_other_classes_than_the_graph_is_refused(model, photos, tmp_path, run, labels):
    """A 5-output graph with a card of 3 (an IndexError before) or 7 labels (silently accepted)."""
    from dataclasses import replace

    import onnx

    from flower_edge.runtime import CardError, ModelCard
    from tests.tiny_models import set_card

    card = ModelCard.from_onnx(model)
    assert card.num_classes == 5
    proto = onnx.load(model)
    names = [f"flower {i}" for i in range(labels)]
    set_card(proto, replace(card, labels=tuple(names), class_ids=tuple(str(i) for i in range(labels))))
    onnx.save(proto, tmp_path / "mislabelled.onnx")
    with pytest.raises(CardError, match=f"names {labels} classes but the model gives 5 outputs"):
        Classifier(tmp_path / "mislabelled.onnx")
    result = run(tmp_path / "mislabelled.onnx", photos[0], "--top-k", "3")
    assert result.exit_code == 1 and result.stderr.count("\n") == 1 and "5 outputs" in result.stderr


def test_a_thin_strip_is_refused_before_the_resize(model, photos, tmp_path, run):
    """1 x 8000 pixels resized to a 224-px short side would be 1.8 million pixels long (1.7 GB)."""
    from flower_edge.runtime import ImageError

    Image.new("RGB", (1, 8000), (200, 30, 30)).save(tmp_path / "thin.png")
    result = run(model, photos[0], tmp_path / "thin.png")
    assert result.exit_code == 1 and "thin.png: 1x8000 pixels is narrower than the limit of 20:1" in result.stderr
    assert str(photos[0]) in result.stdout  # the good photo's answer is kept
    with pytest.raises(ImageError, match="20:1"):
        Classifier(model).predict(Image.new("RGB", (8000, 2)))
    assert Classifier(model).predict(Image.new("RGB", (400, 20)), k=1)  # a 20:1 panorama is fine


@pytest.mark.parametrize("mode", ["L", "RGBA", "CMYK", "P", "I;16", "LA", "F"])
def test_in_memory_images_of_any_mode(model, photos, mode):
    clf = Classifier(model)
    rgb = load_image(photos[0])
    image = rgb.convert(mode) if mode not in ("I;16", "F") else rgb.convert("L").convert(mode)
    top = clf.predict(image, k=3)
    assert len(top) == 3 and abs(sum(t.prob for t in clf.predict(image, k=5))) <= 1.0 + 1e-6
    # the same pixels give the same answer, whichever way they arrive
    if mode in ("L",):
        assert clf.predict(image.convert("RGB"), k=3) == top
    # one odd image in a batch costs nothing to the others
    results = clf.predict_many([photos[1], image, Image.new("RGB", (1, 900))], k=2)
    assert results[0].error is None and results[1].error is None and "20:1" in results[2].error
    assert results[0].top_k == tuple(clf.predict(photos[1], k=2))


def test_plot_to_a_folder_or_an_unwritable_place_loses_no_prediction(model, photos, tmp_path, run):
    result = run(model, photos[0], "--plot", tmp_path)
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert "is a folder; give a file name like" in result.stderr
    (tmp_path / "file").write_text("x")
    result = run(model, photos[0], "--plot", tmp_path / "file" / "plot.png")
    assert result.exit_code == 1 and result.stderr.startswith("flower-run: error: --plot ")
    assert str(photos[0]) in result.stdout and "1." in result.stdout  # printed before the plot failed


def test_unreadable_file_and_empty_glob_are_named(model, photos, tmp_path, run):
    import os

    locked = tmp_path / "locked.jpg"
    locked.write_bytes(photos[0].read_bytes())
    locked.chmod(0)
    result = run(model, photos[0], locked, str(tmp_path / "nothing-*.jpg"))
    assert result.exit_code == 1 and str(photos[0]) in result.stdout
    if os.geteuid() != 0:  # root reads any file
        assert "locked.jpg: permission denied" in result.stderr
    assert "nothing-*.jpg: no such file" in result.stderr
