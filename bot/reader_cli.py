"""`ragtune reader`: build the span reader once per machine, and show what is built."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from tqdm import tqdm

from bot.llm.engine import ModelError
from bot.llm.span_reader import default_reader_dir, reader_info

reader_cli = typer.Typer(
    help="The span reader that answers from the sources: build it once, show it.",
    no_args_is_help=True,
)


@reader_cli.command("build")
def reader_build(
    force: Annotated[
        bool, typer.Option("--force", help="Train again even if it is built.")
    ] = False,
) -> None:
    """Train the span reader into ~/.cache/ragtune/readers (about 9 minutes on 2 cores, once)."""
    from tuning.reader import build_reader, is_current

    folder = default_reader_dir()
    if not force and is_current(folder):
        typer.echo(f"The span reader is built: {folder}")
        return
    typer.echo(
        "Training the span reader (about 9 minutes on 2 cores, once per machine; the bot works "
        "without it meanwhile)…",
        err=True,
    )
    with tqdm(desc="span reader", unit="step", file=sys.stderr) as bar:

        def advance(step: int, total: int) -> None:
            bar.total = total
            bar.update(step - bar.n)

        build_reader(folder, progress=advance)
    typer.echo(f"The span reader is built: {folder}")


@reader_cli.command("show")
def reader_show() -> None:
    """Where the span reader is and how it was trained (JSON)."""
    folder = default_reader_dir()
    try:
        info = reader_info(folder)
    except ModelError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps({"folder": str(folder), "trained_questions":
                           len(info.trained_question_ids), **info.details}, indent=2))  # fmt: skip
