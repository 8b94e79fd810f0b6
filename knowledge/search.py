"""Hybrid search: sqlite-vec k-NN and FTS5 BM25, fused by per-query max-normalised scores.

Each candidate either list finds gets both scores (its exact cosine; its BM25, or the bound the
keyword list sets for it), each divided by the best of that score in this query, and the two are
added with fixed weights.
Dividing by the best keeps how far the others trail behind it: a retriever that cannot tell the
passages apart (the English embedder on Chinese text gives them all about the same cosine) adds
nearly the same to every candidate and so leaves the order to the other one. Reciprocal rank
fusion, which we used before, throws that away and fell below keywords alone out of domain
(README: "Retrieval").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal, TypeVar

import numpy as np

from knowledge.embeddings import Embedder
from knowledge.keywords import match_query
from knowledge.migrations import GLOBAL_COLLECTION
from knowledge.store import KnowledgeStore, StoredChunk

T = TypeVar("T")
Retriever = Literal["hybrid", "keyword", "vector"]
RETRIEVERS: tuple[Retriever, ...] = ("hybrid", "keyword", "vector")


@dataclass(frozen=True)
class SearchHit:
    """A retrieved chunk, ready to cite: document fields, position and scores."""

    chunk: StoredChunk
    score: float
    """Fused score in [0, 1] (1: best of this query by both); comparable only within one query."""
    similarity: float
    """Cosine similarity of query and chunk, comparable across queries (for thresholds)."""
    vector_rank: int | None
    keyword_rank: int | None

    @property
    def document_id(self) -> int:
        """Numeric id of the chunk's document."""
        return self.chunk.document_id

    @property
    def external_id(self) -> str:
        """The document's external id (the corpus id for eval sets)."""
        return self.chunk.external_id

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        c = self.chunk
        return {
            "document_id": c.document_id,
            "external_id": c.external_id,
            "title": c.title,
            "source": c.source,
            "chunk_id": c.id,
            "position": c.position,
            "heading": c.heading,
            "text": c.text,
            "score": round(self.score, 6),
            "similarity": round(self.similarity, 4),
            "vector_rank": self.vector_rank,
            "keyword_rank": self.keyword_rank,
        }


@dataclass(frozen=True)
class SearchSettings:
    """Knobs of the hybrid search (defaults measured on both dev sets: README "Retrieval")."""

    candidates: int = 20
    """Chunks taken from each of the vector and keyword lists before fusion."""
    coarse_candidates: int = 400
    """Chunks kept by the 1-bit Hamming scan before exact cosine re-scoring."""
    vector_weight: float = 1.0
    keyword_weight: float = 1.5
    """Relative weights of the two normalised scores; a weight of 0 leaves that retriever out."""
    retriever: Retriever = "hybrid"
    """"keyword" or "vector" searches with that one alone (for `eval retrieval --compare`)."""

    def weights(self) -> tuple[float, float]:
        """(vector, keyword) weights summing to 1, after the retriever choice."""
        if self.retriever == "keyword":
            return 0.0, 1.0
        if self.retriever == "vector":
            return 1.0, 0.0
        total = self.vector_weight + self.keyword_weight
        if total <= 0:  # both weights 0: rank by meaning, as the default embedder always can
            return 1.0, 0.0
        return self.vector_weight / total, self.keyword_weight / total


def fuse_scores(
    cosines: Sequence[float], keywords: Sequence[float], vector_weight: float
) -> np.ndarray:
    """Weighted sum of each score divided by its maximum (negative or absent scores count 0)."""
    fused = np.zeros(len(cosines))
    for values, weight in ((cosines, vector_weight), (keywords, 1.0 - vector_weight)):
        scores = np.clip(np.asarray(values, dtype=float), 0.0, None)
        best = scores.max(initial=0.0)
        if weight > 0 and best > 0:
            fused += weight * scores / best
    return fused


