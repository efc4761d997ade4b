"""Our EfficientNet-Lite0, 1 and 2 against the package author's reference implementation and weights."""

import pytest
import torch

from flower_edge.runtime import ModelCard, load_image, preprocess
from flower_edge.train.backbones import lite_weights_path
from flower_edge.train.efficientnet_lite import STAGES, convert_lukemelas_state_dict
from flower_edge.train.model import build_model

pytestmark = pytest.mark.real

CARD = ModelCard(
    arch="efficientnet_lite0",
    labels=("x",),
    class_ids=("1",),
    input_size=(3, 224, 224),
    resize_size=256,
    crop_size=224,
    interpolation="bilinear",
    mean=(0.5,) * 3,
    std=(0.5,) * 3,
)


@pytest.fixture(scope="module", params=[0, 1, 2], ids=lambda n: f"lite{n}")
def models(request):
    """(reference, ours) for one Lite variant, both with the package's ImageNet weights and classifier."""
    from efficientnet_lite_pytorch import EfficientNet

    n = request.param
    state = torch.load(lite_weights_path(n), map_location="cpu", weights_only=True)
    # The reference pads for one fixed input size (Lite1: 240, Lite2: 260); ours pads like TF's SAME
    # for any multiple of 32. Both agree when the reference is built for the size tested here.
    reference = EfficientNet.from_name(f"efficientnet-lite{n}", image_size=CARD.crop_size)
    reference.load_state_dict(state)
    ours = build_model(f"efficientnet_lite{n}", 1000, hidden=(), weights="imagenet")
    ours.head[-1].load_state_dict(convert_lukemelas_state_dict(state, STAGES[f"efficientnet_lite{n}"])[1])
    return reference.eval(), ours.eval()


def skimage_photo(name):
    from PIL import Image
    from skimage import data

    return Image.fromarray(getattr(data, name)()).convert("RGB")


@pytest.mark.parametrize("name, imagenet_class", [("chelsea", 285), ("coffee", 967)])
def test_imagenet_top1_on_scikit_image_photos(models, name, imagenet_class):
    reference, ours = models
    x = torch.from_numpy(preprocess(skimage_photo(name), CARD))[None]
    with torch.no_grad():
        theirs, mine = reference(x), ours(x)
    assert mine.argmax().item() == imagenet_class
    assert theirs.argmax().item() == imagenet_class
    assert (mine - theirs).abs().max().item() <= 1e-4


def test_same_logits_as_reference_on_flower_photos(models, flowers5):
    reference, ours = models
    photos = sorted((flowers5 / "valid").rglob("*.jpg"))[::50][:8]
    x = torch.stack([torch.from_numpy(preprocess(load_image(p), CARD)) for p in photos])
    with torch.no_grad():
        diff = (ours(x) - reference(x)).abs().max().item()
    assert diff <= 1e-4


@pytest.mark.parametrize(
    "arch, params",
    [("efficientnet_lite0", 4_652_008), ("efficientnet_lite1", 5_416_680), ("efficientnet_lite2", 6_092_072)],
)
def test_published_sizes(arch, params):
    """The reference's parameter counts (Lite0 4.65M, Lite1 5.4M, Lite2 6.1M), classifier included."""
    model = build_model(arch, 1000, hidden=())
    assert sum(p.numel() for p in model.parameters()) == params
