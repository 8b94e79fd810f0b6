"""Composition root: every service built from Settings, then the bot's PTB Application.

Read this first. `open_local_services` opens what can fail locally (the model, both databases,
the active adapter, the embedder's folder); `finish_bot_services` builds the core on top (search,
answering, the chat and admin services) and hands it to the Telegram layer as `BotServices`;
`build_application` registers the handlers (bot.tg.register). A question then goes
bot.tg.handlers → bot.core.chat.ChatService → bot.core.answer → (knowledge search, the model's
worker). Tests build this same wiring with a scripted engine and a hashing embedder (`Backends`).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bot.config import Settings
from bot.core.access import AccessMode, AccessPolicy, AccessSettings
from bot.core.adapters import AdapterSwitcher
from bot.core.admin import AdminService
from bot.core.answer import Answerer, AnswerSettings, Reader
from bot.core.bindings import ChatBindings
from bot.core.chat import ChatService
from bot.core.compare import ComparisonRunner
from bot.core.page_fetches import PageFetches
from bot.core.profiles import PromptProfile, profile_for
from bot.llm import catalogue
from bot.llm.adapters import AdapterRegistry
from bot.llm.engine import ChatEngine, GenerationLimits, ModelError
from bot.llm.model_info import ModelInfo, read_model_info
from bot.llm.span_reader import MANIFEST, SpanReader, default_reader_dir
from bot.llm.worker import ModelWorker
from bot.state import StateStore
from knowledge.embeddings import Embedder, SentenceTransformerEmbedder
from knowledge.ingest import Ingestor
from knowledge.migrations import GLOBAL_COLLECTION
from knowledge.rerank import MANIFEST as RERANKER_MANIFEST
from knowledge.rerank import (
    CrossEncoder,
    RerankingSearcher,
    RerankSettings,
    default_reranker_dir,
)
from knowledge.sandbox import ParseLimits
from knowledge.search import HybridSearcher, Retriever, SearchSettings
from knowledge.store import KnowledgeStore
from knowledge.web import WebSettings

if TYPE_CHECKING:
    from telegram.ext import Application

    from bot.tg.context import BotServices

log = logging.getLogger(__name__)
ServicesFactory = Callable[[], "tuple[BotServices, Callable[[], None]]"]
"""Opens the bot's services (in post_init) and returns them with the function that closes them."""


@dataclass(frozen=True)
class Backends:
    """The heavy parts, built from Settings unless given here. Tests give a scripted engine and
    a hashing embedder and get the real wiring around them; nothing else differs."""

    engine: ChatEngine | None = None
    """The chat model (None: the one Settings name, loaded and warmed)."""
    embedder: Embedder | None = None
    """The embedder (None: the configured sentence-transformers model)."""
    served_model: Path | None = None
    """With `engine`: the GGUF file adapters are checked against (None: adapters refused)."""
    reader: Reader | None = None
    """The span reader; with a given engine only this one (None: none), else RAGTUNE_READER's."""


def build_embedder(settings: Settings) -> SentenceTransformerEmbedder:
    """The configured sentence-transformers embedder (the packaged one by default)."""
    return SentenceTransformerEmbedder(
        settings.embedding_model,
        threads=settings.embedding_threads,
        batch_size=settings.embedding_batch_size,
    )


def build_reader(settings: Settings) -> SpanReader | None:
    """The span reader: the one `make reader` built (auto, when there is one), a folder, or
    none (off). A configured folder that holds no reader is said in one sentence."""
    match settings.reader.strip().lower():
        case "off" | "none" | "":
            return None
        case "auto":
            folder = default_reader_dir()
            if not (folder / MANIFEST).is_file():
                log.info("no span reader is built (`make reader`): the chat model answers alone")
                return None
            return SpanReader(folder)
        case _:
            return SpanReader(Path(settings.reader).expanduser())


