"""flower-train: a folder of flower photos in, a self-describing PyTorch checkpoint out.

    flower-train ../shared/data/flowers5 -o flower.pth
    flower-train synthetic --epochs 3                      # offline procedural flowers
    flower-train flowers/ --arch densenet121 --weights none --hidden 256 --freeze
    flower-train flowers/ --resume flower.pth --epochs 15  # go on where it stopped
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from dataclasses import fields
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)
from rich.text import Text
from rich.table import Table

from flower_edge.runtime.errors import one_line_errors
from flower_edge.runtime.progress import ProgressLines
from flower_edge.train.config import TrainConfig, parse_hidden

D = {f.name: f.default for f in fields(TrainConfig)}  # one place for every default

app = typer.Typer(add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False)
err = Console(stderr=True)


class RichReporter:
    """Progress bars and an epoch table on stderr, so stdout stays clean for --json."""

    def __init__(self, console: Console, quiet: bool = False) -> None:
        self.console, self.quiet = console, quiet
        self.last_saved: tuple[str, int] | None = None
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            _Rate(), TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
            console=console, transient=True, disable=quiet,
        )

    def source(self, source) -> None:
        sizes = ", ".join(f"{name} {len(s)}" for name, s in source.splits.items())
        self.message(f"data: {source.description} ({source.num_classes} classes; {sizes} images)")
        for line in source.skipped:
            self.console.print(f"skipped broken image {line}", highlight=False, markup=False, soft_wrap=True)

    def __enter__(self) -> "RichReporter":
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def task(self, description: str, total: int):
        if self.quiet:
            return _Silent()
        if not self.console.is_terminal:  # a log file, CI, a notebook: lines, never silence
            return ProgressLines(description, total, self.message)
        progress = self.progress

        class _Bar:
            def __init__(self) -> None:
                self.id = progress.add_task(description, total=total, info="")

            def advance(self, n: int = 1, **fields: float) -> None:
                info = "  ".join(f"{k} {v:.3f}" for k, v in fields.items())
                progress.update(self.id, advance=n, info=info)

            def close(self) -> None:
                progress.remove_task(self.id)

        return _Bar()

    def epoch(self, r: dict) -> None:
        self.message(
            f"epoch {r['epoch']:>3}  train loss {r['train_loss']:.4f} acc {r['train_top1']:.2%}  "
            f"valid loss {r['valid_loss']:.4f} top-1 {r['valid_top1']:.2%} top-5 {r['valid_top5']:.2%}"
        )

    def saved(self, path: str, epoch: int) -> None:
        self.last_saved = (path, epoch)

    def interrupted(self) -> str:
        """The Ctrl-C line: what this run left on disk, and nothing it did not."""
        if self.last_saved is None:
            return "interrupted before the first epoch finished; no checkpoint was written by this run"
        path, epoch = self.last_saved
        return f"interrupted; {path} holds epoch {epoch} (--resume {path} goes on from there)"

    def message(self, text: str) -> None:
        if not self.quiet:
            self.console.print(text, highlight=False, soft_wrap=True)


class _Rate(ProgressColumn):
    def render(self, task) -> Text:
        return Text(f"{task.speed:.0f} img/s" if task.speed else "")


class _Silent:
    def advance(self, n: int = 1, **fields: float) -> None: ...

    def close(self) -> None: ...


def _list_archs() -> None:
    from flower_edge.train.backbones import get_backbone, list_backbones

    table = Table("arch", "features", "blocks", "description")
    for name in list_backbones():
        spec = get_backbone(name)
        table.add_row(name, str(spec.num_features), str(len(spec.build("none"))), spec.description)
    Console().print(table)


@app.command(help=(
    "Train a flower classifier and write a self-describing checkpoint.\n\n"
    "DATA is a folder in the classic layout (DATA/train/<class-id>/*.jpg, DATA/valid/..., optional "
    "DATA/test/... and DATA/cat_to_name.json), a plain folder of class folders (a validation split is "
    "taken off), 'synthetic' (procedural flowers, offline) or 'flowers102' (downloads Oxford "
    "Flowers102). The default recipe fine-tunes the last blocks of an ImageNet EfficientNet-Lite0, "
    "caching the frozen blocks' output so that it runs in minutes on a CPU."
))
def main(
    data: Annotated[str, typer.Argument(help="Folder of photos, 'synthetic' or 'flowers102'.", show_default=False)] = "",
    output: Annotated[Path, typer.Option("--output", "-o", help="Checkpoint to write (atomically).")] = Path(D["output"]),
    arch: Annotated[str, typer.Option(help="Backbone; --list-archs shows them all.")] = D["arch"],
    weights: Annotated[str, typer.Option(help="Backbone weights: imagenet, none, or a state-dict file.")] = D["weights"],
    hidden: Annotated[str, typer.Option(help="Hidden layer sizes of the head: 256, 512,256 or none.")] = ",".join(map(str, D["hidden"])) or "none",
    dropout: Annotated[float, typer.Option(help="Dropout before each linear layer of the head.")] = D["dropout"],
    freeze: Annotated[bool, typer.Option("--freeze/--finetune", help="--freeze trains the head only (the seed projects' way); --finetune also trains the last --finetune-blocks blocks.")] = D["mode"] == "freeze",
    finetune_blocks: Annotated[Optional[int], typer.Option(help="Blocks trained at the end of the backbone with --finetune; 0 trains all of them. Default: 6 for up to 4,000 training photos, 4 above (the 6th from the end costs as much as the last 4).", show_default=False)] = D["finetune_blocks"],
    backbone_lr_scale: Annotated[float, typer.Option(help="Backbone learning rate as a fraction of --lr.")] = D["backbone_lr_scale"],
    epochs: Annotated[int, typer.Option(help="Total epochs (with --resume: the epoch to stop after).")] = D["epochs"],
    batch_size: Annotated[int, typer.Option(help="Images per optimizer step.")] = D["batch_size"],
    lr: Annotated[float, typer.Option(help="Peak learning rate of the head.")] = D["lr"],
    optimizer: Annotated[str, typer.Option(help="adamw or adam.")] = D["optimizer"],
    weight_decay: Annotated[float, typer.Option(help="Weight decay.")] = D["weight_decay"],
    scheduler: Annotated[str, typer.Option(help="onecycle (warm-up then cosine), cosine, or step (StepLR by --step-size epochs and --gamma).")] = D["scheduler"],
    step_size: Annotated[int, typer.Option(help="Epochs between learning-rate drops with --scheduler step.")] = D["step_size"],
    gamma: Annotated[float, typer.Option(help="Learning-rate factor at each drop with --scheduler step.")] = D["gamma"],
    label_smoothing: Annotated[float, typer.Option(help="Label smoothing of the cross-entropy loss.")] = D["label_smoothing"],
    image_size: Annotated[int, typer.Option(help="Side of the square model input (multiple of 32).")] = D["image_size"],
    resize_size: Annotated[Optional[int], typer.Option(help="Shorter side before the evaluation centre crop (default: --image-size: the shorter side fills the square, the longer is centre-cropped; the aspect ratio is always kept).")] = D["resize_size"],
    aug_scale: Annotated[float, typer.Option(help="Smallest area fraction kept by the random resized crop.")] = D["aug_scale"],
    rotation: Annotated[float, typer.Option(help="Largest random rotation of training images, in degrees.")] = D["rotation"],
    color_jitter: Annotated[float, typer.Option(help="Strength of random brightness, contrast and saturation changes.")] = D["color_jitter"],
    ema: Annotated[float, typer.Option(help="Decay per step of a moving average of the weights that validation sees and the checkpoint keeps (e.g. 0.99); 0 turns it off.")] = D["ema"],
    cache_views: Annotated[int, typer.Option(help="Passes over the training set cached when the backbone's start is frozen: the first plain, the rest augmented; epoch e uses view e mod N.")] = D["cache_views"],
    cache_engine: Annotated[str, typer.Option(help="What computes the cached frozen features: auto (onnxruntime on CPU, PyTorch on GPU), torch, onnxruntime.")] = D["cache_engine"],
    valid_fraction: Annotated[float, typer.Option(help="Share of photos held out for validation when DATA has no valid/ folder.")] = D["valid_fraction"],
    labels: Annotated[Optional[Path], typer.Option(help="cat_to_name.json mapping class ids to names (default: DATA/cat_to_name.json).")] = None,
    device: Annotated[str, typer.Option(help="auto (CUDA when present), cpu or cuda.")] = D["device"],
    amp: Annotated[bool, typer.Option(help="Mixed precision on CUDA (bf16 where supported).")] = D["amp"],
    workers: Annotated[Optional[int], typer.Option(help="Data-loading processes (default: 0 on CPU, up to 8 on CUDA).")] = D["workers"],
    seed: Annotated[int, typer.Option(help="Random seed: the same seed and data give the same model on a CPU.")] = D["seed"],
    resume: Annotated[Optional[Path], typer.Option(help="Continue a checkpoint: its weights, optimizer, scheduler and epoch.")] = None,
    plot: Annotated[Optional[Path], typer.Option(help="Write loss and accuracy curves per epoch to this PNG.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or epoch lines.")] = False,
    list_archs: Annotated[bool, typer.Option("--list-archs", help="List the backbones and exit.")] = False,
    debug: Annotated[bool, typer.Option(help="Show full tracebacks.")] = False,
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
        if not data:
            raise typer.BadParameter("DATA is required: a folder of photos, 'synthetic' or 'flowers102'")
        from flower_edge.train.loop import train

        config = TrainConfig(
            data=data, output=str(output), arch=arch, weights=weights, hidden=parse_hidden(hidden),
            dropout=dropout, mode="freeze" if freeze else "finetune", finetune_blocks=finetune_blocks,
            backbone_lr_scale=backbone_lr_scale, epochs=epochs, batch_size=batch_size, lr=lr,
            optimizer=optimizer, weight_decay=weight_decay, scheduler=scheduler, step_size=step_size,
            gamma=gamma, label_smoothing=label_smoothing, image_size=image_size, resize_size=resize_size,
            aug_scale=aug_scale, rotation=rotation, color_jitter=color_jitter, ema=ema, cache_views=cache_views, cache_engine=cache_engine,
            valid_fraction=valid_fraction, labels=str(labels) if labels else None, device=device, amp=amp,
            workers=workers, seed=seed,
        )
        with reporter:
            result = train(config, reporter, resume=str(resume) if resume else None)
        if not main_rank:
            return
        if plot:
            from flower_edge.train.plots import plot_history

            plot_history(result.history, result.best_epoch, plot)
    metrics = dict(result.card.metrics)
    if json_out:
        print(json.dumps({"checkpoint": str(result.checkpoint), "best_epoch": result.best_epoch,
                          "seconds": round(result.seconds, 1), "metrics": metrics,
                          "history": result.history}, indent=2))
    elif not quiet:
        top1 = metrics.get("valid_top1")
        best = f"best valid top-1 {top1:.2%} at epoch {result.best_epoch}; " if top1 is not None else ""
        test = f"test top-1 {metrics['test_top1']:.2%}; " if "test_top1" in metrics else ""
        err.print(f"{best}{test}wrote {result.checkpoint} in {result.seconds:.0f} s", highlight=False, soft_wrap=True)


if __name__ == "__main__":
    app()
