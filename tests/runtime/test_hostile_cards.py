"""flower-run against cards and requests that ask for too much or for the impossible (issue 22, rows
5 to 9, 12, 14 and 16): each a clear line, and never NaN, a made-up answer or a dead process."""

import json

import numpy as np
import pytest
from PIL import Image

from flower_edge.runtime import CardError, Classifier, ModelCard
from flower_edge.runtime.card import ONNX_METADATA_KEY


def with_card(model, path, change=None, text=None):
    """A copy of ``model`` whose card JSON is ``change``d (a function of the dict) or replaced by ``text``."""
    import onnx

    proto = onnx.load(model)
    props = {p.key: p.value for p in proto.metadata_props}
    if text is None:
        card = json.loads(props[ONNX_METADATA_KEY])
        change(card)
        text = json.dumps(card)
    props[ONNX_METADATA_KEY] = text
    onnx.helper.set_model_props(proto, props)
    onnx.save(proto, path)
    return path


def test_a_std_that_is_zero_in_float32_is_refused(model, photos, tmp_path, run):
    """Row 5: 1e-50 is positive, but float32 makes it 0 and every probability NaN."""
    bad = with_card(model, tmp_path / "m.onnx", lambda c: c.update(std=[1e-50, 0.5, 0.5]))
    result = run(bad, photos[0], "--json")
    assert result.exit_code == 1 and result.stdout == "" and "NaN" not in result.output
    assert "do not normalize pixels to finite float32 values" in result.stderr and result.stderr.count("\n") == 1
    with pytest.raises(CardError):
        ModelCard.from_json(
            json.dumps({**ModelCard.from_onnx(model).to_dict(), "mean": [1e38, 0, 0], "std": [1e-38, 1, 1]})
        )


def test_a_model_with_non_finite_outputs_gives_no_answer(model, photos, monkeypatch):
    clf = Classifier(model)
    monkeypatch.setattr(clf.session, "run", lambda *a, **k: [np.full((1, 5), np.nan, np.float32)])
    with pytest.raises(Exception, match="not finite numbers"):
        clf.predict(photos[0])


@pytest.mark.parametrize("size", [20000, 100000])
def test_a_huge_resize_is_refused_at_load(model, photos, tmp_path, run, size):
    """Row 9: resize_size 20,000 took 2.4 GB for one photo; 100,000 a MemoryError."""
    bad = with_card(model, tmp_path / "m.onnx", lambda c: c.update(resize_size=size))
    result = run(bad, photos[0])
    assert result.exit_code == 1 and "resize_size" in result.stderr and "from 1 to 4096" in result.stderr


@pytest.mark.parametrize(
    "extra, whole, fragment",
    [
        ('"arch": 1e400', None, "must be a non-empty string"),
        ('"resize_size": ' + "9" * 5000, None, "not usable JSON"),
        ('"quantization": ' + '{"a": ' * 20 + "1" + "}" * 20, None, "at most 8 levels deep"),
        ('"quantization": {"scale": 1e400}', None, "finite numbers"),
        (None, "[" * 100_000 + "]" * 100_000, "not usable JSON"),
        (None, " " * (9 << 20), "over the limit"),
    ],
)
def test_card_numbers_and_nesting_that_overflow_are_one_line(model, photos, tmp_path, run, extra, whole, fragment):
    """Row 16: 1e400, 5,000 digits and deep nesting were internal errors."""
    text = whole if whole is not None else json.dumps(ModelCard.from_onnx(model).to_dict())[:-1] + ", " + extra + "}"
    bad = with_card(model, tmp_path / "m.onnx", text=text)
    result = run(bad, photos[0])
    assert result.exit_code == 1 and result.stderr.count("\n") == 1, result.stderr
    assert "internal error" not in result.stderr and fragment in result.stderr


@pytest.mark.parametrize("label", ["red\nrose", "\x1b[31mred", "a\u2028b"])
def test_a_card_with_a_control_character_in_a_label_is_refused(model, photos, tmp_path, run, label):
    """Row 6: such a label shifted every line of labels.txt after it."""
    bad = with_card(model, tmp_path / "m.onnx", lambda c: c["labels"].__setitem__(2, label))
    result = run(bad, photos[0])
    assert result.exit_code == 1 and "holds a control character" in result.stderr
    assert "\x1b" not in result.stderr and result.stderr.count("\n") == 1


