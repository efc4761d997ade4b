"""flower-train: a folder of flower photos in, a self-describing PyTorch checkpoint out.

flower-train ../shared/data/flowers5 -o flower.pth
flower-train synthetic --epochs 3                      # offline procedural flowers
flower-train flowers/ --arch densenet121 --weights none --hidden 256 --freeze
flower-train flowers/ --resume flower.pth --epochs 15  # go on where it stopped
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from flower_edge.common.errors import one_line_errors
from flower_edge.common.options import DebugFlag, JsonFlag, build, option, with_options
from flower_edge.common.output import json_text
from flower_edge.train.config import TrainConfig
from flower_edge.train.console import RichReporter
from flower_edge.train.cv_stats import MAX_CUT, MAX_FOLDS

app = typer.Typer(add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False)
err = Console(stderr=True)


def _list_archs() -> None:
    from flower_edge.train.backbones import get_backbone, list_backbones

    table = Table("arch", "features", "blocks", "description")
    for name in list_backbones():
        spec = get_backbone(name)
        table.add_row(name, str(spec.num_features), str(len(spec.build("none"))), spec.description)
    Console().print(table)


@dataclass(frozen=True)
class CvOptions:
    """flower-train's cross-validation options (train/cv.py)."""

    cv: int | None = option(
        None,
        "Cross-validate the recipe instead: K folds over train + valid (stratified, stable), one training run "
        "each, no checkpoint; prints the mean top-1 and its 95% interval.",
        flags=("--cv",),
        typer={"min": 2, "max": MAX_FOLDS},
    )
    cv_report: Path | None = option(
        None, "With --cv: write the report (folds, per-photo answers) to this JSON file.", flags=("--cv-report",)
    )
    compare: Path | None = option(
        None,
        "With --cv: compare with an earlier --cv-report on the same data, paired by fold and photo.",
        flags=("--compare",),
    )
    cv_cut: int = option(
        0,
        "With --cv: deal the photos into folds by another hash (0: the original cut), equally stratified and "
        "stable, to compare two recipes again on folds they were not compared on.",
        flags=("--cv-cut",),
        typer={"min": 0, "max": MAX_CUT},
    )


def main(
    resume: Annotated[
        Path | None, typer.Option(help="Continue a checkpoint: its weights, optimizer, scheduler and epoch.")
    ] = None,
    plot: Annotated[Path | None, typer.Option(help="Write loss and accuracy curves per epoch to this PNG.")] = None,
    json_out: JsonFlag = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or epoch lines.")] = False,
    list_archs: Annotated[bool, typer.Option("--list-archs", help="List the backbones and exit.")] = False,
    debug: DebugFlag = False,
    **options,
) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # Under torchrun only rank 0 reports, plots and prints; the others train quietly.
    main_rank = int(os.environ.get("RANK", "0")) == 0
    reporter = RichReporter(err, quiet or not main_rank)
    with one_line_errors("flower-train", debug, expected=(typer.BadParameter,), interrupted=reporter.interrupted):
        if importlib.util.find_spec("torch") is None or importlib.util.find_spec("torchvision") is None:
            raise typer.BadParameter("training needs torch and torchvision: pip install 'flower-edge[train]'")
        if list_archs:
            _list_archs()
            return
        if not options["data"]:
            raise typer.BadParameter("DATA is required: a folder of photos, 'synthetic' or 'flowers102'")
        from flower_edge.train.checkpoint import reads
        from flower_edge.train.device import keep_freed_memory
        from flower_edge.train.loop import train

        config = build(TrainConfig, options)
        cvo = build(CvOptions, options)
        keep_freed_memory()  # epochs about 7% faster (glibc)
        if cvo.cv is not None or cvo.cv_report or cvo.compare or cvo.cv_cut:
            _cross_validate(config, cvo.cv, cvo.cv_cut, cvo.cv_report, cvo.compare, resume, plot, json_out, reporter)
            return
        if plot:
            from flower_edge.common.output import PNG_MAGIC, check_output_file

            resumed = [("--resume", str(resume))] if resume else []
            check_output_file(
                plot,
                "--plot",
                reads(config) + resumed,
                magic=PNG_MAGIC,
                kind="PNG",
                writes=[("the checkpoint (--output)", config.output)],
            )
        with reporter:
            result = train(config, reporter, resume=str(resume) if resume else None)
        if not main_rank:
            return
        if plot:
            from flower_edge.train.plots import plot_history

            plot_history(result.history, result.best_epoch, plot)
    _print_result(result, json_out, quiet)


