"""The `ragtune` command: knowledge base, evaluation and diagnostics (the bot joins later)."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import platform
import secrets
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

import typer
from tqdm import tqdm

from bot import app as services
from bot.config import Settings, get_settings
from bot.core.answer import Answerer, Mode, Source
from bot.llm.engine import ModelError
from bot.logs import redact_secrets
from bot.models_cli import models_cli
from bot.offline import default_to_offline
from bot.reader_cli import reader_cli
from bot.reranker_cli import reranker_cli
from bot.state import StateStore
from knowledge.embeddings import SentenceTransformerEmbedder
from knowledge.errors import DocumentNotFoundError, KnowledgeError
from knowledge.ingest import DocumentResult, Outcome
from knowledge.parsers import one_line, path_text, printable
from knowledge.store import KnowledgeStore
from knowledge.web import is_web_address

if TYPE_CHECKING:
    from tuning.data import Example

default_to_offline()  # no model hub unasked: models come from PyPI packages or a path

cli = typer.Typer(
    name="ragtune",
    help="A local-first knowledge bot: RAG over SQLite, fine-tuning, and a way to measure both.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
kb_cli = typer.Typer(help="Manage the knowledge base.", no_args_is_help=True)
eval_cli = typer.Typer(
    help="Measure retrieval, answers, and base / fine-tuned / RAG / both, on a Q/A set.",
    no_args_is_help=True,
)
tune_cli = typer.Typer(help="Fine-tune LoRA adapters offline.", no_args_is_help=True)
adapters_cli = typer.Typer(help="List, show and remove LoRA adapters.", no_args_is_help=True)
cli.add_typer(kb_cli, name="kb")
cli.add_typer(eval_cli, name="eval")
cli.add_typer(tune_cli, name="tune")
cli.add_typer(adapters_cli, name="adapters")
cli.add_typer(models_cli, name="models")
cli.add_typer(reader_cli, name="reader")
cli.add_typer(reranker_cli, name="reranker")
AdapterOption = Annotated[
    str | None, typer.Option("--adapter", help="Answer with this LoRA adapter applied.")
]

DbOption = Annotated[
    Path | None, typer.Option("--db", help="Knowledge base file (default: RAGTUNE_DB).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
CollectionOption = Annotated[
    str,
    typer.Option(
        "--collection",
        help="The collection to act on (see `ragtune kb collections`).",
    ),
]

T = TypeVar("T")
GLOBAL = "global"
"""The collection every knowledge base starts with (knowledge.migrations.GLOBAL_COLLECTION)."""


def _print_json(value: object) -> None:
    typer.echo(json.dumps(value, ensure_ascii=False))


def _print_scores(scores: Mapping[str, float | int | None], as_json: bool) -> None:
    """One score per line; with --json the last line is the whole result as one JSON object."""
    for key, value in scores.items():
        typer.echo(f"{key:<13} {value}")
    if as_json:
        _print_json(scores)


def _status(message: str) -> None:
    """Progress and notes go to stderr so stdout stays machine-readable."""
    typer.echo(message, err=True)


def _existing_db(db: Path | None) -> Path:
    """The knowledge base file `db` (or RAGTUNE_DB), which must exist: a typo must not create
    an empty one that then answers nothing."""
    path = db or get_settings().db
    if not path.exists():
        raise KnowledgeError(
            f"There is no knowledge base at {path}: add documents with `ragtune kb add`, "
            "or give --db (or RAGTUNE_DB) the path of one."
        )
    return path


@contextmanager
def _store(db: Path | None, *, create: bool = False) -> Iterator[KnowledgeStore]:
    """The knowledge base at `db` (or RAGTUNE_DB); only `create` makes a new, empty file."""
    path = (db or get_settings().db) if create else _existing_db(db)
    store = services.open_store(get_settings(), path)
    try:
        yield store
    finally:
        store.close()


@kb_cli.command("add")
def kb_add(
    sources: Annotated[
        list[str], typer.Argument(help="Files, folders or http(s) addresses of web pages.")
    ],
    follow_links: Annotated[
        bool,
        typer.Option("--follow-links", help="Also add files that links in a folder lead out to."),
    ] = False,
    db: DbOption = None,
    collection: CollectionOption = GLOBAL,
) -> None:
    """Add or update documents (.txt .md .pdf .docx .html, .jsonl in the eval corpus format) and
    web pages (their main text; `kb sync` fetches them again)."""
    from knowledge.sync import add_url

    settings = get_settings()
    urls = [s for s in sources if is_web_address(s)]
    paths = [Path(s) for s in sources if not is_web_address(s)]
    if missing := [p for p in paths if not p.exists()]:
        raise KnowledgeError(f"There is no file or folder {path_text(str(missing[0]))}.")
    with _store(db, create=True) as store:
        ingestor = services.build_ingestor(
            settings, store, services.build_embedder(settings),
            collection=store.collection(collection).id,
        )  # fmt: skip
        with tqdm(desc="documents", unit="doc", file=sys.stderr) as bar:

            def progress(result: DocumentResult) -> None:
                bar.update(1)
                bar.set_postfix(embedded=result.chunks_embedded, refresh=False)
                if result.error:
                    bar.write(f"skipped: {one_line(result.error)}", file=sys.stderr)

            report = ingestor.add_paths(
                paths, added_by="cli", progress=progress, follow_links=follow_links
            )
            for url in urls:
                result = add_url(ingestor, url, services.web_settings(settings), added_by="cli")
                progress(result)
                report.results.append(result)
    counts = ", ".join(f"{report.count(o)} {o.value}" for o in Outcome)
    typer.echo(f"{counts}; {report.chunks_embedded} chunks embedded")
    if report.failures:
        raise typer.Exit(1)


@kb_cli.command("sync")
def kb_sync(
    folder: Annotated[
        Path | None,
        typer.Argument(
            help="The folder to mirror (without one, only web pages are checked).",
            exists=True,
            file_okay=False,
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would change; change nothing.")
    ] = False,
    follow_links: Annotated[
        bool,
        typer.Option(
            "--follow-links", help="Also sync files that links in the folder lead out to."
        ),
    ] = False,
    forget_many: Annotated[
        bool,
        typer.Option(
            "--forget-many",
            help="Forget the documents of missing files even if that is more than half of the "
            "folder's (without it such a sync forgets none: an unmounted share looks like that).",
        ),
    ] = False,
    db: DbOption = None,
    collection: CollectionOption = GLOBAL,
    as_json: JsonOption = False,
) -> None:
    """Make a collection hold what a folder holds (add new files, replace changed ones, forget
    those gone) and what its web pages say now (fetched again); safe to run from cron."""
    from knowledge.connection import database_file
    from knowledge.sync import merged, one_sync_at_a_time, sync_folder, sync_pages

    settings = get_settings()
    with _store(db, create=not dry_run) as store, ExitStack() as held:
        path = database_file(store.conn)
        if path is not None and not dry_run:  # a dry run changes nothing: it need not wait
            held.enter_context(one_sync_at_a_time(path, collection, folder))
        ingestor = services.build_ingestor(
            settings, store, services.build_embedder(settings),
            collection=store.collection(collection).id,
        )  # fmt: skip
        parts = [sync_pages(ingestor, services.web_settings(settings), dry_run=dry_run)]
        if folder is not None:
            synced = sync_folder(ingestor, folder, dry_run=dry_run, follow_links=follow_links,
                                 forget_many=forget_many)  # fmt: skip
            parts.insert(0, synced)
        report = merged(parts)
    verb = "would be " if dry_run else ""
    # Names come from files and their contents: one line each, whatever they hold.
    for result in report.ingest.results:
        if result.outcome in (Outcome.ADDED, Outcome.REPLACED):
            _status(f"{verb}{result.outcome.value}: {one_line(result.external_id)}")
        elif result.error:
            _status(f"skipped: {one_line(result.error)}")
    for document in report.forgotten:
        _status(f"{verb}forgotten: {one_line(document.external_id)}")
    counts = report.counts()
    if as_json:
        _print_json({"folder": report.folder, "collection": collection, "dry_run": dry_run,
                     **counts})  # fmt: skip
    else:
        typer.echo(
            f"{'dry run: ' if dry_run else ''}{counts['added']} added, {counts['replaced']} "
            f"replaced, {counts['unchanged']} unchanged, {counts['forgotten']} forgotten, "
            f"{counts['failed']} failed; {counts['chunks_embedded']} chunks "
            f"{'to embed' if dry_run else 'embedded'}"
        )
    if report.ingest.failures:
        raise typer.Exit(1)


@kb_cli.command("list")
def kb_list(
    db: DbOption = None, as_json: JsonOption = False, collection: CollectionOption = GLOBAL
) -> None:
    """List the documents of a collection."""
    with _store(db) as store:
        documents = store.list_documents(store.collection(collection).id)
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
    collection: CollectionOption = GLOBAL,
) -> None:
    """Remove a document and everything derived from it."""
    with _store(db) as store:
        wanted = store.collection(collection).id
        try:
            found = store.resolve_document(printable(document), wanted)
        except DocumentNotFoundError:
            if path_text(document) == printable(document):
                raise
            found = store.resolve_document(path_text(document), wanted)  # a file's source
        store.delete_document(found.id)
    typer.echo(f"forgot document {found.id} ({one_line(found.title)}, {found.chunks} chunks)")


@kb_cli.command("search")
def kb_search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    k: Annotated[int | None, typer.Option("--k", min=1, help="Chunks to return.")] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
    collection: CollectionOption = GLOBAL,
) -> None:
    """Hybrid (vector + keyword) search of a collection."""
    settings = get_settings()
    with _store(db) as store:
        wanted = store.collection(collection).id
        searcher = services.build_searcher(settings, store, services.build_embedder(settings))
        hits = searcher.search(printable(query), k=k or settings.search_k, collections=[wanted])
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
def kb_stats(
    db: DbOption = None,
    as_json: JsonOption = False,
    collection: Annotated[
        str | None,
        typer.Option("--collection", help="Count one collection only (default: all of them)."),
    ] = None,
) -> None:
    """Documents, chunks, bytes and the embedding model."""
    with _store(db) as store:
        stats = store.stats(None if collection is None else store.collection(collection).id)
        collections = len(store.collections())
    data = {
        "collections": collections,
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


@kb_cli.command("collections")
def kb_collections(
    new: Annotated[
        str | None, typer.Option("--new", help="Create this (empty) collection first.")
    ] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """List the collections (each chat of the bot searches the one it is bound to)."""
    with _store(db, create=new is not None) as store:
        if new is not None:
            store.create_collection(printable(new))
            _status(f"created collection {new}")
        collections = store.collections()
    if as_json:
        _print_json([{"id": c.id, "name": c.name, "documents": c.documents,
                      "created_at": c.created_at} for c in collections])  # fmt: skip
        return
    for c in collections:
        typer.echo(f"{c.name:<32} {c.documents:>6} documents")


@kb_cli.command("reindex")
def kb_reindex(
    db: DbOption = None,
    collection: Annotated[
        str | None,
        typer.Option(
            "--collection",
            help="Re-embed one collection in place, with the file's own model (default: every "
            "chunk into a new vector table, the only way to change the model).",
        ),
    ] = None,
) -> None:
    """Re-embed every chunk with the configured model (switches atomically at the end), or one
    collection in place."""
    from knowledge.reindex import reindex, reindex_collection

    settings = get_settings()
    with _store(db) as store:
        chosen = None if collection is None else store.collection(collection)
        total = store.stats(None if chosen is None else chosen.id).chunks
        embedder = services.build_embedder(settings)
        with tqdm(total=total, desc="chunks", unit="chunk", file=sys.stderr) as bar:
            if chosen is None:
                done = reindex(store, embedder, progress=bar.update)
            else:
                done = reindex_collection(store, embedder, chosen.id, progress=bar.update)
    typer.echo(f"re-embedded {done} chunks" + ("" if chosen is None else f" of {chosen.name}"))


@kb_cli.command("backup")
def kb_backup(
    path: Annotated[Path, typer.Argument(help="The new backup file.")], db: DbOption = None
) -> None:
    """A consistent copy of the live knowledge base, checked before it is kept."""
    with _store(db) as store:
        info = store.backup(path)
    typer.echo(f"backed up {info.documents} documents, {info.chunks} chunks to {info.path} "
               f"({info.bytes / 1e6:.1f} MB, integrity ok)")  # fmt: skip


@kb_cli.command("restore")
def kb_restore(
    path: Annotated[Path, typer.Argument(help="A file made by `kb backup` or /backup.")],
    db: DbOption = None,
) -> None:
    """Replace the knowledge base with a checked backup (the current one is backed up first)."""
    from knowledge.backup import restore

    target = db or get_settings().db
    info = restore(path, target)
    typer.echo(f"restored {info.documents} documents, {info.chunks} chunks into {target}")


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
    compare: Annotated[
        bool,
        typer.Option(
            "--compare", help="Score hybrid, keyword-only and vector-only search side by side."
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Ingest a corpus, ask every question, print recall@1/3/5/10, MRR@10 and latency.

    With RAGTUNE_RERANKER set, the reranked search is scored (with --compare, as `reranked`
    beside the others), on the questions the reranker did not train on."""
    from knowledge.evaluation import evaluate_retrieval, load_questions
    from knowledge.rerank import RerankingSearcher
    from knowledge.search import RETRIEVERS, HybridSearcher, Retriever

    settings = get_settings()
    asked = load_questions(questions)
    retrievers: list[Retriever | Literal["reranked"]] = list(
        RETRIEVERS if compare else RETRIEVERS[:1]
    )
    encoder = services.build_reranker(settings)
    if encoder is not None:
        trained = encoder.trained_question_ids
        kept = [q for q in asked if q.id not in trained]
        if len(kept) < len(asked):
            _status(f"Left out {len(asked) - len(kept)} questions the reranker was trained on.")
        asked = kept
        if compare:
            retrievers.append("reranked")
    results: dict[str, dict[str, float | int]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="ragtune-eval-") as tmp,
        _store(db or Path(tmp) / "eval.db", create=True) as store,
    ):
        embedder = services.build_embedder(settings)
        _ingest_corpus(store, embedder, corpus)
        for retriever in retrievers:
            first = services.build_first_stage(
                settings, store, embedder, "hybrid" if retriever == "reranked" else retriever
            )
            searcher: HybridSearcher | RerankingSearcher = first
            if encoder is not None and (retriever == "reranked" or not compare):
                searcher = services.rerank(settings, first, encoder)
            try:
                with tqdm(total=len(asked), desc=retriever, unit="q", file=sys.stderr) as bar:
                    scores = evaluate_retrieval(
                        searcher, asked, depth=k, progress=lambda: bar.update(1)
                    )
            finally:
                searcher.close()
            results[retriever] = scores.as_dict()
    if compare:
        _print_comparison(results, as_json)
    else:
        _print_scores(results["hybrid"], as_json)


