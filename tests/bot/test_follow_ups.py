"""The follow-up rule against real follow-ups and questions of their own (bot.core.follow_ups)."""

from __future__ import annotations

import pytest

from bot.core.answer import Answerer
from bot.core.follow_ups import is_follow_up
from bot.core.tidy import draft_text, tidy_answer
from tests.bot.follow_up_questions import FOLLOW_UPS, WRITTEN_AFTER_THE_RULE


@pytest.mark.parametrize(("previous", "question", "follows"), FOLLOW_UPS + WRITTEN_AFTER_THE_RULE)
def test_a_question_is_a_follow_up_only_when_it_leans_on_the_previous_one(
    previous: str, question: str, follows: bool
) -> None:
    history = [{"role": "user", "content": previous}, {"role": "assistant", "content": "..."}]
    assert is_follow_up(question) is follows
    assert Answerer.follows_up(question, history) == (previous if follows else None)  # type: ignore[arg-type]


def test_without_an_earlier_question_nothing_is_a_follow_up() -> None:
    assert Answerer.follows_up("and on Sunday?", []) is None


@pytest.mark.parametrize(
    "reply",
    ["Earlier question: When do you open? Closed on Sundays [1].",
     "Question: and on Sunday? Closed on Sundays [1]."],
)  # fmt: skip
def test_the_prompts_labels_never_reach_a_reply(reply: str) -> None:
    assert tidy_answer(reply, 1) == "Closed on Sundays [1]."


def test_a_draft_never_shows_a_lead_in_even_while_it_is_written() -> None:
    written, shown = "", []
    for piece in ["The", " answer", " to", " this", " question", " is", ":", " Tallinn", " [1]"]:
        written += piece
        shown.append(draft_text(written))
    assert shown == ["", "", "", "", "", "", "", "Tallinn", "Tallinn [1]"]
    assert draft_text("Tallinn is the capital") == "Tallinn is the capital"