def open_store(settings: Settings, db: Path | None = None) -> KnowledgeStore:
    """Open the knowledge base at `db`, or at RAGTUNE_DB."""
    return KnowledgeStore.open(db or settings.db)


def build_ingestor(
    settings: Settings,
    store: KnowledgeStore,
    embedder: Embedder,
    *,
    collection: int = GLOBAL_COLLECTION,
) -> Ingestor:
    """An Ingestor with the configured chunking and size cap, writing to `collection`."""
    return Ingestor(
        store,
        embedder,
        chunk_chars=settings.chunk_chars,
        overlap_chars=settings.chunk_overlap_chars,
        max_bytes=settings.max_document_bytes,
        embed_batch=settings.ingest_batch_chunks,
        max_chunks=settings.max_chunks_per_document,
        parse_limits=ParseLimits(
            memory_mb=settings.parse_memory_mb,
            cpu_s=settings.parse_cpu_s,
            max_chars=settings.parse_max_chars,
        ),
        collection=collection,
    )


def web_settings(settings: Settings) -> WebSettings:
    """The limits of a page fetch."""
    return WebSettings(
        timeout_s=settings.web_timeout_s,
        max_bytes=settings.max_document_bytes,
        max_redirects=settings.web_max_redirects,
        allow_private=settings.web_allow_private,
        trusted_hosts=frozenset(settings.web_trusted_hosts),
    )


def build_searcher(
    settings: Settings,
    store: KnowledgeStore,
    embedder: Embedder,
    retriever: Retriever = "hybrid",
) -> HybridSearcher | RerankingSearcher:
    """The configured search: hybrid (or one retriever alone), reranked when RAGTUNE_RERANKER
    names a reranker and the retriever is hybrid."""
    first = build_first_stage(settings, store, embedder, retriever)
    encoder = build_reranker(settings) if retriever == "hybrid" else None
    if encoder is None:
        return first
    return rerank(settings, first, encoder)


def build_first_stage(
    settings: Settings,
    store: KnowledgeStore,
    embedder: Embedder,
    retriever: Retriever = "hybrid",
) -> HybridSearcher:
    """A HybridSearcher with the configured fusion settings (or one retriever alone)."""
    return HybridSearcher(
        store,
        embedder,
        SearchSettings(
            candidates=settings.search_candidates,
            vector_weight=settings.vector_weight,
            keyword_weight=settings.keyword_weight,
            retriever=retriever,
        ),
    )


def rerank(settings: Settings, first: HybridSearcher, encoder: CrossEncoder) -> RerankingSearcher:
    """The first stage `first` with the configured second stage on top."""
    return RerankingSearcher(
        first,
        encoder,
        RerankSettings(
            depth=settings.rerank_depth, first_stage_weight=settings.rerank_first_stage_weight
        ),
    )


def build_reranker(settings: Settings) -> CrossEncoder | None:
    """The cross-encoder RAGTUNE_RERANKER names: the one `make reranker` built (auto, when there
    is one), a folder, or none (off). A configured folder that holds no reranker is said in one
    sentence."""
    match settings.reranker.strip().lower():
        case "off" | "none" | "":
            return None
        case "auto":
            folder = default_reranker_dir()
            if not (folder / RERANKER_MANIFEST).is_file():
                log.info("no reranker is built (`make reranker`): hybrid search alone")
                return None
            return CrossEncoder(folder, threads=_encoder_threads(settings))
        case _:
            return CrossEncoder(
                Path(settings.reranker).expanduser(), threads=_encoder_threads(settings)
            )


def _encoder_threads(settings: Settings) -> int:
    """The embedding threads for the cross-encoder too (0, torch's default: every core)."""
    return settings.embedding_threads or (os.cpu_count() or 1)


@dataclass(frozen=True)
class ServedModel:
    """The GGUF the in-process engine serves, and the prompt profile that goes with it."""

    info: ModelInfo
    profile: PromptProfile


