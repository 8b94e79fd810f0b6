"""The product's claim, checked in CI on a slice of the dev set: RAG beats the bare model."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot import app
from bot.config import Settings
from bot.core.answer import Answerer, Mode
from bot.core.answer_eval import evaluate_answers
from bot.llm.worker import ModelWorker
from knowledge.embeddings import SentenceTransformerEmbedder
from knowledge.evaluation import load_questions
from knowledge.store import KnowledgeStore


@pytest.mark.slow
def test_rag_beats_base_on_answer_contains_by_30_points(
    dev_store: KnowledgeStore, real_embedder: SentenceTransformerEmbedder, dev_eval_dir: Path
) -> None:
    settings = Settings(_env_file=None)  # the defaults a user gets
    questions = load_questions(dev_eval_dir / "questions.jsonl")[::40]  # 30 across all articles
    worker = ModelWorker(app.build_engine(settings))
    try:
        searcher = app.build_searcher(settings, dev_store, real_embedder)
        answers = app.answer_settings(settings)
        rag = evaluate_answers(
            Answerer(worker, searcher, settings=answers), questions, mode=Mode.RAG
        )
        base = evaluate_answers(Answerer(worker, None, settings=answers), questions, mode=Mode.BASE)
    finally:
        worker.close()
    assert rag.n == base.n == 30
    assert rag.contains - base.contains >= 30, (rag.as_dict(), base.as_dict())