def _print_comparison(results: dict[str, dict[str, float | int]], as_json: bool) -> None:
    """A table of retrievers by score; with --json the last line is one object by retriever."""
    keys = list(next(iter(results.values())))
    typer.echo(f"{'retriever':<10}" + "".join(f"{key:>11}" for key in keys))
    for retriever, scores in results.items():
        typer.echo(f"{retriever:<10}" + "".join(f"{scores[key]:>11}" for key in keys))
    if as_json:
        _print_json(results)


ModeOption = Annotated[
    Mode, typer.Option("--mode", help="rag: retrieve sources; base: no retrieval.")
]


@contextmanager
def _answerer(
    mode: Mode, db: Path | None, *, chat: bool = False, adapter: str | None = None
) -> Iterator[Answerer]:
    """Model (with `adapter` applied), worker and (for RAG) the knowledge base, closed on exit."""
    settings = get_settings()
    if mode is Mode.RAG:
        _existing_db(db)  # said before the model takes seconds to load
    served = services.served_model(settings)
    worker = services.build_worker(settings, services.build_engine(settings, served))
    state = StateStore.open(settings.state_db) if chat else None
    answering = services.answer_settings(settings, served.profile if served else None)
    try:
        if adapter is not None:
            services.build_adapter_switcher(settings, worker, served=served).use(adapter)
        if mode is Mode.BASE:
            yield Answerer(worker, None, state=state, settings=answering)
            return
        with _store(db) as store:
            searcher = services.build_searcher(settings, store, services.build_embedder(settings))
            reader = services.build_reader(settings)
            yield Answerer(worker, searcher, state=state, settings=answering, reader=reader)
    finally:
        worker.close()
        if state is not None:
            state.close()


