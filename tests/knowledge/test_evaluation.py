from __future__ import annotations

from pathlib import Path

import pytest

from knowledge.embeddings import SentenceTransformerEmbedder
from knowledge.evaluation import (
    evaluate_retrieval,
    load_questions,
    ranked_documents,
    score_rankings,
)
from knowledge.search import HybridSearcher
from knowledge.store import KnowledgeStore


def test_recall_and_mrr_by_hand() -> None:
    rankings = [["a", "b"], ["x", "y", "b"], [], ["z"] * 10 + ["b"]]
    recall, mrr = score_rankings(rankings, [["a"], ["b"], ["b"], ["b"]])
    assert recall == {1: 0.25, 3: 0.5, 5: 0.5, 10: 0.5}
    assert mrr == pytest.approx((1 + 1 / 3) / 4)


def test_chunks_map_back_to_distinct_documents() -> None:
    assert ranked_documents(["p1", "p1", "p2", "p3", "p2"], 2) == ["p1", "p2"]


@pytest.mark.slow
def test_dev_set_meets_the_retrieval_targets(
    dev_store: KnowledgeStore, real_embedder: SentenceTransformerEmbedder, dev_eval_dir: Path
) -> None:
    """The README's figures: recall@5 >= 0.98 and MRR@10 >= 0.95 on XQuAD dev (1,190 q)."""
    questions = load_questions(dev_eval_dir / "questions.jsonl")
    scores = evaluate_retrieval(HybridSearcher(dev_store, real_embedder), questions)
    assert scores.n == 1190
    assert scores.recall[5] >= 0.98
    assert scores.mrr_at_10 >= 0.95