def _print_result(result, json_out: bool, quiet: bool) -> None:
    metrics = dict(result.card.metrics)
    if json_out:
        print(
            json_text(
                {
                    "checkpoint": str(result.checkpoint),
                    "best_epoch": result.best_epoch,
                    "seconds": round(result.seconds, 1),
                    "metrics": metrics,
                    "history": result.history,
                }
            )
        )
    elif not quiet:
        top1 = metrics.get("valid_top1")
        best = f"best valid top-1 {top1:.2%} at epoch {result.best_epoch}; " if top1 is not None else ""
        test = f"test top-1 {metrics['test_top1']:.2%}; " if "test_top1" in metrics else ""
        err.print(f"{best}{test}wrote {result.checkpoint} in {result.seconds:.0f} s", highlight=False, soft_wrap=True)


def _cross_validate(
    config,
    k: int | None,
    cut: int,
    report_path: Path | None,
    compare: Path | None,
    resume,
    plot,
    json_out: bool,
    reporter: RichReporter,
) -> None:
    from flower_edge.common.files import atomic_write
    from flower_edge.common.output import check_output_file
    from flower_edge.train import cv, cv_stats
    from flower_edge.train.checkpoint import reads

    if k is None:
        raise typer.BadParameter("--cv-report, --compare and --cv-cut go with --cv K")
    if resume or plot:
        raise typer.BadParameter("--cv trains K fresh models: --resume and --plot do not apply")
    earlier = cv.read_report(compare) if compare else None
    if earlier and (earlier.get("folds"), earlier.get("cut", 0)) != (k, cut):  # say it before K trainings, not after
        raise typer.BadParameter(
            f"--compare {compare} was cut into {earlier.get('folds')} folds by --cv-cut "
            f"{earlier.get('cut', 0)}; this run would be {k} by --cv-cut {cut}: a paired "
            f"comparison needs the same folds"
        )
    if report_path:
        check_output_file(
            report_path,
            "--cv-report",
            reads(config) + ([("--compare", str(compare))] if compare else []),
            magic=b"{",
            kind="JSON",
        )
    reporter.saved = lambda path, epoch: None  # the folds' checkpoints are temporary: Ctrl-C leaves none
    with reporter:
        report = cv.cross_validate(config, k, reporter, cut)
    if report_path:
        atomic_write(report_path, lambda f: f.write(json_text(report).encode()))
    comparison = cv_stats.compare(earlier, report) if earlier else None
    if json_out:
        print(json_text({**report, "comparison": comparison} if comparison else report))
    else:
        err.print(cv.describe(report), highlight=False, soft_wrap=True)
        if comparison:
            err.print(
                f"against {compare} (A): {cv_stats.describe_comparison(comparison)}", highlight=False, soft_wrap=True
            )


app.command(
    help=(
        "Train a flower classifier and write a self-describing checkpoint.\n\n"
        "DATA is a folder in the classic layout (DATA/train/<class-id>/*.jpg, DATA/valid/..., optional "
        "DATA/test/... and DATA/cat_to_name.json), a plain folder of class folders (a validation split is "
        "taken off), 'synthetic' (procedural flowers, offline) or 'flowers102' (downloads Oxford "
        "Flowers102). The default recipe fine-tunes the last blocks of an ImageNet EfficientNet-Lite0, "
        "caching the frozen blocks' output so that it runs in minutes on a CPU."
    )
)(with_options(main, TrainConfig, CvOptions))


if __name__ == "__main__":
    app()