def _trained_ids(settings: Settings, mode: Mode, adapter: str | None) -> frozenset[str]:
    """The questions the span reader answering in `mode` was trained on (none: no reader)."""
    if mode is not Mode.RAG or adapter is not None:
        return frozenset()  # the chat model answers: the reader's training does not count
    reader = services.build_reader(settings)
    return reader.info.trained_question_ids if reader is not None else frozenset()


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
    adapter: AdapterOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Answer a question with the local model, streaming it, then quote the evidence and list
    the sources."""
    question = printable(question)
    chat_key = f"terminal:{printable(chat)}" if chat else None
    with _answerer(mode, db, chat=chat_key is not None, adapter=adapter) as answerer:
        if reset and answerer.state is not None and chat_key is not None:
            answerer.state.reset(chat_key)
        run = answerer.begin(question, mode=mode, chat_key=chat_key)
        if not as_json:
            for piece in run.pieces():
                sys.stdout.write(piece)
                sys.stdout.flush()
        answer = run.answer()
    if as_json:
        done = answer.completion
        _print_json(
            {
                "answer": answer.model_text or answer.text,  # the model's own words
                "reply": answer.text,  # what a reader is shown (bot.core.support)
                "unsupported": answer.unsupported or None,
                "by": "reader" if answer.by_reader else "model",  # who gave `answer`
                "mode": answer.mode.value,
                "sources": [_source_dict(s) for s in answer.sources],
                "cited": [s.number for s in answer.cited],
                "evidence": answer.evidence,
                "tokens": done.tokens if done else 0,
                "first_token_s": done.first_token_s if done else None,
                "generation_s": done.generation_s if done else None,
            }
        )
        return
    if run.job is None:  # a refusal: nothing was streamed
        typer.echo(answer.text, nl=False)
    typer.echo()
    if answer.quoted:  # the streamed words did not hold up: the sources are the reply
        typer.echo(f"\n(Not supported by the sources: {answer.unsupported}.) The sources say:")
        typer.echo(f"  {answer.text}")
    elif answer.evidence:
        typer.echo("\nEvidence:")
        for sentence in answer.evidence:
            typer.echo(f"  “{sentence}”")
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
    adapter: AdapterOption = None,
    db: EvalDbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Answer every question; print EM, F1, answer-contains (x100), evidence and reply scores,
    latency."""
    from bot.core.answer_eval import evaluate_answers, held_out
    from knowledge.evaluation import load_questions

    settings = get_settings()
    asked, trained = held_out(load_questions(questions), _trained_ids(settings, mode, adapter))
    asked = asked[:limit]
    with tempfile.TemporaryDirectory(prefix="ragtune-eval-") as tmp:
        kb = db or Path(tmp) / "eval.db"
        if mode is Mode.RAG:
            with _store(kb, create=True) as store:
                _ingest_corpus(store, services.build_embedder(settings), corpus)
        with (
            _answerer(mode, kb, adapter=adapter) as answerer,
            tqdm(
                total=len(asked), desc=f"answers ({mode.value})", unit="q", file=sys.stderr
            ) as bar,
        ):
            scores = evaluate_answers(answerer, asked, mode=mode, progress=lambda: bar.update(1))
    if trained and not as_json:
        _status(f"Left out {trained} questions the span reader was trained on.")
    _print_scores({**scores.as_dict(), "left_out_trained": trained}, as_json)


