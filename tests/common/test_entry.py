"""The console scripts: a missing extra is one line naming it, before anything of it is imported."""

import importlib.util

import pytest

from flower_edge.common import entry


@pytest.mark.parametrize(
    ("script", "extra"),
    [("flower-train", "train"), ("flower-export", "train"), ("flower-bench", "train"), ("flower-bundle", "app")],
)
def test_a_runtime_only_install_names_the_extra(monkeypatch, capsys, script, extra):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "typer" else real(name, *a))
    with pytest.raises(SystemExit) as exit:
        entry._run(script)
    assert exit.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"{script}: error: needs typer")
    assert f"pip install 'flower-edge[{extra}]'" in err


def test_with_the_extra_the_command_runs(monkeypatch, capsys):
    monkeypatch.setattr("sys.argv", ["flower-bundle", "--help"])
    with pytest.raises(SystemExit) as exit:
        entry.bundle()
    assert exit.value.code == 0 and "Bundle an exported model as a phone web app" in capsys.readouterr().out
