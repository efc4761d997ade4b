"""The property behind issue 22: every path-taking flag that writes, of every command, pointed at
each of the run's inputs and at a non-empty folder of the user's, is refused with one line naming
the flag, and no byte of any of them changes."""

import shutil
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from tests.conftest import digest, write_record

runner = CliRunner()


@pytest.fixture(scope="module")
def world(tiny_checkpoint, tiny_export, synthetic_dir, tmp_path_factory):
    """Copies of every kind of input, and a folder of the user's own."""
    root = tmp_path_factory.mktemp("world")
    data = root / "data"
    shutil.copytree(synthetic_dir, data)
    export = root / "export"
    export.mkdir()
    for name in ("model.onnx", "model.int8.onnx"):
        shutil.copy(tiny_export.output / name, export / name)
    write_record(export, "onnx", "onnx-int8")
    ckpt = root / "ckpt" / "tiny.pth"
    ckpt.parent.mkdir()
    shutil.copy(tiny_checkpoint, ckpt)
    labels = root / "labels.json"
    shutil.copy(synthetic_dir / "cat_to_name.json", labels)
    ort_web = root / "ort-web"
    ort_web.mkdir()
    from flower_edge.bundle import ORT_FILES

    for name in ORT_FILES:
        (ort_web / name).write_text(name)
    foreign = root / "mine"
    foreign.mkdir()
    (foreign / "thesis.txt").write_text("four years of work")
    photo = next((data / "valid").rglob("*.png"))
    return SimpleNamespace(
        data=data,
        export=export,
        model=export / "model.onnx",
        ckpt=ckpt,
        labels=labels,
        ort_web=ort_web,
        foreign=foreign,
        photo=photo,
        valid=data / "valid",
    )


def _train(w, flag, target):
    from flower_edge.train.cli import app

    base = [
        str(w.data),
        "--labels",
        str(w.labels),
        "--resume",
        str(w.ckpt),
        "--epochs",
        "2",
        "--image-size",
        "64",
        "--finetune-blocks",
        "2",
        "--cache-views",
        "1",
        "-o",
        str(w.ckpt.parent / "new.pth"),
    ]
    return runner.invoke(app, [*base, flag, str(target)])


def _export(w, flag, target):
    from flower_edge.export.cli import app

    return runner.invoke(
        app,
        [
            str(w.ckpt),
            "--format",
            "onnx",
            "--calib-data",
            str(w.data),
            "--verify-data",
            str(w.valid),
            "-q",
            flag,
            str(target),
        ],
    )


def _run(w, flag, target, capsys):
    from flower_edge.runtime.cli import main

    code = main([str(w.model), str(w.photo), str(w.valid), "--labels", str(w.labels), flag, str(target)])
    out = capsys.readouterr()
    return SimpleNamespace(exit_code=code, stderr=out.err, output=out.out + out.err)


def _bench(w, flag, target):
    from flower_edge.bench.cli import app

    return runner.invoke(
        app,
        [
            str(w.ckpt),
            "--data",
            str(w.data),
            "--models",
            str(w.export),
            "--formats",
            "onnx",
            "--quiet",
            flag,
            str(target),
        ],
    )


def _bundle(w, flag, target):
    from flower_edge.bundle.cli import app

    return runner.invoke(app, [str(w.export), "--ort-web", str(w.ort_web), flag, str(target)])


COMMANDS = {  # command: (its writing flags, the inputs it reads)
    "flower-train": (_train, ("--output", "--plot"), ("data", "photo", "labels", "ckpt", "foreign")),
    "flower-export": (_export, ("--output",), ("ckpt", "data", "valid", "photo", "foreign")),
    "flower-run": (_run, ("--plot",), ("model", "photo", "valid", "labels", "export", "foreign")),
    "flower-bench": (_bench, ("--out",), ("ckpt", "data", "export", "model", "photo", "foreign")),
    "flower-bundle": (_bundle, ("--output",), ("export", "model", "ort_web", "foreign")),
}
CASES = [
    (cmd, flag, target)
    for cmd, (_, flags, targets) in COMMANDS.items()
    for flag in flags
    for target in targets
    # continuing --resume's checkpoint into itself is what --resume is for (here -o is elsewhere)
    if not (cmd == "flower-train" and flag == "--output" and target == "ckpt")
]


@pytest.mark.parametrize("command, flag, target", CASES, ids=[f"{c} {f} {t}" for c, f, t in CASES])
def test_no_written_path_is_an_input_or_a_foreign_folder(world, command, flag, target, capsys):
    w = world
    everything = [w.data, w.export, w.ckpt.parent, w.labels, w.ort_web, w.foreign]
    before = digest(*everything)
    invoke, _, _ = COMMANDS[command]
    args = (w, flag, getattr(w, target)) + ((capsys,) if command == "flower-run" else ())
    result = invoke(*args)
    assert result.exit_code == 1, result.output
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(f"{command}: error: ") and flag in line and "internal error" not in line, line
    assert digest(*everything) == before