@eval_cli.command("compare")
def eval_compare(
    corpus: CorpusOption,
    questions: QuestionsOption,
    adapter: Annotated[str, typer.Option("--adapter", help="The fine-tuned adapter to compare.")],
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Only the first N questions.")
    ] = None,
    skip: Annotated[int, typer.Option("--skip", min=0, help="Skip the first N questions.")] = 0,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write a bar chart PNG here.")] = None,
    db: EvalDbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Base, fine-tuned, RAG and RAG + fine-tuned side by side: EM, F1, answer-contains, p50."""
    from bot.core.answer_eval import held_out
    from bot.core.compare import GENERAL_PROBE, MODES, compare, general_knowledge, table
    from bot.core.compare import plot as plot_chart
    from knowledge.evaluation import load_questions

    settings = get_settings()
    asked, _ = held_out(load_questions(questions), _trained_ids(settings, Mode.RAG, None))
    asked = asked[skip:][:limit]
    with tempfile.TemporaryDirectory(prefix="ragtune-compare-") as tmp:
        kb = db or Path(tmp) / "eval.db"
        with _store(kb, create=True) as store:
            _ingest_corpus(store, services.build_embedder(settings), corpus)
        with (
            _answerer(Mode.RAG, kb) as answerer,
            tqdm(total=len(asked) * len(MODES), desc="compare", unit="q", file=sys.stderr) as bar,
        ):
            switcher = services.build_adapter_switcher(settings, answerer.worker)
            results = compare(answerer, switcher, asked, adapter, progress=lambda: bar.update(1))
            _status(f"forgetting probe: {GENERAL_PROBE.name}, base vs {adapter}")
            general = general_knowledge(answerer, switcher, adapter)
    typer.echo(table(results, general))
    if plot is not None:
        plot_chart(results, plot, f"{questions.name}, {len(asked)} questions, adapter {adapter}")
        typer.echo(f"chart: {plot}")
    if as_json:
        keyed: dict[str, dict[str, float | int | None]] = {
            n: s.as_dict() for n, s in results.items()
        }
        keyed["base"]["general"] = round(general.base, 2)
        keyed["fine-tuned"]["general"] = round(general.tuned, 2)
        _print_json(keyed)


@tune_cli.command("train")
def tune_train(
    data: Annotated[Path, typer.Option("--data", help="Q/A JSONL: question, answer[, context].")],
    name: Annotated[str, typer.Option("--name", help="The adapter's name.")],
    steps: Annotated[
        int | None,
        typer.Option("--steps", min=1, help="Optimizer steps (default: --epochs, at least 60)."),
    ] = None,
    epochs: Annotated[float, typer.Option("--epochs", min=0.01, help="Passes over the data.")] = 3,
    rank: Annotated[int, typer.Option("--rank", min=1, help="LoRA rank.")] = 8,
    alpha: Annotated[int, typer.Option("--alpha", min=1, help="LoRA alpha.")] = 16,
    lr: Annotated[
        float | None,
        typer.Option(
            "--lr", min=0, help="Learning rate (default: 1e-3 under 200 rows, else 2e-4)."
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 8,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    time_budget: Annotated[
        float | None, typer.Option("--time-budget", min=1, help="Stop after this many seconds.")
    ] = None,
    general: Annotated[
        int,
        typer.Option(
            "--general",
            min=0,
            max=40,  # tuning/general_questions.txt holds 40
            help="Base-model answers to general questions mixed in (0-40).",
        ),
    ] = 40,
    corpus: Annotated[
        Path | None,
        typer.Option("--corpus", help="Passages (id, title, text) for rows with positive_ids."),
    ] = None,
    base: Annotated[
        Path | None,
        typer.Option(
            "--base", help="HF checkpoint folder of the served model (default: its GGUF)."
        ),
    ] = None,
    documents: Annotated[
        Path | None,
        typer.Option(
            "--documents", help="Also learn this knowledge base's text (continued pre-training)."
        ),
    ] = None,
    replace: Annotated[bool, typer.Option("--replace", help="Overwrite an adapter.")] = False,
    grounded: Annotated[
        bool,
        typer.Option(
            "--grounded",
            help="Train on the serving prompt: each question with the chunks retrieved for it "
            "from --corpus (ingested into a scratch knowledge base) or --documents (then the "
            "knowledge base searched, not text to learn).",
        ),
    ] = False,
    gold_share: Annotated[
        float,
        typer.Option(
            "--gold-share",
            min=0,
            max=1,
            help="Grounded: share of questions asked with their answer; the rest teach \"I don't "
            'know." (with --negatives answer-removed, beside the same question with the answer).',
        ),
    ] = 0.9,
    negatives: Annotated[
        str,
        typer.Option(
            "--negatives",
            help='Grounded: sources of the "I don\'t know." prompts: the nearest chunks of other '
            "titles than the answer's (other-titles), or of any other document (nearest), or the "
            "answer's own chunk with the sentences holding the answer taken out (answer-removed).",
        ),
    ] = "other-titles",
    reply: Annotated[
        str,
        typer.Option(
            "--reply",
            help="Grounded: what an answerable prompt teaches: the source sentence holding the "
            "answer (auto, sentence), its clause (clause), or the answer alone (span: best for "
            "EM/F1 on data like the training's, worse on other kinds of documents).",
        ),
    ] = "auto",
    excerpts: Annotated[
        float,
        typer.Option(
            "--excerpts",
            min=0,
            max=1,
            help="Grounded: share of sources cut to a random run of their sentences (the answer's "
            "kept), so that short documents are answered too, not only long ones.",
        ),
    ] = 0.5,
    check: Annotated[
        bool,
        typer.Option(
            "--check/--no-check",
            help="Afterwards, ask the adapter its training questions and the general probe.",
        ),
    ] = True,
) -> None:
    """Train a LoRA adapter for the served model on the CPU, export it to GGUF and register it."""
    from bot.llm.adapters import AdapterRegistry
    from tuning.architectures import architecture, check_exportable

    settings = get_settings()
    served = services.served_model_path(settings)
    if served is None:
        raise ModelError("Fine-tuning needs the in-process GGUF model (RAGTUNE_LLM_BACKEND=llama).")
    check_exportable(architecture(base or served))  # in a second, before torch is imported
    from tuning.train import TrainSettings, train

    examples, grounding = None, None
    if grounded:
        if (corpus is None) == (documents is None):
            raise typer.BadParameter("--grounded needs --corpus or --documents (one of them).")
        examples, grounding = _grounded_data(
            settings, data, corpus, documents, gold_share, negatives, reply, excerpts, seed
        )
        documents = None  # searched for the prompts, not learned as text
    result = train(
        TrainSettings(
            data=data, name=name, base=base or served, served_model=served, corpus=corpus,
            steps=steps, epochs=epochs, rank=rank, alpha=alpha, learning_rate=lr,
            batch_size=batch_size, seed=seed, time_budget_s=time_budget, general=general,
            documents=documents, replace=replace,
            rag_prompt=services.answer_settings(settings).rag_prompt,
            bases_dir=settings.bases_dir, model_threads=settings.model_threads,
            grounding=grounding, check=check,
        ),
        AdapterRegistry(settings.adapters_dir),
        examples,
    )  # fmt: skip
    validation = f"{result.validation_loss:.4f}" if result.validation_loss is not None else "-"
    typer.echo(
        f"adapter {name}: {result.steps} steps in {result.seconds} s, loss "
        f"{result.first_loss:.4f} → {result.last_loss:.4f}, validation loss {validation}\n"
        f'saved in {result.adapter_dir}; try `ragtune ask --adapter {name} "..."`'
    )
    if result.check is not None:
        done = result.check
        typer.echo(
            f"recall on {done.asked} training questions: {done.recall:.0f} %; general-knowledge "
            f"probe ({done.probe_questions} questions): base model {done.probe_base:.0f} %, with "
            f"{name} {done.probe_tuned:.0f} %\n{done.verdict()}"
        )


def _grounded_data(
    settings: Settings,
    data: Path,
    corpus: Path | None,
    documents: Path | None,
    gold_share: float,
    negatives: str,
    reply: str,
    excerpts: float,
    seed: int,
) -> tuple[list[Example], dict[str, object]]:
    """`data`'s questions in serving prompts, with the chunks the bot's own retriever finds for
    them in `documents` or in `corpus` ingested into a scratch knowledge base."""
    from dataclasses import asdict

    from tuning.grounded import NEGATIVES, REPLIES, Grounding, grounded_examples, load_rows

    if negatives not in NEGATIVES:
        raise typer.BadParameter(f"--negatives is one of {', '.join(NEGATIVES)}.")
    if reply not in REPLIES:
        raise typer.BadParameter(f"--reply is one of {', '.join(REPLIES)}.")
    if documents is not None:
        _existing_db(documents)  # before anything is loaded
    rows = load_rows(data)
    answering = services.answer_settings(settings)
    grounding = Grounding(
        sources=answering.search_k,
        context_tokens=answering.context_tokens,
        rag_prompt=answering.rag_prompt,
        gold_share=gold_share,
        negatives=negatives,
        reply=reply,
        excerpts=excerpts,
        seed=seed,
    )
    # The served model's tokenizer counts the sources' tokens, as the bot does when it packs them.
    engine = services.build_engine(settings.model_copy(update={"llm_backend": "llama"}))
    embedder = services.build_embedder(settings)
    with tempfile.TemporaryDirectory() as scratch:
        if documents is not None:
            store = services.open_store(settings, documents)
        else:
            assert corpus is not None
            _status(f"grounding: indexing {corpus} in a scratch knowledge base")
            store = services.open_store(settings, Path(scratch) / "corpus.db")
            report = services.build_ingestor(settings, store, embedder).add_paths([corpus])
            failed = report.failures
            if failed:
                store.close()
                raise KnowledgeError(f"{corpus} could not be indexed: {failed[0].error}")
        try:
            chunks = [chunk for batch in store.iter_chunks() for chunk in batch]
            searcher = services.build_searcher(settings, store, embedder)
            built = grounded_examples(rows, searcher, chunks, engine.count_tokens, grounding)
        finally:
            store.close()
    _status(
        f"grounding: {built.with_answer} prompts hold the answer, {built.without_answer} only "
        f"distractors, {built.skipped} questions found in no chunk (left out)"
    )
    return built.examples, asdict(grounding)


@adapters_cli.command("list")
def adapters_list(as_json: JsonOption = False) -> None:
    """The adapters in RAGTUNE_ADAPTERS_DIR."""
    from bot.llm.adapters import AdapterRegistry

    found = AdapterRegistry(get_settings().adapters_dir).list()
    if as_json:
        _print_json([a.manifest.model_dump() for a in found])
        return
    for a in found:
        m = a.manifest
        typer.echo(f"{m.name:<24} rank {m.rank:<3} {m.dataset_examples:>6} examples  {m.created}")
    if not found:
        typer.echo("no adapters yet: `ragtune tune train --data QA.jsonl --name NAME`")


@adapters_cli.command("show")
def adapters_show(name: Annotated[str, typer.Argument(help="Adapter name.")]) -> None:
    """An adapter's manifest."""
    from bot.llm.adapters import AdapterRegistry

    adapter = AdapterRegistry(get_settings().adapters_dir).get(name)
    typer.echo(adapter.manifest.model_dump_json(indent=2))


