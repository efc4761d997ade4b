"""flower-run and Classifier on the tiny exported model: top-k, labels, bad inputs, JSON, plot, threads."""

import json
import subprocess
import sys
import threading

import numpy as np
import pytest
from PIL import Image

from flower_edge.runtime import Classifier
from flower_edge.runtime.cli import main
from flower_edge.runtime.image import load_image, preprocess
from flower_edge.runtime.plot import ROW_H, WIDTH
from flower_edge.runtime.session import open_session
from flower_edge.train.photos import find_images


def test_top_k_is_sorted_and_probabilities_sum_to_one(model, photos):
    clf = Classifier(model)
    n = clf.card.num_classes
    top = clf.predict(photos[0], k=n)
    assert [t.rank for t in top] == list(range(1, n + 1))
    probs = [t.prob for t in top]
    assert probs == sorted(probs, reverse=True)
    assert sum(probs) == pytest.approx(1.0, abs=1e-5)
    assert sorted(t.index for t in top) == list(range(n))
    assert [t.label for t in top] == [clf.card.labels[t.index] for t in top]
    assert len(clf.predict(photos[0], k=3)) == 3
    assert len(clf.predict(photos[0], k=50)) == n


def test_top1_is_the_models_argmax_through_the_cards_preprocessing(model, photos):
    clf = Classifier(model)
    session = open_session(model)
    x = np.stack([preprocess(load_image(p), clf.card) for p in photos])
    logits = session.run(None, {"image": x})[0]
    results = clf.predict_many(photos, k=1, batch_size=4)
    assert [r.top_k[0].index for r in results] == list(logits.argmax(1))
    e = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose([r.top_k[0].prob for r in results], (e / e.sum(1, keepdims=True)).max(1), rtol=1e-5)


@pytest.mark.parametrize("name", ["model.int8.onnx", "model.ort", "model.int8.ort", "model.preproc.onnx"])
def test_every_kind_of_file_runs(tiny_models, photos, name):
    float_top = Classifier(tiny_models / "model.onnx").predict(photos[1], k=1)[0]
    top = Classifier(tiny_models / name).predict(photos[1], k=1)[0]
    if ".int8." not in name:
        assert top.index == float_top.index and top.prob == pytest.approx(float_top.prob, abs=1e-4)
    assert 0.0 < top.prob <= 1.0


def test_labels_come_from_the_card_and_can_be_overridden(model, photos, tmp_path, run):
    clf = Classifier(model)
    first_id = clf.card.class_ids[0]
    names = tmp_path / "cat_to_name.json"
    names.write_text(json.dumps({first_id: "renamed flower"}))
    override = Classifier(model, labels=names)
    assert override.labels[0] == "renamed flower" and override.labels[1:] == clf.card.labels[1:]
    result = run(model, photos[0], "--labels", names, "--json", "--top-k", str(clf.card.num_classes))
    assert result.exit_code == 0, result.output
    labels = {t["index"]: t["label"] for t in json.loads(result.stdout)["results"][0]["top_k"]}
    assert labels[0] == "renamed flower"


def test_bad_labels_file(model, photos, tmp_path, run):
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    result = run(model, photos[0], "--labels", bad)
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert "expected an object of class id -> name" in result.stderr


def test_json_schema_with_a_broken_batch(model, photos, broken, tmp_path, run):
    result = run(model, photos[0], *broken, tmp_path / "missing.jpg", photos[1], "--json", "--batch-size", "2")
    assert result.exit_code == 1  # some images failed
    doc = json.loads(result.stdout)
    assert doc["model"] == str(model)
    images = [r["image"] for r in doc["results"]]
    assert images == [str(p) for p in [photos[0], *broken, tmp_path / "missing.jpg", photos[1]]]
    good, bad = doc["results"][:1] + doc["results"][-1:], doc["results"][1:-1]
    for r in good:
        assert set(r) == {"image", "top_k"} and len(r["top_k"]) == 5
        for t in r["top_k"]:
            assert set(t) == {"rank", "index", "label", "prob"}
            assert isinstance(t["rank"], int) and isinstance(t["index"], int)
            assert isinstance(t["label"], str) and 0.0 <= t["prob"] <= 1.0
    reasons = [r["error"] for r in bad]
    assert all(set(r) == {"image", "error"} for r in bad)
    for reason, fragment in zip(
        reasons, ("cannot decode", "empty file", "not an image", "decompression bomb", "no such file")
    ):
        assert fragment in reason
    assert result.stderr.count("flower-run: error:") == len(bad)
    assert "Traceback" not in result.output