def served_model(settings: Settings) -> ServedModel | None:
    """RAGTUNE_MODEL_PATH, else the catalogue model RAGTUNE_MODEL (default smollm2-135m),
    checked; None for an OpenAI-compatible server. A missing model is one sentence."""
    if settings.llm_backend != "llama":
        return None
    models = catalogue.Catalogue(settings.models_dir)
    if settings.model_path is not None:
        from bot.llm.llama import check_gguf

        check_gguf(settings.model_path)
        info = read_model_info(settings.model_path, models)
        return ServedModel(info, profile_for(info))
    name = settings.model or catalogue.DEFAULT_MODEL
    if name.count("/") >= 2:  # REPO/FILE: a model fetched with `ragtune models pull`
        from bot.llm.hub import find_pulled

        pulled = find_pulled(name)
        if pulled is None:
            owner, repo, file = name.split("/", 2)
            raise ModelError(
                f"RAGTUNE_MODEL={name} has not been pulled: run "
                f"`ragtune models pull {owner}/{repo} {file}`."
            )
        info = read_model_info(pulled, models, name)
        return ServedModel(info, profile_for(info))
    path = models.resolve(name)
    info = read_model_info(path, models, name)
    return ServedModel(info, profile_for(info, models.get(name).profile))


def served_model_path(settings: Settings) -> Path | None:
    """The GGUF the in-process engine serves (None for an OpenAI-compatible server)."""
    served = served_model(settings)
    return served.info.path if served is not None else None


def build_adapter_switcher(
    settings: Settings,
    worker: ModelWorker,
    state: StateStore | None = None,
    served: ServedModel | None = None,
) -> AdapterSwitcher:
    """Adapters from RAGTUNE_ADAPTERS_DIR for the served model."""
    path = served.info.path if served is not None else served_model_path(settings)
    return AdapterSwitcher(worker, AdapterRegistry(settings.adapters_dir), path, state)


def build_engine(settings: Settings, served: ServedModel | None = None) -> ChatEngine:
    """The configured chat engine; the model is loaded (and checked) here."""
    match settings.llm_backend:
        case "llama":
            from bot.llm.llama import LlamaCppEngine

            served = served or served_model(settings)
            if served is None:  # pragma: no cover - served_model answers for "llama"
                raise ModelError("No chat model is configured.")
            return LlamaCppEngine(
                served.info.path,
                context_window=settings.context_window,
                threads=settings.model_threads,
                chat_template=settings.chat_template,
            )
        case "openai":
            from bot.llm.openai_http import OpenAIEngine

            key = settings.openai_api_key
            engine = OpenAIEngine(
                settings.openai_base_url,
                settings.openai_model,
                api_key=key.get_secret_value() if key else None,
                context_window=settings.context_window,
                flavor=settings.openai_flavor,
            )
            engine.connect()  # an unreachable server is said now, naming its URL
            return engine


def answer_settings(settings: Settings, profile: PromptProfile | None = None) -> AnswerSettings:
    """AnswerSettings from Settings; what the user left empty comes from the model's profile."""
    if profile is None:
        served = served_model(settings)
        profile = served.profile if served is not None else profile_for(None)
    return AnswerSettings(
        search_k=_given(settings.answer_k, profile.answer_k),
        context_tokens=_given(settings.context_tokens, profile.context_tokens),
        min_similarity=settings.min_similarity,
        history_turns=settings.history_turns,
        history_tokens=_given(settings.history_tokens, profile.history_tokens),
        rag_prompt=settings.rag_prompt or profile.rag_prompt,
        read_k=settings.read_k,
        reader_switch_margin=settings.reader_switch_margin,
        min_reader_confidence=settings.reader_min_confidence,
        min_span_confidence=settings.reader_span_confidence,
        limits=GenerationLimits(
            max_tokens=_given(settings.max_answer_tokens, profile.max_answer_tokens),
            temperature=settings.temperature,
            timeout_s=settings.generation_timeout_s,
        ),
    )


def _given(value: int | None, default: int) -> int:
    return default if value is None else value


