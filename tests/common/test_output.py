"""common/output.py: output paths checked against inputs, terminal-safe text, strict JSON, and the
shared write helpers of common/files.py and common/processes.py (full disk, folder replacement, one writer per file)."""

import errno
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from flower_edge.common.errors import OutputError
from flower_edge.common.files import atomic_write, disk_space_checked, replace_folder
from flower_edge.common.output import (
    PNG_MAGIC,
    check_output_file,
    check_output_folder,
    json_text,
    printable,
    read_json_marker,
)
from flower_edge.common.processes import exclusive


@pytest.fixture()
def tree(tmp_path):
    (tmp_path / "photos" / "a").mkdir(parents=True)
    (tmp_path / "photos" / "a" / "1.jpg").write_bytes(b"jpeg")
    (tmp_path / "model.onnx").write_bytes(b"model")
    (tmp_path / "notes.txt").write_text("mine")
    return tmp_path


def test_an_output_file_that_is_an_input_or_inside_one_is_refused(tree, monkeypatch):
    reads = [("the model", tree / "model.onnx"), ("an input", tree / "photos")]
    with pytest.raises(OutputError, match="is the model this run reads"):
        check_output_file(tree / "model.onnx", "--plot", reads)
    monkeypatch.chdir(tree)  # the same file by another spelling, and through a symbolic link
    with pytest.raises(OutputError, match="is the model"):
        check_output_file("./photos/../model.onnx", "--plot", reads)
    os.symlink(tree / "model.onnx", tree / "link.png")
    with pytest.raises(OutputError, match="is the model"):
        check_output_file(tree / "link.png", "--plot", reads)
    os.link(tree / "model.onnx", tree / "hard.png")
    with pytest.raises(OutputError, match="is the model"):
        check_output_file(tree / "hard.png", "--plot", reads)
    with pytest.raises(OutputError, match="is inside an input"):
        check_output_file(tree / "photos" / "a" / "new.png", "--plot", reads)
    with pytest.raises(OutputError, match="is a folder"):
        check_output_file(tree / "photos", "--plot", reads)
    with pytest.raises(OutputError, match="exists and is not a PNG file"):
        check_output_file(tree / "notes.txt", "--plot", reads, magic=PNG_MAGIC, kind="PNG")
    (tree / "old.png").write_bytes(PNG_MAGIC + b"rest")
    assert check_output_file(tree / "old.png", "--plot", reads, magic=PNG_MAGIC, kind="PNG")  # a PNG: replaced
    assert check_output_file(tree / "new.png", "--plot", reads)


def test_an_output_folder_is_checked_against_inputs_and_foreign_files(tree):
    reads = [("the model", tree / "model.onnx")]
    with pytest.raises(OutputError, match="contains the model"):
        check_output_folder(tree, "-o", reads, whole=True)
    check_output_folder(tree, "-o", reads)  # files written into it, not replacing it: no conflict
    with pytest.raises(OutputError, match="is inside --data"):
        check_output_folder(tree / "photos" / "out", "-o", [("--data", tree / "photos")])
    with pytest.raises(OutputError, match=r"did not write; .* --force"):
        check_output_folder(tree, "-o", marker=lambda f: (f / "ours.json").exists(), tool="flower-x")
    check_output_folder(tree, "-o", marker=lambda f: False, tool="flower-x", force=True)
    (tree / "ours.json").write_text("{}")
    check_output_folder(tree, "-o", marker=lambda f: (f / "ours.json").exists(), tool="flower-x")
    (tree / "empty").mkdir()
    check_output_folder(tree / "empty", "-o", marker=lambda f: False, tool="flower-x")
    with pytest.raises(OutputError, match="is a file"):
        check_output_folder(tree / "notes.txt", "-o")


def test_printable_escapes_what_drives_a_terminal():
    assert printable("daisy") == "daisy" and printable("fleur de lys \u00e9") == "fleur de lys \u00e9"
    assert printable("red\nrose") == "red\\nrose"
    assert printable("\x1b[2J\x1b[31mrose") == "\\x1b[2J\\x1b[31mrose"
    assert printable("evil\u202eexe.jpg") == "evil\\u202eexe.jpg"
    assert "\n" not in printable("a\u2028b") and "\x1b" not in printable("\x1b")


