from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bot.app import build_searcher
from bot.config import Settings
from knowledge.embeddings import SentenceTransformerEmbedder
from knowledge.evaluation import load_questions
from knowledge.ingest import Ingestor
from knowledge.search import HybridSearcher, SearchSettings, fuse_scores
from knowledge.store import KnowledgeStore
from tests.helpers import HashEmbedder

DOCS = {
    "cats.txt": "Cats sleep up to sixteen hours a day. A cat purrs when it is content.",
    "trains.txt": "The night train to Vienna leaves from platform 4 at 22:10.",
    "codes.txt": "Error XK-4471 means the coolant pump has stalled; restart the pump.",
    "tea.txt": "Green tea should steep for two minutes in water at eighty degrees.",
    "长城.txt": "长城是中国古代的军事防御工程，全长两万多公里。",
}


def _kb(tmp_path: Path, store: KnowledgeStore, embedder: SentenceTransformerEmbedder) -> None:
    for name, text in DOCS.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    Ingestor(store, embedder).add_paths([tmp_path / name for name in DOCS])


def test_meaning_finds_a_passage_without_shared_words(
    tmp_path: Path, store: KnowledgeStore, real_embedder: SentenceTransformerEmbedder
) -> None:
    _kb(tmp_path, store, real_embedder)
    hits = HybridSearcher(store, real_embedder).search("How long do felines nap?", k=3)
    assert hits[0].chunk.title == "cats"
    assert hits[0].vector_rank == 1 and hits[0].keyword_rank is None
    assert hits[0].similarity > hits[-1].similarity


def test_exact_codes_are_found_by_keyword(
    tmp_path: Path, store: KnowledgeStore, real_embedder: SentenceTransformerEmbedder
) -> None:
    _kb(tmp_path, store, real_embedder)
    (hit,) = HybridSearcher(store, real_embedder).search("XK-4471", k=1)
    assert hit.chunk.title == "codes" and hit.keyword_rank == 1


def test_chinese_text_is_found_by_keywords(
    tmp_path: Path, store: KnowledgeStore, real_embedder: SentenceTransformerEmbedder
) -> None:
    _kb(tmp_path, store, real_embedder)
    hits = HybridSearcher(store, real_embedder).search("长城有多长？", k=2)
    assert hits[0].chunk.title == "长城" and hits[0].keyword_rank == 1


def test_hits_carry_what_a_citation_needs(
    tmp_path: Path, store: KnowledgeStore, real_embedder: SentenceTransformerEmbedder
) -> None:
    _kb(tmp_path, store, real_embedder)
    hits = HybridSearcher(store, real_embedder).search("train to Vienna", k=2)
    assert len(hits) == 2
    top = hits[0].as_dict()
    assert top["title"] == "trains"
    assert top["source"] == str((tmp_path / "trains.txt").resolve())
    assert top["position"] == 0 and "platform 4" in str(top["text"])
    assert isinstance(top["document_id"], int) and hits[0].score > hits[1].score


def test_binary_scan_with_rescoring_matches_exact_search(
    dev_store: KnowledgeStore, real_embedder: SentenceTransformerEmbedder, dev_eval_dir: Path
) -> None:
    """The 1-bit coarse pass, re-scored exactly, keeps the true neighbours of real vectors."""
    all_ids = [c.id for batch in dev_store.iter_chunks() for c in batch]
    questions = load_questions(dev_eval_dir / "questions.jsonl")[::6]
    vectors = real_embedder.embed([q.question for q in questions])
    found = 0
    for vector in vectors:
        distances = dev_store.cosine_distances(all_ids, vector)
        exact = set(sorted(distances, key=distances.__getitem__)[:10])
        # 50 coarse candidates out of ~560 chunks: the Hamming pass has real work to do.
        approx = {i for i, _ in dev_store.nearest_chunks(vector, 10, candidates=50)}
        found += len(exact & approx)
    assert found / (10 * len(vectors)) >= 0.95


def test_fusion_leaves_the_order_to_the_retriever_that_tells_passages_apart() -> None:
    """A flat retriever (same cosine everywhere) adds the same to every candidate."""
    fused = fuse_scores([0.31, 0.30, 0.31], [2.0, 9.0, 4.0], vector_weight=0.4)
    assert list(np.argsort(-fused)) == [1, 2, 0]
    # Both agree on the best: it scores 1; a negative cosine counts as no similarity at all.
    assert fuse_scores([0.8, -0.5], [5.0, 1.0], 0.4) == pytest.approx([1.0, 0.6 * 0.2])


def test_weights_pick_the_retriever() -> None:
    assert SearchSettings().weights() == pytest.approx((0.4, 0.6))
    assert SearchSettings(vector_weight=0).weights() == (0.0, 1.0)
    assert SearchSettings(retriever="vector").weights() == (1.0, 0.0)
    assert SearchSettings(retriever="keyword", vector_weight=3).weights() == (0.0, 1.0)
    assert SearchSettings(vector_weight=0, keyword_weight=0).weights() == (1.0, 0.0)
    # The retriever wins over weights: `--compare`'s keyword row is keywords whatever the env.
    assert SearchSettings(retriever="keyword", keyword_weight=0).weights() == (0.0, 1.0)


def test_candidates_with_no_positive_score_keep_their_cosine_order(
    store: KnowledgeStore,
) -> None:
    """All cosines <= 0 and no keyword match: the order is still by similarity."""
    embedder = HashEmbedder(dimension=8)
    for text in ("alpha beta", "gamma delta", "epsilon zeta", "eta theta", "iota kappa"):
        Ingestor(store, embedder).add_text(text, title=text, external_id=text, source="test")
    hits = HybridSearcher(store, embedder, SearchSettings(retriever="vector")).search("rho", k=5)
    similarities = [h.similarity for h in hits]
    assert max(similarities) <= 0 and min(similarities) < 0  # the case this test is about
    assert similarities == sorted(similarities, reverse=True)


def test_configured_defaults_are_the_searchers_defaults(store: KnowledgeStore) -> None:
    """Settings() and SearchSettings() must not drift apart (the README quotes one set)."""
    searcher = build_searcher(Settings(_env_file=None), store, HashEmbedder())
    assert searcher.settings == SearchSettings()


def test_keyword_only_and_vector_only_search_use_one_list(
    tmp_path: Path, store: KnowledgeStore, real_embedder: SentenceTransformerEmbedder
) -> None:
    _kb(tmp_path, store, real_embedder)
    by_keyword = HybridSearcher(store, real_embedder, SearchSettings(retriever="keyword"))
    by_vector = HybridSearcher(store, real_embedder, SearchSettings(retriever="vector"))
    # No shared word: keywords find nothing, meaning finds the cats.
    assert by_keyword.search("How long do felines nap?", k=3) == []
    hits = by_vector.search("How long do felines nap?", k=3)
    assert hits[0].chunk.title == "cats" and all(h.keyword_rank is None for h in hits)
    (hit,) = by_keyword.search("XK-4471", k=1)
    assert hit.chunk.title == "codes" and hit.vector_rank is None and hit.similarity > 0
