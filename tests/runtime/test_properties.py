"""Property test: random small images of random sizes, modes and shapes, through the API and files.

For every input there is a result or one error line; the same pixels give the same answer whichever
way they arrive; and memory stays bounded (the aspect guard stops the resize blow-up)."""

import resource

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from flower_edge.runtime import Classifier
from flower_edge.runtime.image import MAX_ASPECT

MODES = ("RGB", "L", "RGBA", "LA", "P", "CMYK", "I;16", "F", "1")
FILE_FORMATS = {"PNG": ".png", "BMP": ".bmp", "TIFF": ".tif", "WEBP": ".webp", "GIF": ".gif"}


@pytest.fixture(scope="module")
def classifier(tiny_models):
    return Classifier(tiny_models / "model.int8.onnx", threads=1)


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    w=st.integers(1, 400),
    h=st.integers(1, 400),
    mode=st.sampled_from(MODES),
    fmt=st.sampled_from(sorted(FILE_FORMATS)),
    seed=st.integers(0, 2**16),
)
def test_any_small_image_gets_an_answer_or_one_error(classifier, tmp_path_factory, w, h, mode, fmt, seed):
    before = peak_mb()
    rgb = Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), np.uint8))
    image = rgb.convert("L").convert(mode) if mode in ("I;16", "F") else rgb.convert(mode)
    thin = max(w, h) > MAX_ASPECT * min(w, h)

    api = classifier.predict_many([image, image.copy()], k=3)
    assert len(api) == 2
    for r in api:
        assert (r.error is None) != (r.top_k is None or len(r.top_k) == 0)
        if r.error is not None:
            assert thin and "\n" not in r.error and f"{MAX_ASPECT}:1" in r.error
    if not thin:
        assert api[0].top_k == api[1].top_k  # the same pixels, the same answer
        assert abs(sum(t.prob for t in classifier.predict(image, k=5)) - 1) < 1e-4 or len(classifier.labels) > 5

    path = tmp_path_factory.mktemp("img") / f"x{FILE_FORMATS[fmt]}"
    try:
        image.save(path, fmt)
    except (OSError, KeyError, ValueError):
        return  # Pillow cannot write this mode in this format: nothing to read back
    (from_file,) = classifier.predict_many([path], k=3)
    if thin:
        assert from_file.error is not None and f"{MAX_ASPECT}:1" in from_file.error
    else:
        assert from_file.error is None, from_file.error
        if fmt in ("PNG", "BMP", "TIFF") and mode == "RGB":  # lossless: the file's pixels are the image's
            assert from_file.top_k == api[0].top_k
    assert peak_mb() - before < 300  # no resize blow-up, whatever the shape