def test_json_text_is_strict_json():
    value = {"loss": float("nan"), "rows": [1.5, float("inf"), np.float32("nan"), np.float64(2.0)], "n": 3}
    text = json_text(value)
    assert json.loads(text) == {"loss": None, "rows": [1.5, None, None, 2.0], "n": 3}
    assert "NaN" not in text and "Infinity" not in text
    json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in the JSON"))


def test_read_json_marker(tmp_path):
    (tmp_path / "m.json").write_text('{"model": "x", "created": "1"}')
    assert read_json_marker(tmp_path / "m.json", "model", "created")
    assert read_json_marker(tmp_path / "m.json", "model", "other") is None
    (tmp_path / "bad.json").write_text("[" * 100000)
    assert read_json_marker(tmp_path / "bad.json", "model") is None
    assert read_json_marker(tmp_path / "none.json", "model") is None


def test_replace_folder_keeps_the_old_one_until_the_new_one_is_in_place(tmp_path):
    out, new = tmp_path / "out", tmp_path / ".out-stage-1"
    out.mkdir()
    (out / "old").write_text("old")
    new.mkdir()
    (new / "fresh").write_text("new")
    replace_folder(new, out)
    assert [p.name for p in out.iterdir()] == ["fresh"] and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_one_writer_per_file(tmp_path):
    target = tmp_path / "flower.pth"
    with exclusive(target, "flower-train"):
        with pytest.raises(OutputError, match="another flower-train is writing it"):
            with exclusive(target, "flower-train"):
                pass
        code = (
            "import sys; from flower_edge.common.processes import exclusive\n"
            f"with exclusive({str(target)!r}, 'flower-train'): pass"
        )
        other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert other.returncode == 1 and "another flower-train is writing it" in other.stderr
    with exclusive(target, "flower-train"):  # free again, and no lock file left behind after
        pass
    assert list(tmp_path.iterdir()) == []


def test_a_failed_write_on_a_full_disk_says_so(tmp_path, monkeypatch):
    """Libraries say it in their own words (torch: 'file write failed'); the check of free space
    turns any of them into ENOSPC with the path. Here the disk is made to look full."""
    import shutil

    from flower_edge.common import files

    full = shutil.disk_usage(tmp_path)._replace(free=4096)
    monkeypatch.setattr(files.shutil, "disk_usage", lambda path: full)

    def torch_like(f):
        raise RuntimeError("[enforce fail at inline_container.cc:664] . PytorchStreamWriter failed writing file")

    with pytest.raises(OSError) as caught:
        atomic_write(tmp_path / "flower.pth", torch_like)
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(tmp_path / "flower.pth")
    assert list(tmp_path.iterdir()) == []  # no temporary file left
    monkeypatch.undo()
    with pytest.raises(RuntimeError, match="inline_container"):  # with space left, the error is what it is
        with disk_space_checked(tmp_path):
            torch_like(None)
    with pytest.raises(OSError) as caught:
        with disk_space_checked(tmp_path / "x"):
            raise RuntimeError("SaveToOrtFormat: No space left on device")
    assert caught.value.errno == errno.ENOSPC


def test_a_real_full_disk_keeps_the_old_file_and_says_no_space(full_disk):
    target = full_disk / "flower.pth"
    atomic_write(target, lambda f: f.write(b"old"))
    with pytest.raises(OSError) as caught:
        atomic_write(target, lambda f: f.write(os.urandom(2 << 20)))
    assert caught.value.errno == errno.ENOSPC and str(target) in str(caught.value)
    assert target.read_bytes() == b"old" and [p.name for p in full_disk.iterdir()] == ["flower.pth"]


def test_the_new_bytes_reach_the_disk_before_the_rename(tmp_path, monkeypatch):
    """A crash just after the rename must not leave an empty file under the final name: the
    temporary file is flushed and fsynced first, then the folder that holds the rename."""
    import stat

    from flower_edge.common import files

    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        status = os.fstat(fd)
        events.append(("fsync", "folder" if stat.S_ISDIR(status.st_mode) else status.st_size))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", os.path.basename(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(files.os, "fsync", fsync)
    monkeypatch.setattr(files.os, "replace", replace)
    atomic_write(tmp_path / "flower.pth", lambda f: f.write(b"x" * 1000))
    assert events == [("fsync", 1000), ("replace", "flower.pth"), ("fsync", "folder")]  # all bytes, then the rename
    assert (tmp_path / "flower.pth").read_bytes() == b"x" * 1000
