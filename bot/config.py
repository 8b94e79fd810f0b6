"""Settings: the only place that reads the environment and `.env` (prefix RAGTUNE_)."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bot.llm.catalogue import default_models_dir


class Settings(BaseSettings):
    """Every knob of ragtune; each field is documented in `.env.example` too."""

    model_config = SettingsConfigDict(
        env_prefix="RAGTUNE_",
        env_file=".env",
        env_file_encoding="utf-8",
        env_ignore_empty=True,
        extra="ignore",
    )

    db: Path = Field(
        Path("data/ragtune.db"), description="Knowledge base SQLite file (created if missing)."
    )
    embedding_model: Path | None = Field(
        None,
        description="Folder of a sentence-transformers model; empty = the packaged "
        "all-MiniLM-L6-v2.",
    )
    embedding_threads: int = Field(
        0, ge=0, description="CPU threads for embedding; 0 = torch's default."
    )
    embedding_batch_size: int = Field(64, ge=1, description="Texts per embedding forward pass.")
    ingest_batch_chunks: int = Field(
        2048,
        ge=1,
        description="Chunks gathered across documents for one embedding call (larger is faster).",
    )
    chunk_chars: int = Field(500, ge=50, description="Longest chunk, in characters.")
    chunk_overlap_chars: int = Field(
        100, ge=0, description="Characters of whole sentences repeated between neighbour chunks."
    )
    max_document_bytes: int = Field(
        20_000_000, ge=1, description="Largest file accepted for ingest, in bytes."
    )
    parse_memory_mb: int = Field(
        1024, ge=64, description="Memory a file's parser (a child process) may use, in MB."
    )
    parse_cpu_s: int = Field(30, ge=1, description="CPU seconds a file's parser may use.")
    parse_max_chars: int = Field(
        10_000_000, ge=1, description="Characters of text one file may yield."
    )
    max_chunks_per_document: int = Field(
        5_000,
        ge=1,
        description="Chunks one document may make; a bigger one is refused before any embedding.",
    )
    web_allow_private: bool = Field(
        False,
        description="Let `kb add URL` and /add URL fetch loopback, private and link-local "
        "addresses (refused by default: the bot's machine can reach what the internet cannot).",
    )
    web_trusted_hosts: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description="Host names always fetched, private or not (an intranet wiki), "
        "comma-separated; redirects elsewhere are still checked.",
    )
    web_timeout_s: float = Field(
        15.0, gt=0, description="Seconds each step of a page fetch may take."
    )
    web_max_redirects: int = Field(5, ge=0, description="Redirects a page fetch follows.")
    search_k: int = Field(5, ge=1, description="Chunks returned by a search.")
    search_candidates: int = Field(
        20,
        ge=1,
        description="Chunks taken from each of the vector and keyword lists before fusion.",
    )
    reranker: str = Field(
        "off",
        description="The second stage of search, a cross-encoder over the best chunks: off, "
        "auto (the one `make reranker` built, when there is one), or a folder.",
    )
    rerank_depth: int = Field(
        10, ge=1, description="The first stage's best chunks the reranker reads."
    )
    rerank_first_stage_weight: float = Field(
        0.35, ge=0, le=1, description="Share of the first stage's score in the reranked order."
    )
    vector_weight: float = Field(
        1.0, ge=0, description="Weight of the normalised cosine in fusion; 0 = keywords only."
    )
    keyword_weight: float = Field(
        1.5, ge=0, description="Weight of the normalised BM25 in fusion; 0 = vectors only."
    )

    llm_backend: Literal["llama", "openai"] = Field(
        "llama", description="llama = in-process llama.cpp; openai = an OpenAI-compatible server."
    )
    model: str | None = Field(
        None,
        description="Catalogue model by name (`ragtune models list`); empty = smollm2-135m.",
    )
    model_path: Path | None = Field(
        None, description="GGUF chat model by path; wins over RAGTUNE_MODEL."
    )
    models_dir: Path = Field(
        default_factory=default_models_dir,
        description="Where catalogue models are assembled and checked (outside the repo).",
    )
    bases_dir: Path = Field(
        default_factory=lambda: Path.home() / ".cache" / "ragtune" / "bases",
        description="Dequantized copies of GGUF models that `tune train` reloads in seconds.",
    )
    model_threads: int = Field(
        0, ge=0, description="CPU threads for llama.cpp; 0 = half the cores (1 to 4)."
    )
    context_window: int = Field(2048, ge=256, description="Tokens of context llama.cpp allocates.")
    chat_template: str | None = Field(
        None, description="Jinja chat template for a GGUF that has none in its metadata."
    )
    openai_base_url: str = Field(
        "http://127.0.0.1:8000/v1", description="Base URL of the OpenAI-compatible server."
    )
    openai_model: str = Field(
        "local", description="Model name sent to the OpenAI-compatible server."
    )
    openai_api_key: SecretStr | None = Field(
        None, description="API key for the OpenAI-compatible server, if it needs one."
    )
    openai_flavor: Literal["auto", "llama-server", "vllm", "openai"] = Field(
        "auto",
        description="How to ask the server for adapters and token counts; auto = ask the server.",
    )
    model_concurrency: int = Field(
        0,
        ge=0,
        description="Answers generated at once; 0 = the engine's own (in-process 1, a server's "
        "slots).",
    )
    llama_server: Path | None = Field(
        None, description="llama-server for `ragtune serve`; empty = make's build, then PATH."
    )
    serve_slots: int = Field(
        4, ge=1, description="Parallel slots (answers at once) of `ragtune serve`'s llama-server."
    )
    serve_threads: int = Field(
        0,
        ge=0,
        description="Threads of `ragtune serve`'s llama-server; 0 = every core it may use.",
    )
    serve_key_file: Path = Field(
        Path("data/llama-server.key"),
        description="Where `ragtune serve` keeps the API key it made (when "
        "RAGTUNE_OPENAI_API_KEY is empty); kept across restarts, readable by its owner only.",
    )
    serve_cors_origins: str = Field(
        "",
        description="The one web origin allowed to call `ragtune serve`'s llama-server from a "
        "browser; empty = none but the server's own address.",
    )
    adapters_dir: Path = Field(
        Path("data/adapters"), description="LoRA adapters, one folder each (ragtune tune train)."
    )
    eval_questions: Path | None = Field(
        None, description="Questions with answers (JSONL) that /eval compares on."
    )
    eval_limit: int = Field(20, ge=1, description="Questions /eval answers in each of 4 modes.")
    state_db: Path = Field(
        Path("data/state.db"), description="The bot's own state (conversations), beside the KB."
    )
    answer_k: int | None = Field(
        None, ge=1, description="Chunks given to the model; empty = the model's profile."
    )
    context_tokens: int | None = Field(
        None,
        ge=32,
        description="Token budget for the sources in the prompt; empty = the model's profile.",
    )
    rag_prompt: Literal["extractive", "sentence"] | None = Field(
        None,
        description="RAG prompt style: extractive (copy and cite) or sentence; empty = profile.",
    )
    min_similarity: float = Field(
        0.2,
        ge=-1,
        le=1,
        description="Chunks below this cosine are no source; none left: not covered.",
    )
    reader: str = Field(
        "auto",
        description="The span reader that answers from the sources: auto (the one `make reader` "
        "built, when there is one), off, or a folder.",
    )
    read_k: int = Field(3, ge=1, description="Chunks the span reader reads for each question.")
    reader_switch_margin: float = Field(
        8.0,
        description="A lower-ranked chunk's span answers instead of the best chunk's only when "
        "it is this much more confident.",
    )
    reader_min_confidence: float = Field(
        -100.0,
        description='The span reader answers when its span beats "no answer" by this much; '
        "below it the chat model answers.",
    )
    reader_span_confidence: float = Field(
        8.0,
        description="Below this confidence the reader's reply is the sentence holding its span, "
        "not the span alone.",
    )
    history_turns: int = Field(4, ge=0, description="Earlier turns of a chat given to the model.")
    history_tokens: int | None = Field(
        None, ge=0, description="Token budget for those earlier turns; empty = the model's profile."
    )
    max_answer_tokens: int | None = Field(
        None, ge=1, description="Longest answer, in tokens; empty = the model's profile."
    )
    temperature: float = Field(0.0, ge=0, le=2, description="Sampling temperature (0 = greedy).")
    generation_timeout_s: float = Field(120, gt=0, description="Wall-clock limit of one answer.")
    model_queue_size: int = Field(8, ge=1, description="Answers that may wait for the model.")

    telegram_bot_token: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("TELEGRAM_BOT_TOKEN", "RAGTUNE_TELEGRAM_BOT_TOKEN"),
        description="The bot's token from @BotFather (read from TELEGRAM_BOT_TOKEN).",
    )
    admin_ids: Annotated[tuple[int, ...], NoDecode] = Field(
        (), description="Numeric Telegram user ids of admins, comma-separated."
    )
    telegram_api_url: str = Field(
        "https://api.telegram.org/bot",
        description="Bot API base URL; requests go to <url><token>/<method>.",
    )
    telegram_file_url: str = Field(
        "https://api.telegram.org/file/bot", description="Bot API base URL for file downloads."
    )
    admin_chat_id: int | None = Field(
        None, description="Chat told about errors; empty = each admin in private."
    )
    access: Literal["open", "restricted"] = Field(
        "open", description="open = anyone may ask; restricted = only RAGTUNE_ALLOWED_IDS."
    )
    allowed_ids: Annotated[tuple[int, ...], NoDecode] = Field(
        (), description="User or chat ids that may ask in restricted mode, comma-separated."
    )
    questions_per_minute: int = Field(
        5, ge=0, description="Questions one user may ask per minute; 0 = no limit."
    )
    questions_per_day: int = Field(
        200, ge=0, description="Questions one user may ask per UTC day; 0 = no limit."
    )
    webhook_url: str | None = Field(
        None, description="Public HTTPS URL Telegram posts updates to; empty = long polling."
    )
    webhook_secret: SecretStr | None = Field(
        None, description="Secret Telegram sends with each update; empty = a random one per start."
    )
    webhook_listen: str = Field(
        "127.0.0.1", description="Address the webhook server listens on (behind a proxy)."
    )
    webhook_port: int = Field(8443, ge=1, le=65535, description="Port of the webhook server.")

    @field_validator("admin_ids", "allowed_ids", mode="before")
    @classmethod
    def _split_ids(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(int(part) for part in value.replace(" ", "").split(",") if part)
        return value

    @field_validator("web_trusted_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.lower() for part in value.replace(" ", "").split(",") if part)
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _secret_chars(cls, value: SecretStr | None) -> SecretStr | None:
        # Telegram accepts 1-256 characters A-Z, a-z, 0-9, _ and - (the value is never echoed).
        if value is not None and not re.fullmatch(
            r"[A-Za-z0-9_-]{1,256}", value.get_secret_value()
        ):
            raise ValueError("use 1-256 characters: letters, digits, _ and -")
        return value


@cache
def get_settings() -> Settings:
    """Settings read once from the environment and `.env`."""
    return Settings()
