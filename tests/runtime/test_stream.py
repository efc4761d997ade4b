"""flower-run as a stream: --jsonl written as answers come, resumed after an interruption, and
decoding that runs ahead of inference without ever holding more than a few batches."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from PIL import Image

from flower_edge.runtime.predict import Classifier, expand_inputs, iter_inputs


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_jsonl_gives_the_json_documents_results_line_by_line(model, photos, broken, tmp_path, run):
    inputs = [*photos[:3], broken[0], *photos[3:]]
    whole = run(model, *inputs, "--json", "--batch-size", 2)
    streamed = run(model, *inputs, "--jsonl", tmp_path / "out.jsonl", "--batch-size", 2)
    assert whole.exit_code == streamed.exit_code == 1  # the broken photo, reported, and the rest answered
    assert _lines(tmp_path / "out.jsonl") == json.loads(whole.stdout)["results"]
    assert streamed.stdout == ""
    assert "7 answers written" in streamed.stderr and "1 errors" in streamed.stderr
    to_stdout = run(model, *inputs, "--jsonl", "-", "--batch-size", 2)
    assert [json.loads(line) for line in to_stdout.stdout.splitlines()] == json.loads(whole.stdout)["results"]


def test_an_interrupted_run_resumed_gives_the_same_file(model, photos, tmp_path, run):
    full = tmp_path / "full.jsonl"
    assert run(model, *photos, "--jsonl", full).exit_code == 0
    text = full.read_text()
    cut = tmp_path / "cut.jsonl"
    lines = text.splitlines(keepends=True)
    cut.write_text("".join(lines[:3]) + lines[3][:17])  # killed while writing the 4th line
    resumed = run(model, *photos, "--jsonl", cut, "--resume")
    assert resumed.exit_code == 0, resumed.stderr
    assert cut.read_text() == text
    assert f"{len(photos) - 3} answers written" in resumed.stderr and "3 answered before" in resumed.stderr
    again = run(model, *photos, "--jsonl", cut, "--resume")  # nothing left to do
    assert again.exit_code == 0 and cut.read_text() == text and "0 answers written" in again.stderr


def test_a_jsonl_file_is_never_overwritten_or_mixed(model, photos, tmp_path, run):
    out = tmp_path / "out.jsonl"
    assert run(model, *photos[:3], "--jsonl", out).exit_code == 0
    before = out.read_bytes()
    again = run(model, *photos[:3], "--jsonl", out)
    assert again.exit_code == 1 and "exists; --resume continues it" in again.stderr
    other = run(model, *photos[3:], "--jsonl", out, "--resume")  # written for other inputs
    assert other.exit_code == 1 and "written for other inputs" in other.stderr
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    foreign = run(model, *photos, "--jsonl", notes, "--resume")
    assert foreign.exit_code == 1 and "not a flower-run --jsonl file" in foreign.stderr
    assert out.read_bytes() == before and notes.read_text() == "my notes\n"
    for args in (("--resume",), ("--jsonl", "-", "--resume"), ("--decoders", "0")):
        bad = run(model, *photos, *args)
        assert bad.exit_code == 1 and len(bad.stderr.strip().splitlines()) == 1
    assert run(model, *photos, "--jsonl", photos[0]).exit_code == 1  # an input is not an output
    pattern = run(model, str(photos[0].parent / "*"), "--jsonl", photos[0].parent / "answers.jsonl")
    assert pattern.exit_code == 1 and "matches the input pattern" in pattern.stderr  # a glob would read it back
    assert not (photos[0].parent / "answers.jsonl").exists()
    assert len(photos[0].read_bytes()) > 0


def test_results_stream_from_an_endless_source_with_decoding_bounded_ahead(model, photos):
    clf = Classifier(model)
    pulled = []

    def endless():
        for p in itertools.cycle(photos):
            pulled.append(p)
            yield p

    stream = clf.predict_stream(endless(), k=2, batch_size=4, decoders=2)
    first = list(itertools.islice(stream, 5))
    stream.close()
    assert len(pulled) <= 5 + 2 * 4 + 4  # what it answered, plus at most two batches decoded ahead
    assert [r.top_k for r in first] == [
        tuple(clf.predict(p, k=2)) for p in itertools.islice(itertools.cycle(photos), 5)
    ]


def test_a_folder_is_walked_lazily_in_sorted_path_order(tmp_path):
    for name in ("b/x.jpg", "a.jpg", "a/z.jpg", "a/b/y.png", "a-b/w.jpg", "A/v.jpg", "c.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4)).save(tmp_path / name, format="PNG")
    expected = sorted(str(p) for p in tmp_path.rglob("*") if p.suffix in (".jpg", ".png"))
    assert list(iter_inputs([str(tmp_path)])) == expected == expand_inputs([str(tmp_path)])
    assert next(iter_inputs([str(tmp_path)])) == expected[0]
    twice = [str(tmp_path / "a.jpg"), str(tmp_path)]  # repeats across inputs are dropped
    assert expand_inputs(twice) == [expected[expected.index(twice[0])]] + [p for p in expected if p != twice[0]]
