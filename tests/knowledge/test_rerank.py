"""The second stage's ordering rule and its wiring around the real first stage.

The cross-encoder here is a small scorer of our own (a real PairScorer): what is tested is which
chunks the second stage reads, how it reorders them and when the first stage's top hit stays.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from knowledge.errors import KnowledgeError
from knowledge.ingest import Ingestor
from knowledge.rerank import RerankingSearcher, RerankSettings, rerank_order, reranker_info
from knowledge.search import HybridSearcher
from knowledge.store import KnowledgeStore
from tests.helpers import HashEmbedder


class WordScorer:
    """Scores a passage by how often it holds one chosen word; records what it read."""

    trained_question_ids = frozenset({"q-trained"})

    def __init__(self, word: str) -> None:
        self.word = word
        self.read: list[list[str]] = []

    def score(self, question: str, passages: Sequence[str]) -> list[float]:
        self.read.append(list(passages))
        return [10.0 * passage.lower().count(self.word) for passage in passages]


def test_order_follows_the_cross_encoder_when_the_first_stage_has_no_say() -> None:
    assert rerank_order([0.0, 5.0, 2.0], [3.0, 2.0, 1.0], first_stage_weight=0.0) == [1, 2, 0]


def test_the_first_stage_keeps_its_share_of_the_order() -> None:
    # The cross-encoder prefers candidate 1 by a hair; the first stage prefers 0 by far.
    assert rerank_order([4.9, 5.0, 0.0], [1.0, 0.1, 0.0], first_stage_weight=0.35) == [0, 1, 2]
    # A clear preference of the cross-encoder wins over a small one of the first stage.
    assert rerank_order([0.0, 5.0, 0.1], [1.0, 0.9, 0.0], first_stage_weight=0.35) == [1, 0, 2]
    assert rerank_order([], [], first_stage_weight=0.35) == []
    assert rerank_order([1.0, 1.0], [1.0, 1.0], first_stage_weight=0.35) == [0, 1]
    with pytest.raises(ValueError):
        rerank_order([1.0], [1.0, 2.0], first_stage_weight=0.35)


def test_reranking_reorders_only_the_first_stage_best_depth(
    tmp_path: Path, store: KnowledgeStore
) -> None:
    texts = {f"doc{i}.txt": f"server notes number {i}. " + ("port 11434. " if i == 3 else "")
             for i in range(6)}  # fmt: skip
    for name, text in texts.items():
        (tmp_path / name).write_text(text)
    embedder = HashEmbedder()
    Ingestor(store, embedder).add_paths([tmp_path / name for name in texts])
    first = HybridSearcher(store, embedder)
    before = first.search("server notes", k=6)
    scorer = WordScorer("11434")
    searcher = RerankingSearcher(first, scorer, RerankSettings(depth=6, first_stage_weight=0.0))
    after = searcher.search("server notes", k=6)
    assert after[0].chunk.title == "doc3"
    assert sorted(h.chunk.id for h in after) == sorted(h.chunk.id for h in before)
    assert len(scorer.read) == 1 and len(scorer.read[0]) == 6
    shallow = RerankingSearcher(first, scorer, RerankSettings(depth=2, first_stage_weight=0.0))
    top_two = [h.chunk.id for h in before[:2]]
    kept = shallow.search("server notes", k=6)
    assert [h.chunk.id for h in kept[2:]] == [h.chunk.id for h in before[2:]]
    assert sorted(h.chunk.id for h in kept[:2]) == sorted(top_two)
    assert searcher.trained_question_ids == frozenset({"q-trained"})
    searcher.close()


def test_a_folder_without_a_manifest_is_said_in_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(KnowledgeError, match=r"not a built reranker.*make reranker"):
        reranker_info(tmp_path)