@adapters_cli.command("remove")
def adapters_remove(name: Annotated[str, typer.Argument(help="Adapter name.")]) -> None:
    """Delete an adapter."""
    from bot.llm.adapters import AdapterRegistry

    AdapterRegistry(get_settings().adapters_dir).remove(name)
    typer.echo(f"removed adapter {name}")


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


@cli.command()
def run() -> None:
    """Start the Telegram bot (long polling, or a webhook); without a token, say what to set."""
    from telegram.error import InvalidToken

    from bot.core.errors import ServeError
    from bot.tg.serve import Server
    from bot.tg.webhook import WebhookConfig

    settings = get_settings()
    token = settings.telegram_bot_token
    if token is None:
        typer.echo(services.NO_TOKEN, err=True)
        raise typer.Exit(2)
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
    secret = secret or secrets.token_urlsafe(32)
    redact_secrets([token.get_secret_value(), secret])
    logging.getLogger().setLevel(logging.INFO)
    logging.getLogger("sentence_transformers").setLevel(logging.WARNING)
    # Local faults (model, databases, adapter, embedder folder) first: they are said in one
    # line even when Telegram cannot be reached, and nothing is asked of Telegram before.
    local = services.open_local_services(settings)
    application = services.build_application(
        settings, lambda: services.finish_bot_services(settings, local)
    )
    webhook = (
        WebhookConfig(settings.webhook_url, settings.webhook_listen, settings.webhook_port, secret)
        if settings.webhook_url
        else None
    )
    server = Server(application, settings.telegram_api_url, webhook)
    try:
        with asyncio.Runner() as runner:  # cancels what is left and closes the loop at the end
            for stop_signal in (signal.SIGINT, signal.SIGTERM):
                runner.get_loop().add_signal_handler(stop_signal, server.stop)
            runner.run(server.run())
    except InvalidToken:
        typer.echo(
            "error: Telegram refused the bot token: check TELEGRAM_BOT_TOKEN (from @BotFather).",
            err=True,
        )
        raise typer.Exit(1) from None
    except ServeError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        local.close()  # whatever happened: also when Telegram never answered


