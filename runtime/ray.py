"""Batch classification on a Ray cluster: one onnxruntime session per actor, the photos anywhere.

    from flower_edge.runtime.ray import classify
    rows = classify("photos/", "model.int8.onnx", k=5)          # a ray.data.Dataset, in input order
    rows = classify("s3://bucket/photos/", "model.onnx")          # whatever Ray Data can read
    rows = classify(ray.data.read_binary_files(uris, include_paths=True), "model.onnx")
    for row in rows.iter_rows(): print(row["image"], row["top_k"][0]["label"] if row["top_k"] else row["error"])

    flower-run model.onnx photos/ --ray                # a local cluster on this machine's cores
    flower-run model.onnx photos/ --ray auto --jsonl out.jsonl   # the cluster `ray start` joined

Each row is what flower-run answers for that photo: ``image`` (its path), ``top_k`` (rank, index,
label, prob of each class, empty when the photo could not be read) and ``error`` (why, or None).
The model's bytes go to the actors through Ray's object store, so only the photos need to be
reachable from every node: a shared folder, or storage Ray Data reads (S3, GCS, HDFS). Local
INPUTs are expanded as flower-run expands them (same filter, order and names); a URI is listed by
Ray Data. Needs the ``[ray]`` extra.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from flower_edge.common.errors import ConfigError, FlowerEdgeError

from .predict import MAX_BATCH, Classifier, Result, TopK, iter_inputs

MAX_ACTORS = 1024


def ray_module():
    os.environ.setdefault("RAY_DATA_LOG_LEVEL", "ERROR")  # its per-stage progress lines, not ours to show
    try:
        import ray
    except ImportError:
        raise FlowerEdgeError("--ray needs Ray Data: pip install 'flower-edge[ray]'") from None
    return ray


class _Classify:
    """One actor: the model written once to its own temporary file, one session reused for every batch."""

    def __init__(self, model: list, suffix: str, k: int, labels: dict[str, str] | None, threads: int) -> None:
        import ray

        self.folder = tempfile.TemporaryDirectory(prefix="flower-edge-ray-")
        path = Path(self.folder.name) / f"model{suffix}"
        path.write_bytes(ray.get(model[0]))  # a reference, not the bytes: each actor fetches them once
        self.classifier, self.k = Classifier(path, labels=labels, threads=threads), k

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        names = [str(p) for p in batch["path"]]
        data = batch.get("bytes")
        files = [(n, None if data is None else bytes(data[i])) for i, n in enumerate(names)]
        results = self.classifier.predict_files(files, self.k)
        return {
            "image": [r.image for r in results],
            "top_k": [[t.to_dict() for t in r.top_k] for r in results],
            "error": [r.error for r in results],
        }


def classify(
    data,
    model: str | os.PathLike,
    *,
    k: int = 5,
    batch_size: int = 16,
    concurrency: int | None = None,
    threads: int = 1,
    labels: str | os.PathLike | Mapping[str, str] | None = None,
):
    """A ``ray.data.Dataset`` of one row per photo (``image``, ``top_k``, ``error``), in input order.

    ``data``: INPUT strings as flower-run takes them (files, folders, globs; or URIs Ray Data reads),
    or a Dataset with a ``path`` column (and ``bytes``, as ``read_binary_files(include_paths=True)``
    gives). ``concurrency`` actors of ``threads`` onnxruntime threads each (default: the cluster's
    CPUs divided by ``threads``). Starts a local Ray when none is running."""
    ray = ray_module()
    if not 1 <= batch_size <= MAX_BATCH:
        raise ConfigError(f"--batch-size must be between 1 and {MAX_BATCH}, found {batch_size}")
    path = Path(model)
    if not path.is_file():
        raise FlowerEdgeError(f"{path}: no such model file")
    checked = Classifier(path, labels=labels, threads=1)  # a broken model, card or --labels fails here, once
    names = dict(zip(checked.card.class_ids, checked.labels)) if labels is not None else None
    if not ray.is_initialized():
        ray.init(logging_level="ERROR", log_to_driver=False)
    cpus = int(ray.cluster_resources().get("CPU", 1))
    if concurrency is None:
        concurrency = max(1, cpus // threads)
    if not 1 <= concurrency <= MAX_ACTORS:
        raise ConfigError(f"concurrency must be between 1 and {MAX_ACTORS}, found {concurrency}")
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False
    dataset = data if hasattr(data, "map_batches") else _dataset(ray, [data] if isinstance(data, str) else list(data))
    return dataset.map_batches(
        _Classify,
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=concurrency),
        num_cpus=threads,
        fn_constructor_kwargs=dict(
            model=[ray.put(path.read_bytes())], suffix="".join(path.suffixes[-2:]), k=k, labels=names, threads=threads
        ),
    )


def _dataset(ray, inputs: Sequence[str]):
    remote = [i for i in inputs if "://" in i]
    if remote and len(remote) != len(inputs):
        raise ConfigError("give either local paths or URIs, not both, in one --ray run")
    if remote:
        return ray.data.read_binary_files(remote, include_paths=True)
    paths = list(iter_inputs(inputs))
    if not paths:
        raise FlowerEdgeError("no images found in " + " ".join(inputs))
    return ray.data.from_items([{"path": p} for p in paths])


def results(dataset) -> Iterator[Result]:
    """The rows of :func:`classify` as flower-run's Results, in order."""
    for row in dataset.iter_rows():
        top_k = tuple(TopK(int(t["rank"]), int(t["index"]), str(t["label"]), float(t["prob"])) for t in row["top_k"])
        yield Result(str(row["image"]), top_k, row["error"] if row["error"] is not None else None)
