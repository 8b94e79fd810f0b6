from __future__ import annotations

from pathlib import Path

import pytest

from knowledge.embeddings import SentenceTransformerEmbedder
from knowledge.evaluation import (
    RetrievalScores,
    evaluate_retrieval,
    load_questions,
    ranked_documents,
    score_rankings,
)
from knowledge.search import RETRIEVERS, HybridSearcher, SearchSettings
from knowledge.store import KnowledgeStore


def test_recall_and_mrr_by_hand() -> None:
    rankings = [["a", "b"], ["x", "y", "b"], [], ["z"] * 10 + ["b"]]
    recall, mrr = score_rankings(rankings, [["a"], ["b"], ["b"], ["b"]])
    assert recall == {1: 0.25, 3: 0.5, 5: 0.5, 10: 0.5}
    assert mrr == pytest.approx((1 + 1 / 3) / 4)


def test_chunks_map_back_to_distinct_documents() -> None:
    assert ranked_documents(["p1", "p1", "p2", "p3", "p2"], 2) == ["p1", "p2"]


# Floors each dev set must keep (README "Retrieval"; measured there, less a small margin), and
# on both, fusion must be at least as good as the better of its two halves.
RETRIEVAL_FLOORS = {
    "dev": {"recall@1": 0.94, "recall@5": 0.99, "mrr@10": 0.965},
    "dev-finance": {"recall@1": 0.77, "recall@5": 0.905, "mrr@10": 0.83},
}


def _compare_retrievers(
    store: KnowledgeStore, embedder: SentenceTransformerEmbedder, eval_dir: Path
) -> dict[str, RetrievalScores]:
    questions = load_questions(eval_dir / "questions.jsonl")
    vectors = embedder.embed([q.question for q in questions])
    scores: dict[str, RetrievalScores] = {}
    for retriever in RETRIEVERS:
        searcher = HybridSearcher(store, embedder, SearchSettings(retriever=retriever))
        try:
            scores[retriever] = evaluate_retrieval(searcher, questions, vectors=vectors)
        finally:
            searcher.close()
    return scores


def _assert_floors_and_fusion(scores: dict[str, RetrievalScores], floors: dict[str, float]) -> None:
    hybrid = scores["hybrid"].as_dict()
    below = {key: hybrid[key] for key, floor in floors.items() if hybrid[key] < floor}
    assert not below, f"hybrid fell below its floors {floors}: {hybrid}"
    for key in ("recall@5", "mrr@10"):
        halves = max(scores["keyword"].as_dict()[key], scores["vector"].as_dict()[key])
        assert hybrid[key] >= halves, (key, {r: s.as_dict() for r, s in scores.items()})


@pytest.mark.slow
def test_dev_set_keeps_its_retrieval_floors(
    dev_store: KnowledgeStore, real_embedder: SentenceTransformerEmbedder, dev_eval_dir: Path
) -> None:
    """XQuAD dev (1,190 q): the README's figures, and hybrid >= its better half."""
    scores = _compare_retrievers(dev_store, real_embedder, dev_eval_dir)
    assert scores["hybrid"].n == 1190
    _assert_floors_and_fusion(scores, RETRIEVAL_FLOORS["dev"])


@pytest.mark.slow
def test_finance_set_keeps_its_retrieval_floors(
    finance_store: KnowledgeStore,
    real_embedder: SentenceTransformerEmbedder,
    finance_eval_dir: Path,
) -> None:
    """TAT-QA dev (373 q, annual reports): out of the embedder's domain, fusion still wins."""
    scores = _compare_retrievers(finance_store, real_embedder, finance_eval_dir)
    assert scores["hybrid"].n == 373
    _assert_floors_and_fusion(scores, RETRIEVAL_FLOORS["dev-finance"])
