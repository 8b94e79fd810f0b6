"""Re-embed the knowledge base: every chunk into a fresh vector table switched to in one
transaction (the only way to change the embedding model), or one collection in place."""

from __future__ import annotations

from collections.abc import Callable

from knowledge.embeddings import Embedder
from knowledge.errors import EmbedderMismatchError
from knowledge.store import EmbeddingModel, KnowledgeStore


def reindex(
    store: KnowledgeStore,
    embedder: Embedder,
    *,
    batch_size: int = 256,
    progress: Callable[[int], object] | None = None,
) -> int:
    """Re-embed all chunks with `embedder`; return how many. Search keeps working until the switch.

    Writers go on meanwhile: chunks they delete leave the new table with them, chunks they add
    are embedded before the switch (never while holding the write lock). One reindex at a time
    (a lock file beside the database); a process killed part-way leaves the old table live,
    and the half-filled one is dropped by the next reindex, or by the next store opened once no
    reindex holds the lock.
    """
    with store.reindexing():
        table = store.begin_reindex(embedder.dimension)
        done = 0
        for batch in store.iter_chunks(batch_size):
            store.fill_vector_table(table, batch, embedder.embed([c.embed_text for c in batch]))
            done += len(batch)
            if progress is not None:
                progress(len(batch))
        # Catch up with what writers added meanwhile; the switch goes through once none is left.
        model = EmbeddingModel(embedder.model_id, embedder.dimension)
        while True:
            while late := store.chunks_without_vectors(table, batch_size):
                store.fill_vector_table(table, late, embedder.embed([c.embed_text for c in late]))
            if store.switch_vector_table(table, model):
                break
    return done


def reindex_collection(
    store: KnowledgeStore,
    embedder: Embedder,
    collection: int,
    *,
    batch_size: int = 256,
    progress: Callable[[int], object] | None = None,
) -> int:
    """Re-embed the chunks of one collection in place, batch by batch; return how many were
    swapped (not those a writer replaced meanwhile: the writer embedded those).

    The file holds one embedding model for all its collections, so this keeps the model: a
    different `embedder` raises EmbedderMismatchError (re-embed everything with `reindex`),
    also when a whole-file reindex switched models while this one waited for the lock.
    Each batch swaps its vectors in one transaction, so search and writers go on meanwhile and
    a kill between batches leaves vectors that are all valid. It takes the same lock as
    `reindex`: one re-embedding of a file at a time.
    """
    model = EmbeddingModel(embedder.model_id, embedder.dimension)
    recorded = store.embedding_model
    if recorded is not None and recorded != model:
        raise EmbedderMismatchError(
            f"This knowledge base was built with {recorded.model_id} ({recorded.dimension}-d), "
            f"not {model.model_id} ({model.dimension}-d), and one collection cannot change "
            "model alone: re-embed every collection (`/reindex all`, or `ragtune kb reindex` "
            "without --collection)."
        )
    with store.reindexing():
        done = 0
        for batch in store.iter_chunks(batch_size, collection):
            done += store.replace_vectors(
                batch, embedder.embed([c.embed_text for c in batch]), model
            )
            if progress is not None:
                progress(len(batch))
    return done