@cli.command()
def serve(
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to listen on.")] = (
        8080
    ),
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on (0.0.0.0: other machines too).")
    ] = "127.0.0.1",
    no_key: Annotated[
        bool,
        typer.Option(
            "--no-key",
            help="Serve without an API key: anyone who can reach the port can use the model.",
        ),
    ] = False,
) -> None:
    """Serve the configured model with llama.cpp's llama-server (parallel slots, every adapter
    made for it), for bots that use RAGTUNE_LLM_BACKEND=openai; print their .env lines.

    It asks for an API key (RAGTUNE_OPENAI_API_KEY, else one it makes and keeps in
    RAGTUNE_SERVE_KEY_FILE) and lets browsers in only from RAGTUNE_SERVE_CORS_ORIGINS."""
    import os

    from bot.llm.adapters import AdapterRegistry
    from bot.llm.server import (
        adapters_for,
        bot_settings,
        find_llama_server,
        llama_server_command,
        serve_key,
        server_threads,
    )

    settings = get_settings()
    served = services.served_model(settings.model_copy(update={"llm_backend": "llama"}))
    assert served is not None  # the in-process backend always names a model file
    binary = find_llama_server(settings.llama_server)
    adapters = adapters_for(AdapterRegistry(settings.adapters_dir), served.info.path)
    command = llama_server_command(
        binary, served.info.path, host=host, port=port, slots=settings.serve_slots,
        context_window=settings.context_window,
        threads=server_threads(settings.serve_threads),
        adapters=[a.path for a in adapters], chat_template=settings.chat_template,
        cors_origins=settings.serve_cors_origins,
    )  # fmt: skip
    _status(
        f"serving {served.info.summary()} with {settings.serve_slots} slots, "
        f"{server_threads(settings.serve_threads)} threads and "
        f"{len(adapters)} adapters ({', '.join(a.name for a in adapters) or 'none'}) on "
        f"{host}:{port}; a bot uses it with these lines in its .env:"
    )
    for line in bot_settings(host, port, settings.context_window):
        typer.echo(line)
    env = {k: v for k, v in os.environ.items() if k != "LLAMA_API_KEY"}
    # The key goes through the environment: never on the command line, which `ps` shows.
    if no_key:
        _status("warning: no API key (--no-key): anyone who can reach the port can use the model")
    elif settings.openai_api_key is not None:
        env["LLAMA_API_KEY"] = settings.openai_api_key.get_secret_value()
        typer.echo("RAGTUNE_OPENAI_API_KEY=(the same key as here)")
    else:
        env["LLAMA_API_KEY"] = serve_key(settings.serve_key_file)
        typer.echo(f"RAGTUNE_OPENAI_API_KEY={env['LLAMA_API_KEY']}")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(binary, command, env)  # llama-server takes the process over: signals go to it


