"""The second stage of retrieval: a cross-encoder reads the question with each best candidate.

Hybrid search scores the question and a chunk apart (a vector each, keyword counts); a
cross-encoder reads them together, so it can see that "Which port does the server listen on?"
is answered by "the server binds 127.0.0.1 port 11434" and not by the chunk that repeats
"server" five times. It is the packaged all-MiniLM-L6-v2 encoder trained for this by `ragtune
reranker build` (tuning/reranker.py); here it only runs. It reorders the first stage's best
`depth` chunks and never sees the others, and the first stage keeps a share of the final score
(a reranker that is sure of itself on text it never saw is the way such systems push the right
chunk out of the top five).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from knowledge.chunking import embedding_input
from knowledge.errors import KnowledgeError
from knowledge.migrations import GLOBAL_COLLECTION
from knowledge.search import HybridSearcher, SearchHit

if TYPE_CHECKING:
    from transformers import PreTrainedModel

RERANKER_RECIPE = "minilm-l6-rerank-v1"
"""Names the training recipe; a new recipe gets a new folder, so an old reranker is never
mistaken for it."""
MANIFEST = "reranker.json"
"""The file beside the weights that says what a reranker folder is (tuning/reranker.py)."""
MAX_TOKENS = 256
"""Question and chunk together, in word pieces: a chunk's first ~180 words."""


def default_reranker_dir() -> Path:
    """Where `ragtune reranker build` puts the reranker: once per machine, outside the repo."""
    return Path.home() / ".cache" / "ragtune" / "rerankers" / RERANKER_RECIPE


@dataclass(frozen=True)
class RerankerInfo:
    """What a reranker folder's manifest says."""

    folder: Path
    trained_question_ids: frozenset[str]
    """Questions it was trained on: an evaluation must leave them out (never score on them)."""
    details: dict[str, Any]


def reranker_info(folder: Path) -> RerankerInfo:
    """The manifest of a built reranker, or KnowledgeError in one sentence when it is not one."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        ids = frozenset(str(i) for i in manifest.get("trained_question_ids", []))
    except (OSError, ValueError, AttributeError, TypeError) as exc:
        raise KnowledgeError(
            f"{folder} is not a built reranker ({type(exc).__name__}): run `make reranker`."
        ) from None
    return RerankerInfo(
        folder, ids, {k: v for k, v in manifest.items() if k != "trained_question_ids"}
    )


class PairScorer(Protocol):
    """Anything that scores how well passages answer a question (the CrossEncoder below)."""

    @property
    def trained_question_ids(self) -> frozenset[str]:
        """Questions it was trained on: evaluations leave them out."""
        ...

    def score(self, question: str, passages: Sequence[str]) -> list[float]:
        """One score per passage, higher is better."""
        ...


class CrossEncoder:
    """Scores (question, passage) pairs read together; loads its model on first use."""

    def __init__(self, folder: Path, *, threads: int = 1) -> None:
        self.info = reranker_info(folder)
        self.threads = threads
        self._model: PreTrainedModel | None = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()  # one batch at a time: torch modules are not re-entrant

    @property
    def trained_question_ids(self) -> frozenset[str]:
        """Questions it was trained on: evaluations leave them out."""
        return self.info.trained_question_ids

    def _load(self) -> tuple[PreTrainedModel, Any]:
        if self._model is None or self._tokenizer is None:
            from transformers import AutoModelForSequenceClassification, AutoTokenizer

            try:
                self._tokenizer = AutoTokenizer.from_pretrained(self.info.folder)
                self._model = AutoModelForSequenceClassification.from_pretrained(self.info.folder)
            except (OSError, ValueError) as exc:
                raise KnowledgeError(
                    f"The reranker in {self.info.folder} cannot be loaded "
                    f"({type(exc).__name__}): run `make reranker` to build it again."
                ) from None
            self._model.eval()
        return self._model, self._tokenizer

    def score(self, question: str, passages: Sequence[str]) -> list[float]:
        """How well each passage answers `question` (a logit: higher is better), in one batch."""
        import torch

        if not passages:
            return []
        with self._lock:
            model, tokenizer = self._load()
            previous = torch.get_num_threads()
            torch.set_num_threads(self.threads)  # beside the chat model's threads, not over them
            try:
                encoded = tokenizer(
                    [question] * len(passages),
                    list(passages),
                    truncation="only_second",
                    max_length=MAX_TOKENS,
                    padding=True,
                    return_tensors="pt",
                )
                with torch.inference_mode():
                    logits = model(**encoded).logits
            finally:
                torch.set_num_threads(previous)
        return [float(x) for x in logits[:, 0].tolist()]


@dataclass(frozen=True)
class RerankSettings:
    """Knobs of the second stage (defaults measured on both dev sets: README "Retrieval")."""

    depth: int = 10
    """The first stage's best chunks the cross-encoder reads (its cost grows with this)."""
    first_stage_weight: float = 0.35
    """Share of the first stage's own score in the final order (0: the cross-encoder alone)."""


def _standardised(values: Sequence[float]) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    spread = array.std() if len(array) else 0.0
    return (array - array.mean()) / spread if spread > 0 else np.zeros(len(array))


def rerank_order(
    scores: Sequence[float], first_stage: Sequence[float], first_stage_weight: float
) -> list[int]:
    """Positions of first-stage candidates in their new order, by a weighted sum of both
    stages' scores, each standardised within this query.

    The first stage keeps a say: alone, the cross-encoder put TAT-QA's top hit right less often
    than hybrid search did (R@1 0.764 against 0.780 over 10 candidates) while it lifted R@5; with
    a share of 0.35 for the first stage both rose (README "Retrieval")."""
    if len(scores) != len(first_stage):
        raise ValueError(f"{len(scores)} scores for {len(first_stage)} candidates")
    combined = (1 - first_stage_weight) * _standardised(scores) + first_stage_weight * (
        _standardised(first_stage)
    )
    return sorted(range(len(scores)), key=lambda i: (-combined[i], i))


class RerankingSearcher:
    """The first stage's best chunks, reordered by a cross-encoder (the same interface)."""

    def __init__(
        self,
        first: HybridSearcher,
        encoder: PairScorer,
        settings: RerankSettings | None = None,
    ) -> None:
        self.first = first
        self.encoder = encoder
        self.settings = settings or RerankSettings()

    @property
    def trained_question_ids(self) -> frozenset[str]:
        """Questions the cross-encoder was trained on: evaluations leave them out."""
        return self.encoder.trained_question_ids

    def close(self) -> None:
        """Stop the first stage's keyword thread (the store stays open)."""
        self.first.close()

    def search(
        self, query: str, k: int = 5, collections: Sequence[int] = (GLOBAL_COLLECTION,)
    ) -> list[SearchHit]:
        """The k best chunks of `collections` for `query`, the best `depth` of them reranked."""
        vector = self.first.embedder.embed([query])[0]
        return self.search_with_vector(query, vector, k, collections)

    def search_with_vector(
        self,
        query: str,
        vector: np.ndarray,
        k: int,
        collections: Sequence[int] = (GLOBAL_COLLECTION,),
    ) -> list[SearchHit]:
        """Like `search`, with the query already embedded (benchmarks, batch evaluation)."""
        depth = self.settings.depth
        hits = self.first.search_with_vector(query, vector, max(k, depth), collections)
        head, tail = hits[:depth], hits[depth:]
        scores = self.encoder.score(
            query, [embedding_input(h.chunk.heading, h.chunk.text) for h in head]
        )
        order = rerank_order(scores, [h.score for h in head], self.settings.first_stage_weight)
        return ([head[i] for i in order] + tail)[:k]