def build_access(settings: Settings, state: StateStore) -> AccessPolicy:
    """The allowlist and per-user limits from Settings."""
    limits = AccessSettings(
        mode=AccessMode(settings.access),
        allowed_ids=frozenset(settings.allowed_ids),
        per_minute=settings.questions_per_minute,
        per_day=settings.questions_per_day,
    )
    return AccessPolicy(limits, frozenset(settings.admin_ids), state)


def alert_chats(settings: Settings) -> tuple[int, ...]:
    """Where errors are reported: the admin chat, or else each admin in private."""
    return (settings.admin_chat_id,) if settings.admin_chat_id is not None else settings.admin_ids


def build_worker(settings: Settings, engine: ChatEngine) -> ModelWorker:
    """The thread that owns the engine, or a thread per answer a server generates at once."""
    concurrency = 1 if engine.concurrency == 1 else settings.model_concurrency
    return ModelWorker(
        engine,
        max_queue=settings.model_queue_size,
        concurrency=concurrency or engine.concurrency,
    )


@dataclass
class LocalServices:
    """What start-up opens before anything is asked of Telegram: all that can fail locally."""

    worker: ModelWorker
    state: StateStore
    adapters: AdapterSwitcher
    store: KnowledgeStore
    writer: KnowledgeStore
    embedder: Embedder
    model: ServedModel | None
    """None for an OpenAI-compatible server or an engine given in Backends."""
    reader: Reader | None = None
    """The span reader (None: the chat model answers alone)."""
    warm: bool = True
    """Warm the embedder and the model before the first question (only when both were built
    from Settings: a caller that gives either warms what it gives)."""

    def close(self) -> None:
        """Stop the model's thread and close the databases."""
        self.worker.close()
        self.store.close()
        self.writer.close()
        self.state.close()


def open_local_services(settings: Settings, backends: Backends | None = None) -> LocalServices:
    """The model, both databases, the active adapter and the embedder's folder, checked.

    Quick (about a second): loading the embedder itself waits for `finish_bot_services`.
    """
    given = backends or Backends()
    if given.engine is None:
        served = served_model(settings)  # first: a bad model stops start-up before anything loads
        engine = build_engine(settings, served)
        served_path = served.info.path if served is not None else None
    else:
        served, engine, served_path = None, given.engine, given.served_model
    worker = build_worker(settings, engine)
    state = StateStore.open(settings.state_db)
    adapters = AdapterSwitcher(worker, AdapterRegistry(settings.adapters_dir), served_path, state)
    adapters.restore()  # the adapter active before a restart; a broken one stops start-up here
    store = open_store(settings)
    writer = open_store(settings)  # admin writes go through a connection of their own
    embedder: Embedder
    if given.embedder is None:
        embedder = build_embedder(settings)
        embedder.check()
    else:
        embedder = given.embedder
    warm = given.engine is None and given.embedder is None
    # A scripted engine is a test of the wiring around it: it gets a reader only when given one.
    reader = build_reader(settings) if given.engine is None else given.reader
    return LocalServices(worker, state, adapters, store, writer, embedder, served, reader, warm)


