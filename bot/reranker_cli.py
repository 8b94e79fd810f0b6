"""`ragtune reranker`: build the second stage of search once per machine, and show what is built."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from tqdm import tqdm

from knowledge.errors import KnowledgeError
from knowledge.rerank import default_reranker_dir, reranker_info

reranker_cli = typer.Typer(
    help="The cross-encoder that reranks search results: build it once, show it.",
    no_args_is_help=True,
)


@reranker_cli.command("build")
def reranker_build(
    force: Annotated[
        bool, typer.Option("--force", help="Train again even if it is built.")
    ] = False,
) -> None:
    """Train the reranker into ~/.cache/ragtune/rerankers (about 34 minutes on 2 cores, once)."""
    from tuning.reranker import build_reranker, is_current

    folder = default_reranker_dir()
    if not force and is_current(folder):
        typer.echo(f"The reranker is built: {folder}")
        return
    typer.echo(
        "Training the reranker (about 34 minutes on 2 cores, once per machine; search works "
        "without it meanwhile)…",
        err=True,
    )
    with tqdm(desc="reranker", unit="step", file=sys.stderr) as bar:

        def advance(step: int, total: int) -> None:
            bar.total = total
            bar.update(step - bar.n)

        build_reranker(folder, progress=advance)
    typer.echo(f"The reranker is built: {folder}; use it with RAGTUNE_RERANKER=auto")


@reranker_cli.command("show")
def reranker_show() -> None:
    """Where the reranker is and how it was trained (JSON)."""
    folder = default_reranker_dir()
    try:
        info = reranker_info(folder)
    except KnowledgeError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps({"folder": str(folder), "trained_questions":
                           len(info.trained_question_ids), **info.details}, indent=2))  # fmt: skip
