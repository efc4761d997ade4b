import numpy as np

from flower_edge.train.synthetic import KINDS, generate, image_rng, render


def test_same_seed_same_pixels_other_index_other_pixels():
    a = np.asarray(render(2, image_rng(0, "train", 2, 5)))
    b = np.asarray(render(2, image_rng(0, "train", 2, 5)))
    c = np.asarray(render(2, image_rng(0, "train", 2, 6)))
    d = np.asarray(render(2, image_rng(1, "train", 2, 5)))
    assert a.shape == (128, 128, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c) and not np.array_equal(a, d)


def test_generate_writes_the_classic_layout_deterministically(tmp_path):
    sizes = {"train": 2, "valid": 1}
    one = generate(tmp_path / "one", sizes, size=48)
    two = generate(tmp_path / "two", sizes, size=48)
    files = sorted(p.relative_to(one) for p in one.rglob("*.png"))
    assert len(files) == 3 * len(KINDS)
    assert all((two / f).read_bytes() == (one / f).read_bytes() for f in files)
    assert (one / "cat_to_name.json").read_text() == (two / "cat_to_name.json").read_text()


def test_kinds_are_not_separable_by_mean_colour():
    """A nearest-centroid classifier on mean RGB must do poorly: the classes differ in shape."""

    def mean_rgb(split, k, i):
        return np.asarray(render(k, image_rng(0, split, k, i), 64), np.float64).mean((0, 1))

    kinds = range(len(KINDS))
    centroids = np.stack([np.mean([mean_rgb("train", k, i) for i in range(30)], 0) for k in kinds])
    correct = total = 0
    for k in kinds:
        for i in range(20):
            guess = np.argmin(((centroids - mean_rgb("valid", k, i)) ** 2).sum(1))
            correct += guess == k
            total += 1
    assert correct / total < 0.5, correct / total
