"""Hybrid search: sqlite-vec k-NN and FTS5 BM25, fused by weighted reciprocal rank."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from knowledge.embeddings import Embedder
from knowledge.keywords import match_query
from knowledge.store import KnowledgeStore, StoredChunk


@dataclass(frozen=True)
class SearchHit:
    """A retrieved chunk, ready to cite: document fields, position and scores."""

    chunk: StoredChunk
    score: float
    """Fused reciprocal-rank score; higher is better, comparable only within one query."""
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
    """Knobs of the hybrid search (defaults tuned on the XQuAD dev set)."""

    candidates: int = 40
    """Chunks taken from each of the vector and keyword lists before fusion."""
    coarse_candidates: int = 400
    """Chunks kept by the 1-bit Hamming scan before exact cosine re-scoring."""
    vector_weight: float = 1.0
    keyword_weight: float = 1.0
    rrf_k: int = 60
    """Reciprocal rank fusion constant: score = Σ weight / (rrf_k + rank)."""


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

    def search(self, query: str, k: int = 5) -> list[SearchHit]:
        """The k best chunks for `query`."""
        vector = self.embedder.embed([query])[0]
        return self.search_with_vector(query, vector, k)

    def search_with_vector(self, query: str, vector: np.ndarray, k: int) -> list[SearchHit]:
        """Like `search`, with the query already embedded (benchmarks, batch evaluation)."""
        s = self.settings
        depth = max(k, s.candidates)
        match = match_query(query)
        keywords: Future[list[tuple[int, float]]] | None = None
        if match and self.store.parallel_keywords:
            keywords = self._keyword_thread().submit(self.store.keyword_chunks, match, depth)
        by_vector = self.store.nearest_chunks(vector, depth, candidates=s.coarse_candidates)
        if keywords is not None:
            by_keyword = keywords.result()
        else:
            by_keyword = self.store.keyword_chunks(match, depth) if match else []

        scores: dict[int, float] = {}
        vector_rank: dict[int, int] = {}
        keyword_rank: dict[int, int] = {}
        for rank, (chunk_id, _) in enumerate(by_vector, start=1):
            vector_rank[chunk_id] = rank
            scores[chunk_id] = scores.get(chunk_id, 0.0) + s.vector_weight / (s.rrf_k + rank)
        for rank, (chunk_id, _) in enumerate(by_keyword, start=1):
            keyword_rank[chunk_id] = rank
            scores[chunk_id] = scores.get(chunk_id, 0.0) + s.keyword_weight / (s.rrf_k + rank)
        # Ties break on chunk id so results are deterministic.
        best = sorted(scores, key=lambda i: (-scores[i], i))[:k]
        distances = dict(by_vector)
        missing = [i for i in best if i not in distances]
        distances.update(self.store.cosine_distances(missing, vector))
        chunks = self.store.chunks_by_id(best)
        return [
            SearchHit(
                chunk=chunks[i],
                score=scores[i],
                similarity=1.0 - distances[i],
                vector_rank=vector_rank.get(i),
                keyword_rank=keyword_rank.get(i),
            )
            for i in best
            if i in chunks
        ]