def finish_bot_services(
    settings: Settings, local: LocalServices
) -> tuple[BotServices, Callable[[], None]]:
    """Everything else the bot needs (the embedder loaded, the model warm); returns the
    services and a function closing what this opened (`local` is closed by its owner)."""
    from bot.tg.context import BotServices

    worker, state, embedder = local.worker, local.state, local.embedder
    if local.warm:
        embedder.embed(["warm up"])  # load the embedder now, not on the first question
    searcher = build_searcher(settings, local.store, embedder)
    # Read from the chat and the admin threads alike: a connection of its own.
    bindings = ChatBindings(state, open_store(settings), local.adapters)
    profile = local.model.profile if local.model is not None else profile_for(None)
    answerer = Answerer(
        worker, searcher, state=state, settings=answer_settings(settings, profile),
        reader=local.reader,
    )  # fmt: skip
    page_fetches = PageFetches()
    admin = AdminService(
        settings.admin_ids,
        local.writer,
        build_ingestor(settings, local.writer, embedder),
        state,
        max_bytes=settings.max_document_bytes,
        adapters=local.adapters,
        comparisons=ComparisonRunner(
            answerer, local.adapters, settings.eval_questions, settings.eval_limit
        ),
        worker=worker,
        bindings=bindings,
        web=web_settings(settings),
        chat_model=local.model.info.summary() if local.model is not None else None,
        page_fetches=page_fetches,
    )
    if local.warm:
        worker.generate([{"role": "user", "content": "Hi"}], GenerationLimits(max_tokens=1))

    def close() -> None:
        page_fetches.close()
        searcher.close()
        bindings.store.close()

    services = BotServices(
        chat=ChatService(
            answerer, access=build_access(settings, state), state=state, bindings=bindings
        ),
        admin=admin,
        alert_chats=alert_chats(settings),
    )
    return services, close


def build_bot_services(
    settings: Settings, backends: Backends | None = None
) -> tuple[BotServices, Callable[[], None]]:
    """Everything the bot needs, opened once; returns the services and a function closing them."""
    local = open_local_services(settings, backends)
    try:
        opened, close_rest = finish_bot_services(settings, local)
    except BaseException:
        local.close()
        raise

    def close() -> None:
        close_rest()
        local.close()

    return opened, close


def build_application(settings: Settings, services: ServicesFactory | None = None) -> Application:  # type: ignore[type-arg]
    """The PTB Application: heavy services open in post_init and close in post_shutdown."""
    from telegram.ext import Application as PTBApplication

    from bot.tg.context import CONTEXT_TYPES, SERVICES
    from bot.tg.register import add_handlers, set_command_menus
    from bot.tg.retry import RetryingRateLimiter
    from bot.tg.updates import MovesFirst

    token = settings.telegram_bot_token
    if token is None:
        raise ValueError(NO_TOKEN)
    # httpx logs every request URL at INFO, and Bot API URLs contain the token.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    closers: list[Callable[[], None]] = []

    async def post_init(application: Application) -> None:  # type: ignore[type-arg]
        opened, close = await asyncio.to_thread(services or (lambda: build_bot_services(settings)))
        application.bot_data[SERVICES] = opened
        closers.append(close)
        await set_command_menus(application.bot, settings.admin_ids)

    async def post_shutdown(application: Application) -> None:  # type: ignore[type-arg]
        for close in closers:
            await asyncio.to_thread(close)

    application = (
        PTBApplication.builder()
        .token(token.get_secret_value())
        .base_url(settings.telegram_api_url)
        .base_file_url(settings.telegram_file_url)
        .post_init(post_init)
        .post_shutdown(post_shutdown)
        .context_types(CONTEXT_TYPES)
        # Keeps within Telegram's flood limits and, on a 429, waits retry_after before retrying
        # (no call reaches that chat before its retry time); 5xx and timeouts get 3 attempts
        # with exponential backoff.
        .rate_limiter(RetryingRateLimiter(max_retries=3))
        # Updates are handled concurrently, so /cancel and "one at a time" replies are not
        # stuck behind a running answer; the model worker still runs one generation at a time.
        # A group's move to a new id is the exception: nothing after it starts before it is done.
        .concurrent_updates(MovesFirst(64))
        .build()
    )
    add_handlers(application)
    return application


NO_TOKEN = (
    "No Telegram bot token is configured. To run the bot, put this line in .env "
    "(get a token from @BotFather):\n\n    TELEGRAM_BOT_TOKEN=123456789:AA...your-token...\n\n"
    "To try the bot locally with no token, chat with the real bot through a local Bot API "
    "emulator, as an admin, and give it a document to answer from:\n\n"
    "    make chat\n"
    "    you> /upload knowledge/examples/cafe_faq.md\n"
    "    you> When is the café open?"
)
