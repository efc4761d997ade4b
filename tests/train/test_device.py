"""The allocator setting flower-train makes: freed training buffers are reused, not faulted in again."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from flower_edge.train.device import ALLOCATOR_SETTINGS

# Allocates and frees 48 MB (above glibc's 32 MB mmap ceiling) as a training step does; prints the
# page faults of the last 10 of 20 rounds, once the heap has settled.
CHILD = """
import resource, sys
import torch
from flower_edge.train.device import keep_freed_memory
tuned = keep_freed_memory() if sys.argv[1] == "tuned" else False
def step():
    a = torch.ones(48 << 20, dtype=torch.uint8); b = torch.ones(1000); del a, b
for _ in range(10): step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10): step()
print(int(tuned), resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""

glibc_only = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="a glibc setting"
)


def _faults(mode: str, **env: str) -> tuple[bool, int]:
    clean = {k: v for k, v in os.environ.items() if k not in ALLOCATOR_SETTINGS}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode], env={**clean, **env}, capture_output=True, text=True, check=True
    )
    tuned, faults = out.stdout.split()
    return tuned == "1", int(faults)


@glibc_only
def test_freed_buffers_are_reused_instead_of_faulted_in_again():
    tuned, faults = _faults("tuned")
    plain_tuned, plain = _faults("plain")
    assert tuned and not plain_tuned
    assert plain > 0  # the default: every round maps the buffer afresh (in 4 KB or, with THP, 2 MB pages)
    assert faults * 10 <= plain  # tuned: the heap's memory is reused


@glibc_only
def test_a_setting_the_user_made_is_left_alone():
    tuned, _ = _faults("tuned", MALLOC_TRIM_THRESHOLD_="131072")
    assert not tuned
