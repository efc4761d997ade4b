"""A command's options, declared once: each field of its config dataclass is its option.

    @dataclass(frozen=True)
    class BenchConfig:
        data: str = option(MISSING, "The photos.", cli_type=Path, parse=str)
        threads: int = option(2, "Threads for every format.")

    def main(json_out: JsonFlag = False, quiet: QuietFlag = False, debug: DebugFlag = False, **options):
        config = build(BenchConfig, options)

    app.command(help=...)(with_options(main, BenchConfig))

``option`` puts the default and the --help text on the field; where the command line spells it
otherwise it also says how: ``flags`` ("--output", "-o"), ``cli_type`` with ``parse`` (command line
value -> field value) and ``shown`` (field default -> command line default), ``typer`` (more of
typer.Option's arguments: ``{"min": 2, "max": 20}``), ``argument`` for a
positional one, ``required`` (else a field without a default is "" until the command checks it),
``show_default``. flower-train, flower-export and flower-bench are made this way, so
an option, its default, its check (the dataclass's ``__post_init__``) and its record (the config
stored beside the results) can never disagree.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import MISSING, field, fields
from pathlib import Path
from typing import Annotated, Any, get_type_hints

import typer

JsonFlag = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
QuietFlag = Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines.")]
DebugFlag = Annotated[bool, typer.Option(help="Show full tracebacks.")]


def option(default: Any, help: str, **cli: Any) -> Any:
    """A config field and its command-line option in one declaration (see the module's docstring)."""
    if callable(default) and cli.pop("factory", False):
        return field(default_factory=default, metadata={"help": help, **cli})
    return field(default=default, metadata={"help": help, **cli})


def path_or_none(value: Path | None) -> str | None:
    """``parse`` of an optional path option: the field keeps a string, or None."""
    return str(value) if value else None


def parameters(cls: type) -> list[inspect.Parameter]:
    """The command's parameters for the fields of ``cls`` that carry a help text, in field order."""
    hints = get_type_hints(cls)
    out = []
    for f in fields(cls):
        meta = f.metadata
        if "help" not in meta:
            continue
        if meta.get("argument"):
            info = typer.Argument(help=meta["help"], show_default=False)
        else:
            info = typer.Option(
                *meta.get("flags", ()),
                help=meta["help"],
                show_default=meta.get("show_default", True),
                **meta.get("typer", {}),
            )
        if f.default is not MISSING:
            default = meta.get("shown", _same)(f.default)
        elif f.default_factory is not MISSING:
            default = meta.get("shown", _same)(f.default_factory())
        else:
            default = ... if meta.get("required") else ""  # "": the command says what is missing
        annotation = Annotated[meta.get("cli_type", hints[f.name]), info]  # type: ignore[valid-type]  # built at run time
        out.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation))
    return out


def build(cls: type, options: dict[str, Any]):
    """The config that the command line's option values describe."""
    return cls(**{f.name: f.metadata.get("parse", _same)(options[f.name]) for f in fields(cls) if f.name in options})


def with_options(main: Callable, *classes: type) -> Callable:
    """``main`` (whose ``**options`` receives the options of ``classes``) with the signature typer
    reads: each config's options in turn, then ``main``'s own."""
    own = [
        p.replace(kind=p.KEYWORD_ONLY)
        for p in inspect.signature(main, eval_str=True).parameters.values()
        if p.kind is not p.VAR_KEYWORD
    ]
    made = [p for cls in classes for p in parameters(cls)]
    main.__signature__ = inspect.Signature(made + own)  # type: ignore[attr-defined]
    return main


def _same(value: Any) -> Any:
    return value
