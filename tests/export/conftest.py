"""Fixtures of the export tests: the phone app bundled from the shared export, and int8 inputs."""

import numpy as np
import pytest

from flower_edge.bundle import bundle
from tests.export.phone import runtimes_installed


@pytest.fixture(scope="module")
def web(tiny_export, tmp_path_factory):
    runtimes_installed()
    return bundle(tiny_export.output, tmp_path_factory.mktemp("bundle") / "web")


@pytest.fixture(scope="module")
def inputs(tiny_export):
    card = tiny_export.int8_card
    return np.random.default_rng(0).uniform(-1, 1, (12, *card.input_size)).astype(np.float32)
