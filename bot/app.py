"""Composition root: build the services from Settings (the bot's Application joins later)."""

from __future__ import annotations

from pathlib import Path

from bot.config import Settings
from knowledge.embeddings import SentenceTransformerEmbedder
from knowledge.ingest import Ingestor
from knowledge.search import HybridSearcher, SearchSettings
from knowledge.store import KnowledgeStore


def build_embedder(settings: Settings) -> SentenceTransformerEmbedder:
    """The configured sentence-transformers embedder (the packaged one by default)."""
    return SentenceTransformerEmbedder(
        settings.embedding_model,
        threads=settings.embedding_threads,
        batch_size=settings.embedding_batch_size,
    )


def open_store(settings: Settings, db: Path | None = None) -> KnowledgeStore:
    """Open the knowledge base at `db`, or at RAGTUNE_DB."""
    return KnowledgeStore.open(db or settings.db)


def build_ingestor(
    settings: Settings, store: KnowledgeStore, embedder: SentenceTransformerEmbedder
) -> Ingestor:
    """An Ingestor with the configured chunking and size cap."""
    return Ingestor(
        store,
        embedder,
        chunk_chars=settings.chunk_chars,
        overlap_chars=settings.chunk_overlap_chars,
        max_bytes=settings.max_document_bytes,
        embed_batch=settings.ingest_batch_chunks,
    )


def build_searcher(
    settings: Settings, store: KnowledgeStore, embedder: SentenceTransformerEmbedder
) -> HybridSearcher:
    """A HybridSearcher with the configured fusion settings."""
    return HybridSearcher(
        store,
        embedder,
        SearchSettings(
            candidates=settings.search_candidates,
            vector_weight=settings.vector_weight,
            keyword_weight=settings.keyword_weight,
        ),
    )