def test_duplicate_labels_are_refused(model, photos, tmp_path, run):
    bad = with_card(model, tmp_path / "m.onnx", lambda c: c["labels"].__setitem__(1, c["labels"][0]))
    result = run(bad, photos[0])
    assert result.exit_code == 1 and "twice; each class needs its own name" in result.stderr


def test_escape_codes_in_file_names_do_not_reach_the_terminal(model, photos, tmp_path, run):
    """Row 6: a file name with ANSI codes was printed raw (stdout and the error line)."""
    named = tmp_path / "\x1b[2Jflower\n.png"
    named.write_bytes(photos[0].read_bytes())
    (tmp_path / "\x1b[31mbroken.jpg").write_bytes(b"")
    result = run(model, named, tmp_path / "\x1b[31mbroken.jpg")
    assert result.exit_code == 1 and "\x1b" not in result.output
    assert "\\x1b[2Jflower\\n.png" in result.stdout and "\\x1b[31mbroken.jpg: empty file" in result.stderr
    assert json.loads(run(model, named, "--json").stdout)["results"][0]["image"] == str(named)  # JSON keeps it


def test_batch_size_is_bounded(model, photos, run):
    """Row 7: 100,000 was killed by the kernel at 16.7 GB with no message."""
    result = run(model, photos[0], "--batch-size", "100000")
    assert result.exit_code == 1 and "--batch-size must be between 1 and 256" in result.stderr
    assert run(model, photos[0], "--batch-size", "256").exit_code == 0


def test_the_plot_draws_the_first_50_images(model, photos, tmp_path, run):
    """Row 8: 2,000 photos made an 840 x 600,000 PNG and took 2 GB."""
    from flower_edge.runtime.plot import MAX_ROWS, ROW_H

    many = tmp_path / "many"
    many.mkdir()
    for i in range(MAX_ROWS + 7):
        (many / f"{i:03d}.png").write_bytes(photos[i % len(photos)].read_bytes())
    result = run(model, many, "--plot", tmp_path / "p.png", "--json")
    assert result.exit_code == 0 and len(json.loads(result.stdout)["results"]) == MAX_ROWS + 7
    with Image.open(tmp_path / "p.png") as sheet:
        assert sheet.height < ROW_H * (MAX_ROWS + 1)


def test_a_symbolic_output_size_is_checked_by_running_it(model, photos, tmp_path, run):
    """Row 12: a graph whose class count is symbolic, with a card of 2 labels on 5 outputs, gave wrong
    probabilities (--top-k 1) or an IndexError (--top-k 3)."""
    import onnx

    proto = onnx.load(model)
    dim = proto.graph.output[0].type.tensor_type.shape.dim[1]
    dim.ClearField("dim_value")
    dim.dim_param = "classes"
    onnx.save(proto, tmp_path / "symbolic.onnx")
    assert Classifier(tmp_path / "symbolic.onnx").predict(photos[0], k=5)  # the right card still works
    bad = with_card(
        tmp_path / "symbolic.onnx",
        tmp_path / "bad.onnx",
        lambda c: c.update(labels=c["labels"][:2], class_ids=c["class_ids"][:2]),
    )
    for k in ("1", "3"):
        result = run(bad, photos[0], "--top-k", k)
        assert result.exit_code == 1 and "names 2 classes but the model gives 5 outputs" in result.stderr


def test_a_path_over_the_name_limit_fails_alone(model, photos, run):
    """Row 14: one such path among good photos aborted the whole batch with no output."""
    long = "x" * 300 + ".jpg"
    result = run(model, photos[0], long, photos[1])
    assert result.exit_code == 1 and str(photos[0]) in result.stdout and str(photos[1]) in result.stdout
    assert "File name too long" in result.stderr and result.stderr.count("\n") == 1
    results = Classifier(model).predict_many([photos[0], long], k=1)
    assert results[0].error is None and "File name too long" in results[1].error