@cli.command()
def chat(db: DbOption = None) -> None:
    """Talk to the real bot from the terminal, as an admin, through the local Bot API emulator."""
    from bot.local.chat import chat as chat_loop

    settings = get_settings()
    if db is not None:
        settings = settings.model_copy(update={"db": db})
    asyncio.run(chat_loop(settings))


@cli.command()
def doctor() -> None:
    """Print versions and paths of everything ragtune depends on."""
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
    try:
        served = services.served_model(settings)
    except ModelError as exc:
        rows.append(("chat model", f"not usable: {exc}"))
    else:
        if served is None:
            rows.append(("chat model", f"{settings.openai_model} at {settings.openai_base_url}"))
        else:
            rows.append(("chat model", served.info.summary()))
            rows.append(("chat model file", served.info.path))
            rows.append(("chat model sha256", served.info.sha256))
            rows.append(("prompt profile", served.profile.name))
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
        typer.echo(f"error: {printable(str(exc))}", err=True)
        sys.exit(1)
    except Exception as exc:
        if (sentence := _storage_failure(exc)) is None:
            raise
        typer.echo(f"error: {sentence}", err=True)
        sys.exit(1)


def _storage_failure(error: Exception) -> str | None:
    """One sentence for a full disk or an unwritable file (None for any other error)."""
    from knowledge.connection import is_storage_failure

    if is_storage_failure(error):
        return f"a database could not be written ({error}); free some space, then try again."
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
        return f"could not write {printable(str(error.filename))}: {error.strerror}."
    return None


if __name__ == "__main__":
    main()