class HybridSearcher:
    """Answers a query with the store's best chunks by meaning and by keywords."""

    def __init__(
        self,
        store: KnowledgeStore,
        embedder: Embedder,
        settings: SearchSettings | None = None,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.settings = settings or SearchSettings()
        self._keywords_executor: ThreadPoolExecutor | None = None
        store.bind_embedder(embedder.model_id, embedder.dimension)

    def _keyword_thread(self) -> ThreadPoolExecutor:
        if self._keywords_executor is None:
            self._keywords_executor = ThreadPoolExecutor(1, thread_name_prefix="ragtune-fts")
        return self._keywords_executor

    def close(self) -> None:
        """Stop the keyword thread (the store stays open)."""
        if self._keywords_executor is not None:
            self._keywords_executor.shutdown()
            self._keywords_executor = None

    def search(
        self, query: str, k: int = 5, collections: Sequence[int] = (GLOBAL_COLLECTION,)
    ) -> list[SearchHit]:
        """The k best chunks of `collections` for `query`."""
        vector = self.embedder.embed([query])[0]
        return self.search_with_vector(query, vector, k, collections)

    def _beside(self, work: Callable[[], T]) -> Callable[[], T]:
        """Start `work` on the keyword thread if the store has a second connection for it.

        Call the returned function for the result; without a second connection `work` runs
        only then, on the caller's thread.
        """
        if not self.store.parallel_keywords:
            return work
        return self._keyword_thread().submit(work).result

    def search_with_vector(
        self,
        query: str,
        vector: np.ndarray,
        k: int,
        collections: Sequence[int] = (GLOBAL_COLLECTION,),
    ) -> list[SearchHit]:
        """Like `search`, with the query already embedded (benchmarks, batch evaluation).

        Both retrievers filter by collection inside their own query, before fusion: a chunk of
        another collection is never a candidate, and never crowds one out.
        """
        s = self.settings
        vector_weight, keyword_weight = s.weights()
        depth = max(k, s.candidates)
        match = match_query(query) if keyword_weight > 0 else None
        keyword_list = self._beside(
            lambda: self.store.keyword_chunks(match, depth, collections) if match else []
        )
        by_vector = (
            self.store.nearest_chunks(
                vector, depth, candidates=s.coarse_candidates, collections=collections
            )
            if vector_weight > 0
            else []
        )
        by_keyword = keyword_list()

        vector_rank = {chunk_id: rank for rank, (chunk_id, _) in enumerate(by_vector, start=1)}
        keyword_rank = {chunk_id: rank for rank, (chunk_id, _) in enumerate(by_keyword, start=1)}
        candidates = list(dict.fromkeys([*vector_rank, *keyword_rank]))
        # Every candidate is scored by both retrievers, not only by the one that found it: a
        # passage the keyword list did not reach may still be the best by meaning. Its exact
        # cosine is cheap to look up. Its BM25 is not (FTS5 runs the whole query again for each
        # rowid asked, ~1 ms each), so it gets the bound the keyword list gives: no more than
        # the list's last score if the list was cut at `depth`, else 0 (it matched no term).
        cosine = {chunk_id: 1.0 - distance for chunk_id, distance in by_vector}
        missing = [i for i in candidates if i not in cosine]
        cosine.update((i, 1.0 - d) for i, d in self.store.cosine_distances(missing, vector).items())
        bm25 = {chunk_id: -score for chunk_id, score in by_keyword}
        keyword_bound = -by_keyword[-1][1] if len(by_keyword) == depth else 0.0

        fused = fuse_scores(
            [cosine.get(i, 0.0) for i in candidates],
            [bm25.get(i, keyword_bound) for i in candidates],
            vector_weight,
        )
        # Ties (candidates with no positive score at all) break on cosine, then chunk id.
        order = sorted(
            range(len(candidates)),
            key=lambda j: (-fused[j], -cosine.get(candidates[j], 0.0), candidates[j]),
        )[:k]
        best = [candidates[j] for j in order]
        chunks = self.store.chunks_by_id(best)
        return [
            SearchHit(
                chunk=chunks[candidates[j]],
                score=float(fused[j]),
                similarity=cosine.get(candidates[j], 0.0),
                vector_rank=vector_rank.get(candidates[j]),
                keyword_rank=keyword_rank.get(candidates[j]),
            )
            for j in order
            if candidates[j] in chunks
        ]
