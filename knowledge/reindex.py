"""Re-embed every chunk into a fresh vector table, then switch to it in one transaction."""

from __future__ import annotations

from collections.abc import Callable

from knowledge.chunking import embedding_input
from knowledge.embeddings import Embedder
from knowledge.store import EmbeddingModel, KnowledgeStore


def reindex(
    store: KnowledgeStore,
    embedder: Embedder,
    *,
    batch_size: int = 256,
    progress: Callable[[int], object] | None = None,
) -> int:
    """Re-embed all chunks with `embedder`; return how many. Search keeps working until the switch.

    A process killed part-way leaves the old table live; the half-filled one is dropped the next
    time the store opens.
    """
    table = store.create_vector_table(embedder.dimension)
    done = 0
    for batch in store.iter_chunks(batch_size):
        texts = [embedding_input(c.heading, c.text) for c in batch]
        store.fill_vector_table(table, [c.id for c in batch], embedder.embed(texts))
        done += len(batch)
        if progress is not None:
            progress(len(batch))
    store.switch_vector_table(table, EmbeddingModel(embedder.model_id, embedder.dimension))
    return done
