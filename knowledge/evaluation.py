"""Retrieval evaluation on a Q/A set in the eval format (corpus.jsonl + questions.jsonl)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from knowledge.errors import BadDocumentError
from knowledge.rerank import RerankingSearcher
from knowledge.search import HybridSearcher

RECALL_AT = (1, 3, 5, 10)


@dataclass(frozen=True)
class EvalQuestion:
    """One question: its gold answers and the ids of the passages that contain them."""

    id: str
    question: str
    answers: tuple[str, ...]
    positive_ids: tuple[str, ...]


def load_questions(path: Path) -> list[EvalQuestion]:
    """Read questions.jsonl (`id, question, answers[], positive_ids[]`)."""
    questions = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                questions.append(
                    EvalQuestion(
                        id=str(row["id"]),
                        question=str(row["question"]),
                        answers=tuple(str(a) for a in row.get("answers", [])),
                        positive_ids=tuple(str(p) for p in row.get("positive_ids", [])),
                    )
                )
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise BadDocumentError(
                    f"{path.name} line {number} is not a question object ({exc})."
                ) from None
    return questions


def ranked_documents(external_ids: Iterable[str], depth: int) -> list[str]:
    """Distinct document ids in first-seen order, at most `depth` of them."""
    return list(dict.fromkeys(external_ids))[:depth]


@dataclass(frozen=True)
class RetrievalScores:
    """recall@k, MRR@10, question count and search latency percentiles."""

    recall: dict[int, float]
    mrr_at_10: float
    n: int
    p50_ms: float
    p95_ms: float

    def as_dict(self) -> dict[str, float | int]:
        """The JSON keys scripts rely on."""
        out: dict[str, float | int] = {f"recall@{k}": round(v, 4) for k, v in self.recall.items()}
        out.update(
            {
                "mrr@10": round(self.mrr_at_10, 4),
                "n": self.n,
                "p50_ms": round(self.p50_ms, 2),
                "p95_ms": round(self.p95_ms, 2),
            }
        )
        return out


def score_rankings(
    rankings: Sequence[Sequence[str]], positives: Sequence[Sequence[str]]
) -> tuple[dict[int, float], float]:
    """recall@k for k in RECALL_AT and MRR@10; empty rankings count as misses."""
    n = len(rankings)
    if n == 0:
        return dict.fromkeys(RECALL_AT, 0.0), 0.0
    recall = dict.fromkeys(RECALL_AT, 0.0)
    reciprocal = 0.0
    for ranking, positive in zip(rankings, positives, strict=True):
        gold = set(positive)
        first = next((i for i, doc in enumerate(ranking[:10], 1) if doc in gold), None)
        if first is not None:
            reciprocal += 1.0 / first
            for k in RECALL_AT:
                recall[k] += first <= k
    return {k: v / n for k, v in recall.items()}, reciprocal / n


def evaluate_retrieval(
    searcher: HybridSearcher | RerankingSearcher,
    questions: Sequence[EvalQuestion],
    *,
    depth: int = 10,
    progress: Callable[[], object] | None = None,
    vectors: np.ndarray | None = None,
) -> RetrievalScores:
    """Ask every question, map chunks back to document ids and score the rankings.

    Latency includes embedding each question, unless `vectors` gives them already embedded
    (row i for question i: tests that score several retrievers embed once).
    """
    if vectors is not None and len(vectors) != len(questions):
        raise ValueError(f"{len(vectors)} vectors for {len(questions)} questions")
    rankings, latencies = [], []
    # Several chunks can come from one passage: fetch enough to fill `depth` distinct ones.
    chunk_depth = depth * 4
    for number, question in enumerate(questions):
        started = time.perf_counter()
        if vectors is None:
            hits = searcher.search(question.question, k=chunk_depth)
        else:
            hits = searcher.search_with_vector(question.question, vectors[number], chunk_depth)
        latencies.append((time.perf_counter() - started) * 1000)
        rankings.append(ranked_documents((h.external_id for h in hits), max(depth, 10)))
        if progress is not None:
            progress()
    recall, mrr = score_rankings(rankings, [q.positive_ids for q in questions])
    p50, p95 = (float(np.percentile(latencies, p)) for p in (50, 95)) if latencies else (0, 0)
    return RetrievalScores(recall, mrr, len(questions), p50, p95)
