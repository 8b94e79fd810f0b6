"""Settings: the only place that reads the environment and `.env` (prefix RAGTUNE_)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    search_k: int = Field(5, ge=1, description="Chunks returned by a search.")
    search_candidates: int = Field(
        40,
        ge=1,
        description="Chunks taken from each of the vector and keyword lists before fusion.",
    )
    vector_weight: float = Field(1.0, ge=0, description="Weight of vector ranks in fusion.")
    keyword_weight: float = Field(1.0, ge=0, description="Weight of keyword ranks in fusion.")


@cache
def get_settings() -> Settings:
    """Settings read once from the environment and `.env`."""
    return Settings()
