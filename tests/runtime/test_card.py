import json

import pytest

from flower_edge.runtime import SCHEMA_VERSION, CardError, ModelCard


def make_card(**overrides) -> ModelCard:
    values = dict(
        arch="efficientnet_lite0",
        labels=("daisy", "rose"),
        class_ids=("1", "3"),
        input_size=(3, 224, 224),
        resize_size=256,
        crop_size=224,
        interpolation="bilinear",
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        metrics={"valid_top1": 0.9},
        provenance={"data": "flowers/", "tool": "flower-edge 0.1.0"},
    )
    values.update(overrides)
    return ModelCard(**values)


def test_json_round_trip_is_lossless():
    card = make_card(quantization={"method": "entropy", "calibration_images": 64})
    again = ModelCard.from_json(card.to_json())
    assert again == card
    assert again.class_to_idx == {"1": 0, "3": 1}
    assert json.loads(card.to_json())["schema_version"] == SCHEMA_VERSION


@pytest.mark.parametrize("field", ["arch", "labels", "mean", "crop_size", "interpolation"])
def test_missing_field_is_named(field):
    data = make_card().to_dict()
    del data[field]
    with pytest.raises(CardError, match=f"missing field '{field}'"):
        ModelCard.from_dict(data)


@pytest.mark.parametrize(
    "field, value",
    [
        ("mean", [0.5, 0.5]),
        ("mean", "0.5"),
        ("labels", ["a", 2]),
        ("crop_size", -3),
        ("crop_size", True),
        ("input_size", [3, 224]),
        ("metrics", {"valid_top1": "high"}),
        ("provenance", {"data": 1}),
    ],
)
def test_wrong_type_is_named(field, value):
    data = make_card().to_dict()
    data[field] = value
    with pytest.raises(CardError, match=f"field '{field}' must be"):
        ModelCard.from_dict(data)


def test_newer_schema_is_refused_with_upgrade_hint():
    data = make_card().to_dict()
    data["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(CardError, match=r"newer than this flower-edge understands.*upgrade"):
        ModelCard.from_dict(data)


def test_inconsistent_cards_are_refused():
    with pytest.raises(CardError, match="2 labels but 1 class ids"):
        make_card(class_ids=("1",))
    with pytest.raises(CardError, match="input_size"):
        make_card(input_size=(3, 200, 224))
    with pytest.raises(CardError, match="must not exceed resize_size"):
        make_card(crop_size=300, input_size=(3, 300, 300))
    with pytest.raises(CardError, match="interpolation"):
        make_card(interpolation="lanczos")


def test_unknown_field_and_bad_json():
    data = make_card().to_dict()
    data["colour"] = "red"
    with pytest.raises(CardError, match="unknown field 'colour'"):
        ModelCard.from_dict(data)
    with pytest.raises(CardError, match="not valid JSON"):
        ModelCard.from_json("{not json")
    with pytest.raises(CardError, match="expected a JSON object"):
        ModelCard.from_json("[1, 2]")
