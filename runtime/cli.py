"""flower-run: top-k prediction with an exported model, onnxruntime only (no torch).

    flower-run model.int8.onnx rose.jpg photos/ 'more/*.jpg' --top-k 3
    flower-run model.onnx photos/ --json > predictions.json

This one command uses argparse, not typer like the others: it is what runs on the edge, where start
time counts, and typer 0.29 imports pydantic to parse options (0.25 s of a 0.5 s cold start here).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

HELP = (
    "Predict the top-k classes of images with a model written by flower-export (.onnx, .int8.onnx "
    "or their .ort copies). Labels and preprocessing come from the model card inside the file. "
    "Answers are printed as they are known, in input order, while the next photos decode. "
    "An image that cannot be read is reported on stderr and the rest go on; the exit code is then 1. "
    "Limits: images over 64 million pixels, or narrower than 20:1 (longest side over shortest), are "
    "refused before they are resized; --threads is 1 to the number of cores; --batch-size 1 to 256; --decoders 1 to 16; "
    "--plot draws the first 50 images. No path it writes may be one it reads. A model whose card asks for a "
    "resize or crop over 4,096 px, more than 100,000 labels, a label over 256 characters or holding a control "
    "character, a card over 8 MB or nested over 8 levels, or a mean and std that do not give finite inputs, is "
    "refused."
)
JSON_HELP = (
    'one JSON document on stdout at the end: {"model": PATH, "results": [{"image": PATH, "top_k": '
    '[{"rank", "index", "label", "prob"}, ...]} or {"image": PATH, "error": MESSAGE}, ...]}; for small runs'
)
JSONL_HELP = (
    'one JSON object a line, {"image": PATH, "top_k": [...]} or {"image": PATH, "error": MESSAGE}, written '
    "and flushed as each image is answered, in input order; - for stdout. Memory stays flat on any number "
    "of images. An existing file is refused unless --resume"
)


MAX_DECODERS = 16


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not usage + error
        self.exit(2, f"flower-run: error: {message} (see flower-run --help)\n")


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="flower-run", description=HELP)
    p.add_argument("model", metavar="MODEL", help="model file from flower-export")
    p.add_argument(
        "inputs", metavar="INPUT", nargs="+", help="image files, folders (searched recursively) or glob patterns"
    )
    p.add_argument("-k", "--top-k", type=int, default=5, help="classes to show per image (default: 5)")
    p.add_argument("--labels", metavar="JSON", help="cat_to_name.json (class id -> name) overriding the card's labels")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help=JSON_HELP)
    out.add_argument("--jsonl", metavar="PATH", help=JSONL_HELP)
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the --jsonl file of an interrupted run: the "
        "images it already answers are skipped (the inputs must be the same, in the same order) and the "
        "rest appended; a half-written last line is dropped first",
    )
    p.add_argument(
        "--decoders",
        type=int,
        help=f"threads decoding photos ahead of inference, 1 to {MAX_DECODERS} (default: up to 4)",
    )
    p.add_argument(
        "--plot",
        metavar="PNG",
        help="write a PNG: each of the first 50 images beside a bar chart of "
        "its top-k (a new file, or a PNG to replace; never the model, an input or a file of another kind)",
    )
    p.add_argument("--threads", type=int, help="onnxruntime threads, 1 to the number of cores (default: one per core)")
    p.add_argument("--batch-size", type=int, default=16, help="images per onnxruntime call, 1 to 256 (default: 16)")
    p.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="classify on a Ray cluster, one onnxruntime session per actor (needs the [ray] extra): alone, "
        "a local cluster on this machine's cores; 'auto', the cluster `ray start` made; ray://HOST:10001, a "
        "remote one (the photos must be reachable from its nodes: a shared folder, or s3:// and other URIs "
        "Ray Data reads). Answers are flower-run's, in the same order, with every output option",
    )
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from flower_edge.common.errors import one_line_errors

    try:
        with one_line_errors("flower-run", args.debug):  # the one error policy every command shares
            return _run(args)
    except SystemExit as e:
        return int(e.code or 0)


def _run(args) -> int:
    from flower_edge.common.errors import FlowerEdgeError, message

    from .predict import Classifier

    try:
        paths, sink = _open(args)
        if args.ray:
            results = _on_ray(args, paths)
        else:
            classifier = Classifier(args.model, labels=args.labels, threads=args.threads)
            results = classifier.predict_stream(paths, k=args.top_k, batch_size=args.batch_size, decoders=args.decoders)
        shown, failed = _emit(args, results, sink)
    except BrokenPipeError:  # flower-run ... | head: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0
    if args.plot:
        from .plot import plot_results

        try:
            plot_results(shown, args.plot)
        except (FlowerEdgeError, OSError) as e:
            raise FlowerEdgeError(f"--plot {args.plot}: {message(e)}") from e
    return 1 if failed else 0


def _open(args):
    """The images to answer (an iterator) and where the answers go, every option checked first."""
    from itertools import chain

    from flower_edge.common.errors import FlowerEdgeError

    from .predict import MAX_BATCH, iter_inputs

    if args.top_k < 1:
        raise FlowerEdgeError(f"--top-k must be at least 1, found {args.top_k}")
    if not 1 <= args.batch_size <= MAX_BATCH:
        raise FlowerEdgeError(f"--batch-size must be between 1 and {MAX_BATCH}, found {args.batch_size}")
    if args.decoders is not None and not 1 <= args.decoders <= MAX_DECODERS:
        raise FlowerEdgeError(f"--decoders must be between 1 and {MAX_DECODERS}, found {args.decoders}")
    if args.resume and args.jsonl in (None, "-"):
        raise FlowerEdgeError("--resume continues a --jsonl file; give its path with --jsonl")
    inputs = iter_inputs(args.inputs)
    first = next(inputs, None)
    if first is None:
        raise FlowerEdgeError("no images found in " + " ".join(args.inputs))
    paths = chain([first], inputs)
    reads = [("the model", args.model), *(("an input", p) for p in args.inputs)]
    if args.plot:
        from flower_edge.common.output import PNG_MAGIC, check_output_file

        paths = list(paths)  # --plot is for a few images: each one is checked against it
        check_output_file(
            args.plot,
            "--plot",
            reads + [("an input", p) for p in paths] + ([("--labels", args.labels)] if args.labels else []),
            magic=PNG_MAGIC,
            kind="PNG",
        )
    sink = None
    if args.jsonl not in (None, "-"):
        from .stream import JsonlSink, check_not_matched

        check_not_matched(args.jsonl, args.inputs)
        sink = JsonlSink(
            args.jsonl,
            reads
            + ([("--labels", args.labels)] if args.labels else [])
            + ([("--plot's PNG", args.plot)] if args.plot else []),
        )
        paths = sink.resume(paths) if args.resume else sink.create(paths)
    return paths, sink


def _on_ray(args, paths):
    from .ray import classify, ray_module, results

    ray = ray_module()
    if not ray.is_initialized():
        ray.init(address=None if args.ray == "local" else args.ray, logging_level="ERROR", log_to_driver=False)
    return results(
        classify(
            list(paths),
            args.model,
            k=args.top_k,
            batch_size=args.batch_size,
            threads=args.threads or 1,
            labels=args.labels,
        )
    )


def _emit(args, results, sink) -> tuple[list, int]:
    """Each result out as it comes (text, --jsonl) or all at the end (--json); errors on stderr as
    they come. Returns the results (with --plot, else none) and the number of failed images."""
    from flower_edge.common.output import json_text, printable

    from .stream import Progress, jsonl_line

    kept, failed = [], 0
    everything: list | None = [] if args.json else None
    progress = Progress(sink) if sink is not None else None
    try:
        for r in results:
            if r.error is not None:
                failed += 1
                print(f"flower-run: error: {printable(r.error)}", file=sys.stderr)
            if args.plot:
                kept.append(r)
            if everything is not None:
                everything.append(r)
            elif sink is not None:
                sink.write(r)
                if progress is not None:
                    progress.advance(r.error is not None)
            elif args.jsonl == "-":
                print(jsonl_line(r), flush=True)
            elif r.error is None:
                print(
                    printable(r.image)
                    + "".join(f"\n  {t.rank}. {printable(t.label):<30} {t.prob:7.2%}" for t in r.top_k),
                    flush=True,
                )
    finally:
        if sink is not None:
            sink.close()
        if progress is not None:
            progress.close()
    if everything is not None:
        print(json_text({"model": args.model, "top_k": args.top_k, "results": [r.to_dict() for r in everything]}))
    return kept, failed


app = main  # the console script's entry point: sys.exit(app())

if __name__ == "__main__":
    sys.exit(main())
