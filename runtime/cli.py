"""flower-run: top-k prediction with onnxruntime, no torch (arrives with the runtime issue)."""

import typer

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command(help="Predict the top-k flowers of images with an exported model (not yet available).")
def main(model: str = typer.Argument("", help="model.onnx written by flower-export.")) -> None:
    typer.echo("flower-run: not yet available in this version of flower-edge", err=True)
    raise typer.Exit(2)
