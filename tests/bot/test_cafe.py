"""The café scenario with the real default model: ten questions in one chat, then in fresh chats.

Greedy decoding makes a fresh chat's answer the answer to the question alone; in one chat each
answer must be that same answer, from the same sources, with evidence from those sources: what
was said before never overrides what the sources say (issue 14: after four turns the 135M model
answered five different questions with one earlier answer).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bot import app
from bot.config import Settings
from bot.core.answer import Answer, Answerer
from bot.state import StateStore
from knowledge.embeddings import SentenceTransformerEmbedder
from knowledge.ingest import Ingestor
from knowledge.store import KnowledgeStore
from tests.bot.cafe_questions import CAFE_FAQ, CAFE_QUESTIONS, is_right

pytestmark = pytest.mark.slow


def test_ten_questions_in_one_chat_are_answered_as_in_fresh_chats_each_from_its_sources(
    tmp_path: Path, real_embedder: SentenceTransformerEmbedder
) -> None:
    settings = Settings(_env_file=None)  # the defaults a user gets: the default model
    store = KnowledgeStore.open(tmp_path / "kb.db")
    state = StateStore.open(tmp_path / "state.db")
    Ingestor(store, real_embedder).add_paths([CAFE_FAQ])
    worker = app.build_worker(settings, app.build_engine(settings))
    try:
        answerer = Answerer(worker, app.build_searcher(settings, store, real_embedder),
                            state=state, settings=app.answer_settings(settings))  # fmt: skip
        in_a_row = [answerer.ask(q, chat_key="tg:1") for q, _ in CAFE_QUESTIONS]
        fresh = [
            answerer.ask(q, chat_key=f"tg:{100 + n}") for n, (q, _) in enumerate(CAFE_QUESTIONS)
        ]
    finally:
        worker.close()
        state.close()
        store.close()

    def chunks(answer: Answer) -> list[int]:
        return [s.hit.chunk.id for s in answer.sources]

    for (question, _), chat, alone in zip(CAFE_QUESTIONS, in_a_row, fresh, strict=True):
        assert (chat.text, chunks(chat)) == (alone.text, chunks(alone)), question
        source_text = " ".join(s.text for s in chat.sources)
        assert all(e in source_text for e in chat.evidence), question
    assert sum(bool(a.evidence) for a in in_a_row) >= 8  # none only when no word is shared
    assert len({a.text for a in in_a_row}) >= 8  # ten questions, not one answer repeated
    right = sum(
        is_right(a.text, check) for a, (_, check) in zip(in_a_row, CAFE_QUESTIONS, strict=True)
    )
    right_fresh = sum(
        is_right(a.text, check) for a, (_, check) in zip(fresh, CAFE_QUESTIONS, strict=True)
    )
    print(f"café: {right}/10 right in one chat, {right_fresh}/10 in fresh chats")
    # What the reader is shown (the model's words, or the quoted sources where those did not
    # hold up: bot.core.support). Measured 9 and 9; issue 14 asks 8 in one chat, 9 fresh.
    assert right >= 8
    assert right_fresh >= 9
