"""TFLite metadata: what MediaPipe Tasks' ImageClassifier and Android Studio's ML Model Binding read.

    write_metadata("model.tflite", card)    # card: layout NHWC, output probabilities (export/tflite.py)
    describe("model.tflite")                # the metadata as a dict: labels file, normalization, ...

The metadata is a ``TFLITE_METADATA`` buffer of the model's flatbuffer, in the schema MediaPipe
and TFLite Support share (``metadata_schema.fbs``). Both sides are written through the generated
flatbuffer code, never by hand: the model through LiteRT's (``ai_edge_litert.schema_py_generated``),
the metadata through MediaPipe's (``mediapipe.tasks.metadata.metadata_schema_py_generated``), which
ships in every mediapipe wheel. MediaPipe's own writer (``metadata_writers.image_classifier``) is
not used: its native version module is missing from the mediapipe 1.2 wheels.

The associated files it names (``labels.txt``, one label a line, as the output's axis labels;
``card.json``, the model card) are appended after the flatbuffer as a zip archive, which is how
MediaPipe packs them (export/tflite.py :func:`attach_card`).
"""

from __future__ import annotations

import os
from pathlib import Path

from flower_edge.runtime.card import ModelCard

METADATA_NAME = "TFLITE_METADATA"
"""The name under which interpreters and MediaPipe look for the metadata buffer."""
METADATA_IDENTIFIER, MODEL_IDENTIFIER = b"M001", b"TFL3"
MIN_PARSER_VERSION = "1.0.0"
"""Image properties, normalization and axis labels are all in the metadata schema's first version;
MediaPipe's writer computes this with its native module (missing from its 1.2 wheels)."""
CARD_FILE, LABELS_FILE = "card.json", "labels.txt"


def _schemas():
    from ai_edge_litert import schema_py_generated as model_fb

    try:
        from mediapipe.tasks.metadata import metadata_schema_py_generated as metadata_fb
    except ImportError:
        return model_fb, None
    return model_fb, metadata_fb


def write_metadata(path: str | os.PathLike, card: ModelCard) -> None:
    """Put the classifier metadata of ``card`` into the flatbuffer at ``path`` (before the card and
    labels are appended: export/tflite.py), replacing metadata written before."""
    import flatbuffers

    model_fb, fb = _schemas()
    if fb is None:
        raise ImportError("mediapipe")
    path = Path(path)
    model = model_fb.ModelT.InitFromObj(model_fb.Model.GetRootAsModel(path.read_bytes(), 0))
    builder = flatbuffers.Builder(0)
    builder.Finish(_model_metadata(fb, card).Pack(builder), METADATA_IDENTIFIER)
    buffer = model_fb.BufferT()
    buffer.data = builder.Output()
    model.buffers = model.buffers or []
    model.metadata = [m for m in (model.metadata or []) if m.name.decode() != METADATA_NAME]
    model.buffers.append(buffer)
    entry = model_fb.MetadataT()
    entry.name, entry.buffer = METADATA_NAME, len(model.buffers) - 1
    model.metadata.append(entry)
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), MODEL_IDENTIFIER)
    path.write_bytes(builder.Output())


