"""The café scenario through the real bot, with the real default model: ten questions in one chat,
then each in a fresh chat.

Python-telegram-bot's real HTTP stack polls the local Bot API emulator; the bot is built by
bot.app from the defaults a user gets (only the question rate limit is off: one person asks ten
questions in a minute here). Greedy decoding makes a fresh chat's answer the answer to the
question alone; in one chat each answer must be that same answer, from the same sources, with
evidence from those sources: what was said before never overrides what the sources say (issue 14:
after four turns the 135M model answered five different questions with one earlier answer).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import NamedTuple

import pytest

from bot import app
from bot.config import Settings
from bot.core.answer import Answer
from bot.core.guard import WORD_JOINER
from bot.local.chat import terminal_text
from bot.local.emulator import BotAPIEmulator
from bot.tg.context import BotServices
from knowledge.embeddings import SentenceTransformerEmbedder
from knowledge.ingest import Ingestor
from knowledge.store import KnowledgeStore
from tests.bot.cafe_questions import CAFE_FAQ, REWORDED_CAFE_QUESTIONS, is_right
from tests.bot.test_telegram import run_bot

pytestmark = pytest.mark.slow
IN_A_ROW = 1
"""The customer who asks all ten questions in one chat; fresh chats are 100, 101, …"""


class Reply(NamedTuple):
    """A final answer message, taken apart as the reader sees it."""

    answer: str
    evidence: str
    sources: str


def final_reply(emulator: BotAPIEmulator, chat: int) -> Reply:
    """The chat's finished answer: the one message sent as HTML (drafts are plain text)."""
    (final,) = [c for c in emulator.calls if int(c.params.get("chat_id", 0)) == chat
                and c.params.get("parse_mode") == "HTML"][-1:]  # fmt: skip
    text = str(final.params["text"])
    answer, _, rest = text.partition("\n\n")
    evidence = rest.partition("</blockquote>")[0] if rest.startswith("<blockquote>") else ""
    return Reply(
        *(terminal_text(part).replace(WORD_JOINER, "") for part in (answer, evidence, rest))
    )


def ask_through_the_bot(
    tmp_path: Path,
    emulator: BotAPIEmulator,
    embedder: SentenceTransformerEmbedder,
    document: Path,
    asked: list[tuple[int, str]],
) -> tuple[list[Reply], list[Answer]]:
    """Each (chat, question) asked through the real bot over `document`, in order: the final
    replies as the reader sees them, and the core's Answer behind each."""
    settings = Settings(
        _env_file=None, db=tmp_path / "kb.db", state_db=tmp_path / "state.db",
        adapters_dir=tmp_path / "adapters", questions_per_minute=0,
        telegram_bot_token=emulator.token, telegram_api_url=emulator.base_url,
        telegram_file_url=emulator.base_file_url, reader="auto",
    )  # fmt: skip
    with KnowledgeStore.open(settings.db) as store:  # in this process: no second embedder load
        assert not Ingestor(store, embedder).add_paths([document]).failures
    replies: list[Reply] = []
    answers: list[Answer] = []  # the core's Answer behind each reply: its sources and evidence
    built: list[BotServices] = []

    def build() -> tuple[BotServices, Callable[[], None]]:
        services, close = app.build_bot_services(settings, app.Backends(embedder=embedder))
        built.append(services)
        return services, close

    def answered(chat: int, before: int) -> bool:
        sent = emulator.sent("sendMessage", chat)[before:]
        return any(c.params.get("parse_mode") == "HTML" for c in sent)

    def scenario() -> None:
        for chat, question in asked:
            before = len(emulator.sent("sendMessage", chat))
            emulator.send_text(question, user_id=chat)
            emulator.wait_for(partial(answered, chat, before), timeout=120)
            replies.append(final_reply(emulator, chat))
            answer = built[0].chat.last_answer(f"tg:{chat}")
            assert answer is not None
            answers.append(answer)

    run_bot(settings, build, scenario)
    return replies, answers


def test_ten_questions_in_one_chat_are_answered_as_in_fresh_chats_each_from_its_sources(
    tmp_path: Path, emulator: BotAPIEmulator, real_embedder: SentenceTransformerEmbedder
) -> None:
    """The café's questions in new wording, written before the reader of issue 37 was built."""
    questions = REWORDED_CAFE_QUESTIONS
    asked = [(IN_A_ROW, q) for q, _ in questions]
    asked += [(100 + n, q) for n, (q, _) in enumerate(questions)]
    replies, answers = ask_through_the_bot(tmp_path, emulator, real_embedder, CAFE_FAQ, asked)
    in_a_row, fresh = replies[:10], replies[10:]
    for (question, _), chat, alone in zip(questions, in_a_row, fresh, strict=True):
        assert chat == alone, question  # the same answer, evidence and sources
    for (question, _), answer, reply in zip(questions, answers, in_a_row, strict=False):
        own_sources = " ".join(s.text for s in answer.sources)
        assert all(e in own_sources for e in answer.evidence), question
        if not answer.quoted:  # the evidence is what the reader sees under the answer
            assert all(e in reply.evidence for e in answer.evidence), question
    assert sum(bool(a.evidence) for a in answers[:10]) >= 8  # none only when no word is shared
    assert len({r.answer for r in in_a_row}) >= 8  # ten questions, not one answer repeated
    checks = [check for _, check in questions]
    right = sum(is_right(r.answer, c) for r, c in zip(in_a_row, checks, strict=True))
    right_fresh = sum(is_right(r.answer, c) for r, c in zip(fresh, checks, strict=True))
    # The model's own words (the reader's span, or the chat model's), before the safety net
    # that quotes the sources instead of words that do not hold up: issue 37 asks 8 of 10.
    own = sum(
        not a.quoted and is_right(a.model_text, c)
        for a, c in zip(answers[:10], checks, strict=True)
    )
    print(f"café through the bot: {right}/10 shown right in one chat, {right_fresh}/10 in fresh "
          f"chats; the model's own words right {own}/10")  # fmt: skip
    assert own >= 8
    assert right >= 8
    assert right_fresh >= 8
