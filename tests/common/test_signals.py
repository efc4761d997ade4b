"""SIGTERM is Ctrl-C's twin: a command stops at a safe point, says so in one line, exits 143."""

from __future__ import annotations

import os
import signal

import pytest

from flower_edge.common.errors import Terminated, one_line_errors
from flower_edge.common.processes import interrupts_deferred


def test_sigterm_inside_a_command_is_one_line_and_exit_143(capsys):
    with pytest.raises(SystemExit) as stopped:
        with one_line_errors("flower-x", interrupted=lambda: "interrupted; nothing was written"):
            os.kill(os.getpid(), signal.SIGTERM)
            pytest.fail("SIGTERM did not stop the command")
    assert stopped.value.code == 143
    assert capsys.readouterr().err == "flower-x: interrupted; nothing was written (SIGTERM)\n"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # given back


def test_sigterm_waits_for_a_deferred_block_then_stops():
    done = []
    with pytest.raises(Terminated):
        with interrupts_deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            done.append("the write finished")
    assert done == ["the write finished"]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_ctrl_c_still_exits_130(capsys):
    with pytest.raises(SystemExit) as stopped:
        with one_line_errors("flower-x"):
            raise KeyboardInterrupt
    assert stopped.value.code == 130 and capsys.readouterr().err == "flower-x: interrupted\n"