def _model_metadata(fb, card: ModelCard):
    _c, h, w = card.input_size
    mean = [255.0 * m for m in card.mean]
    std = [255.0 * s for s in card.std]

    image = fb.TensorMetadataT()
    image.name = "image"
    image.description = (
        f"RGB photo, {w} x {h}, the model card's crop (resize the shorter side to "
        f"{card.resize_size}, centre {card.crop_size} x {card.crop_size}), values (pixel - mean) / std"
    )
    image.content = fb.ContentT()
    image.content.contentPropertiesType = fb.ContentProperties.ImageProperties
    image.content.contentProperties = fb.ImagePropertiesT()
    image.content.contentProperties.colorSpace = fb.ColorSpaceType.RGB
    normalization = fb.ProcessUnitT()
    normalization.optionsType = fb.ProcessUnitOptions.NormalizationOptions
    normalization.options = fb.NormalizationOptionsT()
    normalization.options.mean, normalization.options.std = mean, std
    image.processUnits = [normalization]
    image.stats = fb.StatsT()
    image.stats.min = [(0.0 - m) / s for m, s in zip(mean, std)]
    image.stats.max = [(255.0 - m) / s for m, s in zip(mean, std)]

    scores = fb.TensorMetadataT()
    scores.name = "probability"
    scores.description = f"Probability of each of the {len(card.labels)} classes (softmax)"
    scores.content = fb.ContentT()
    scores.content.contentPropertiesType = fb.ContentProperties.FeatureProperties
    scores.content.contentProperties = fb.FeaturePropertiesT()
    scores.stats = fb.StatsT()
    scores.stats.min, scores.stats.max = [0.0], [1.0]
    labels = fb.AssociatedFileT()
    labels.name, labels.type = LABELS_FILE, fb.AssociatedFileType.TENSOR_AXIS_LABELS
    labels.description = "The class of each output index, one a line"
    scores.associatedFiles = [labels]

    graph = fb.SubGraphMetadataT()
    graph.inputTensorMetadata, graph.outputTensorMetadata = [image], [scores]

    meta = fb.ModelMetadataT()
    meta.name = f"flower-edge {card.arch} classifier ({len(card.labels)} classes)"
    meta.description = (
        f"Image classifier trained with flower-edge on {card.provenance.get('data', 'photos')}. "
        f"{card.crop_size} px RGB in, class probabilities out; the model card "
        f"({CARD_FILE}) records the preprocessing, metrics and provenance."
    )
    meta.version = card.provenance.get("export_date") or card.provenance.get("created") or "unknown"
    meta.author = card.provenance.get("author") or card.provenance.get("tool") or "flower-edge"
    meta.license = card.provenance.get("license") or "not stated by the trainer (see the model card)"
    meta.minParserVersion = MIN_PARSER_VERSION
    card_file = fb.AssociatedFileT()
    card_file.name, card_file.type = CARD_FILE, fb.AssociatedFileType.DESCRIPTIONS
    card_file.description = "flower-edge model card (JSON): preprocessing, labels, metrics, provenance"
    meta.associatedFiles = [card_file]
    meta.subgraphMetadata = [graph]
    return meta


def describe(path: str | os.PathLike) -> dict | None:
    """The metadata of the file at ``path`` as plain values, or None when it has none (read back
    through the same generated code)."""
    model_fb, fb = _schemas()
    if fb is None:
        raise ImportError("mediapipe")
    data = Path(path).read_bytes()
    model = model_fb.Model.GetRootAsModel(data, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name().decode() == METADATA_NAME:
            raw = model.Buffers(entry.Buffer()).DataAsNumpy().tobytes()
            break
    else:
        return None
    meta = fb.ModelMetadataT.InitFromObj(fb.ModelMetadata.GetRootAsModelMetadata(raw, 0))
    graph = meta.subgraphMetadata[0]
    image, scores = graph.inputTensorMetadata[0], graph.outputTensorMetadata[0]
    norm = next(
        u.options for u in image.processUnits or [] if u.optionsType == fb.ProcessUnitOptions.NormalizationOptions
    )

    def text(value):
        return value.decode() if isinstance(value, bytes) else value

    def files(entries):
        return [{"name": text(f.name), "type": _enum_name(fb.AssociatedFileType, f.type)} for f in entries or []]

    return {
        "name": text(meta.name),
        "description": text(meta.description),
        "version": text(meta.version),
        "author": text(meta.author),
        "license": text(meta.license),
        "min_parser_version": text(meta.minParserVersion),
        "associated_files": files(meta.associatedFiles),
        "input": {
            "name": text(image.name),
            "color_space": _enum_name(fb.ColorSpaceType, image.content.contentProperties.colorSpace),
            "mean": [float(v) for v in norm.mean],
            "std": [float(v) for v in norm.std],
        },
        "output": {"name": text(scores.name), "associated_files": files(scores.associatedFiles)},
    }


def _enum_name(enum, value: int) -> str:
    return next((k for k, v in vars(enum).items() if v == value and not k.startswith("_")), str(value))
