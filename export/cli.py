"""flower-export: checkpoint -> TorchScript, ONNX and int8 ONNX (arrives with the export issue)."""

import typer

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command(help="Export a flower-edge checkpoint to TorchScript, ONNX and int8 ONNX (not yet available).")
def main(checkpoint: str = typer.Argument("", help="Checkpoint written by flower-train.")) -> None:
    typer.echo("flower-export: not yet available in this version of flower-edge", err=True)
    raise typer.Exit(2)
