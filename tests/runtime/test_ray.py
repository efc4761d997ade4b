"""Batch classification on a local Ray cluster equals flower-run's, answer for answer."""

from __future__ import annotations

import json

import pytest

from flower_edge.runtime.predict import Classifier, expand_inputs

ray = pytest.importorskip("ray", reason="the [ray] extra is not installed: the Ray path is not tested")


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, logging_level="ERROR", log_to_driver=False, include_dashboard=False)
    yield
    ray.shutdown()


def test_ray_answers_the_shared_photos_as_flower_run_does(cluster, model, flowers5):
    from flower_edge.runtime.ray import classify, results

    paths = expand_inputs([str(flowers5 / "valid")])
    expected = Classifier(model).predict_many(paths, k=3)
    got = list(results(classify([str(flowers5 / "valid")], model, k=3, batch_size=32)))
    assert len(got) == len(paths) > 400
    assert got == expected  # same names, order, labels and probabilities, bit for bit


def test_flower_run_ray_writes_the_same_jsonl_with_a_broken_photo(cluster, model, photos, broken, tmp_path, run):
    inputs = [*photos[:4], broken[0], *photos[4:]]
    local = run(model, *inputs, "--jsonl", tmp_path / "local.jsonl", "--labels", _labels(tmp_path))
    on_ray = run(model, *inputs, "--jsonl", tmp_path / "ray.jsonl", "--labels", _labels(tmp_path), "--ray")
    assert local.exit_code == on_ray.exit_code == 1
    assert (tmp_path / "ray.jsonl").read_text() == (tmp_path / "local.jsonl").read_text()
    assert "renamed" in (tmp_path / "ray.jsonl").read_text()  # --labels reached the actors


def _labels(tmp_path):
    path = tmp_path / "labels.json"
    path.write_text(json.dumps({str(i): f"renamed {i}" for i in range(200)}))
    return path
