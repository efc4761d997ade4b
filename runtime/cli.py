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
from typing import Sequence

HELP = (
    "Predict the top-k classes of images with a model written by flower-export (.onnx, .int8.onnx "
    "or their .ort copies). Labels and preprocessing come from the model card inside the file. "
    "An image that cannot be read is reported on stderr and the rest go on; the exit code is then 1. "
    "Limits: images over 64 million pixels, or narrower than 20:1 (longest side over shortest), are "
    "refused before they are resized; --threads is 1 to the number of cores; --batch-size 1 to 256; "
    "--plot draws the first 50 images. No path it writes may be one it reads. A model whose card asks for a "
    "resize or crop over 4,096 px, more than 100,000 labels, a label over 256 characters or holding a control "
    "character, a card over 8 MB or nested over 8 levels, or a mean and std that do not give finite inputs, is "
    "refused."
)
JSON_HELP = ('one JSON document on stdout: {"model": PATH, "results": [{"image": PATH, "top_k": '
             '[{"rank", "index", "label", "prob"}, ...]} or {"image": PATH, "error": MESSAGE}, ...]}')


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not usage + error
        self.exit(2, f"flower-run: error: {message} (see flower-run --help)\n")


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="flower-run", description=HELP)
    p.add_argument("model", metavar="MODEL", help="model file from flower-export")
    p.add_argument("inputs", metavar="INPUT", nargs="+", help="image files, folders (searched recursively) or glob patterns")
    p.add_argument("-k", "--top-k", type=int, default=5, help="classes to show per image (default: 5)")
    p.add_argument("--labels", metavar="JSON", help="cat_to_name.json (class id -> name) overriding the card's labels")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.add_argument("--plot", metavar="PNG", help="write a PNG: each of the first 50 images beside a bar chart of "
                   "its top-k (a new file, or a PNG to replace; never the model, an input or a file of another kind)")
    p.add_argument("--threads", type=int, help="onnxruntime threads, 1 to the number of cores (default: one per core)")
    p.add_argument("--batch-size", type=int, default=16, help="images per onnxruntime call, 1 to 256 (default: 16)")
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from .errors import FlowerEdgeError

    try:
        if args.top_k < 1:
            raise FlowerEdgeError(f"--top-k must be at least 1, found {args.top_k}")
        from .predict import MAX_BATCH, Classifier, expand_inputs

        if not 1 <= args.batch_size <= MAX_BATCH:
            raise FlowerEdgeError(f"--batch-size must be between 1 and {MAX_BATCH}, found {args.batch_size}")
        paths = expand_inputs(args.inputs)
        if not paths:
            raise FlowerEdgeError("no images found in " + " ".join(args.inputs))
        if args.plot:
            from .output import PNG_MAGIC, check_output_file

            reads = [("the model", args.model), *(("an input", p) for p in [*args.inputs, *paths])]
            check_output_file(args.plot, "--plot", reads + ([("--labels", args.labels)] if args.labels else []),
                              magic=PNG_MAGIC, kind="PNG")
        classifier = Classifier(args.model, labels=args.labels, threads=args.threads)
        results = classifier.predict_many(paths, k=args.top_k, batch_size=args.batch_size)
    except (FlowerEdgeError, OSError) as e:
        return _fail(args, e)
    except Exception as e:  # a bug of ours: still one line, the traceback behind --debug
        return _fail(args, e, internal=True)

    try:
        _print(args, results)  # before the plot: a plot that cannot be written loses no prediction
    except BrokenPipeError:  # flower-run ... | head: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0
    failed = [r for r in results if r.error is not None]
    from .output import printable

    for r in failed:
        print(f"flower-run: error: {printable(r.error)}", file=sys.stderr)
    if args.plot:
        try:
            from .plot import plot_results

            plot_results(results, args.plot)
        except (FlowerEdgeError, OSError) as e:
            return _fail(args, e, what=f"--plot {args.plot}: ")
        except Exception as e:
            return _fail(args, e, internal=True)
    return 1 if failed else 0


def _fail(args, e: Exception, internal: bool = False, what: str = "") -> int:
    from .errors import message
    from .output import printable

    if args.debug:
        raise e
    if internal:
        print(f"flower-run: internal error: {type(e).__name__}: {printable(str(e))} (rerun with --debug)", file=sys.stderr)
    else:
        print(f"flower-run: error: {printable(what)}{message(e)}", file=sys.stderr)
    return 1


def _print(args, results) -> None:
    from .output import json_text, printable

    if args.json:
        print(json_text({"model": args.model, "top_k": args.top_k, "results": [r.to_dict() for r in results]}))
    else:
        for r in results:
            if r.error is None:
                print(printable(r.image))
                for t in r.top_k:
                    print(f"  {t.rank}. {printable(t.label):<30} {t.prob:7.2%}")


app = main  # the console script's entry point: sys.exit(app())

if __name__ == "__main__":
    sys.exit(main())