def test_folders_and_globs_expand(model, synthetic_dir, run):
    valid = synthetic_dir / "valid"
    first_class = sorted(p.name for p in valid.iterdir())[0]
    result = run(model, valid, str(valid / first_class / "*.png"), "--json")
    assert result.exit_code == 0, result.output
    images = [r["image"] for r in json.loads(result.stdout)["results"]]
    assert len(images) == len(find_images(valid)) == len(set(images))
    # a pattern that matches nothing is reported, not silently dropped (the rest still answer)
    result = run(model, valid, str(valid / first_class / "*.jpg"), "--json")
    results = json.loads(result.stdout)["results"]
    assert result.exit_code == 1 and results[-1] == {
        "image": str(valid / first_class / "*.jpg"),
        "error": f"{valid / first_class / '*.jpg'}: no such file",
    }
    assert all("top_k" in r for r in results[:-1])


def test_plain_output_lists_rank_label_probability(model, photos, run):
    result = run(model, photos[0], "-k", "2")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == str(photos[0])
    assert lines[1].lstrip().startswith("1. ") and lines[2].lstrip().startswith("2. ") and lines[2].endswith("%")


def test_plot_is_a_png_of_the_expected_size(model, photos, broken, tmp_path, run):
    out = tmp_path / "top5.png"
    result = run(model, photos[0], photos[1], broken[1], "--plot", out)
    assert result.exit_code == 1  # the empty file
    with Image.open(out) as img:
        assert img.format == "PNG" and img.size == (WIDTH, 3 * ROW_H)
        pixels = np.asarray(img.convert("RGB"))
    bars = (pixels == (31, 119, 180)).all(-1)
    assert bars[:ROW_H].any() and bars[ROW_H : 2 * ROW_H].any() and not bars[2 * ROW_H :].any()


def test_fatal_errors_are_one_line(tmp_path, photos, run):
    for args, fragment in (
        ((tmp_path / "nope.onnx", photos[0]), "no such model file"),
        ((photos[0], photos[0]), "onnxruntime cannot load"),
        ((photos[0].parent, photos[0]), "no such model file"),
    ):
        result = run(*args)
        assert result.exit_code == 1 and result.stderr.count("\n") == 1, result.output
        assert result.stderr.startswith("flower-run: error:") and fragment in result.stderr


def test_a_bug_and_ctrl_c_are_one_line_too(model, photos, run, monkeypatch):
    """flower-run shares the other commands' error policy: a bug of ours is one 'internal error'
    line (the traceback behind --debug), Ctrl-C one line and exit 130."""

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(Classifier, "predict_stream", broken)
    result = run(model, photos[0])
    assert (
        result.exit_code == 1
        and result.stderr == "flower-run: internal error: ZeroDivisionError: a bug (rerun with --debug)\n"
    )
    with pytest.raises(ZeroDivisionError):
        run(model, photos[0], "--debug")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Classifier, "predict_stream", interrupted)
    result = run(model, photos[0])
    assert result.exit_code == 130 and result.stderr == "flower-run: interrupted\n"


def test_usage_errors_are_one_line(model, photos, capsys):
    for args in (
        [str(model)],
        [str(model), str(photos[0]), "--top-k", "many"],
        [str(model), str(photos[0]), "--bogus"],
    ):
        with pytest.raises(SystemExit) as exit:
            main(args)
        err = capsys.readouterr().err
        assert exit.value.code == 2 and err.count("\n") == 1 and err.startswith("flower-run: error:"), err
    with pytest.raises(SystemExit) as exit:
        main(["--help"])
    assert exit.value.code == 0
    help_text = capsys.readouterr().out
    for option in ("--top-k", "--labels", "--json", "--plot", "--threads", "--batch-size", '"prob"'):
        assert option in help_text


def test_model_without_a_card(tmp_path, photos, run):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    onnx.save(helper.make_model(graph), tmp_path / "plain.onnx")
    result = run(tmp_path / "plain.onnx", photos[0])
    assert result.exit_code == 1 and "has no flower-edge model card" in result.stderr


def test_thread_safety(model, photos):
    clf = Classifier(model, threads=1)
    expected = [clf.predict(p, k=3) for p in photos]
    failures = []

    def work():
        for _ in range(10):
            for p, want in zip(photos, expected):
                if clf.predict(p, k=3) != want:
                    failures.append(p)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures


def test_prediction_never_imports_torch(model, photos):
    code = (
        "import sys\n"
        "from flower_edge.runtime.cli import main\n"
        f"assert main([{str(model)!r}, {str(photos[0])!r}, '--json']) == 0\n"
        "heavy = [m for m in ('torch', 'torchvision', 'onnx') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["results"][0]["top_k"][0]["rank"] == 1
