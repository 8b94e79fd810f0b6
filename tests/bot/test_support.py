"""Checked answers: unsupported model words are replaced by the quoted sources, others kept."""

from __future__ import annotations

import pytest

from bot.core.support import quoted_reply, unsupported

HOURS = "The café is open from 8 am to 6 pm on weekdays. It is closed on Sundays."
TITLE = "Harbour Street Café: questions and answers"


@pytest.mark.parametrize(
    ("answer", "question", "reason"),
    [
        ("8:30am-10:30am.", "What time do you open on weekdays?", "a number in no source"),
        ("It opens at 7.", "When do you open?", "a number in no source"),
        ("No.", "Do you have vegan food?", "nothing beyond the question"),
        ("No, you cannot bring your dog inside.", "Can I bring my dog inside?",
         "nothing beyond the question"),
        ("Harbour Street Café.", "Where can I park my car?", "nothing beyond the question"),
        ("Yes, 2 euros an hour [1].", "Is it 2 euros an hour?", "nothing beyond the question"),
    ],
)  # fmt: skip
def test_invented_numbers_and_answers_that_add_nothing_do_not_hold_up(
    answer: str, question: str, reason: str
) -> None:
    assert unsupported(answer, question, [HOURS], [TITLE]) == reason


@pytest.mark.parametrize(
    ("answer", "question"),
    [
        ("From 8 am to 6 pm [1].", "What time do you open on weekdays?"),
        ("It is closed on Sundays.", "Are you open on Sundays?"),
        ("Closed.", "Are you open on Sundays?"),
        ("I don't know.", "Who founded the café?"),
        ("The 2 pm tour is full [1].", "Is there a tour at 2 pm?"),  # the question's figure
        ("星期日不营业。", "星期日营业吗？"),
    ],
)
def test_answers_with_something_of_their_own_and_no_invented_figure_are_kept(
    answer: str, question: str
) -> None:
    assert unsupported(answer, question, [HOURS], [TITLE]) == ""


def test_the_quoted_reply_is_the_sentences_with_their_citation() -> None:
    assert quoted_reply(["It is closed on Sundays."], "[1]") == "It is closed on Sundays. [1]"
    assert quoted_reply(["A.", "B."], "") == "A. B."


PROXY = (
    "Use `HTTPS_PROXY` to redirect outbound requests through the proxy. To keep a model "
    "loaded, run `ollama run llama3.2` with the keep_alive parameter. Set OLLAMA_MODELS to the "
    'folder. The log says "cloud disabled: true". Ask Dr Ruth Perez.'
)


@pytest.mark.parametrize(
    ("answer", "term"),
    [
        ("Set olmaju_context_length to the size.", "olmaju_context_length"),
        ("Use HTTP_PROXY.", "HTTP_PROXY"),
        ("Pass the -d option.", "-d"),
        ("Run `ollama keep llama3.2`.", "ollama keep llama3.2"),
        ("Run /api/keep first.", "/api/keep"),
        ("Edit ollama.service and restart.", "ollama.service"),
        ("Use the keepAlive setting.", "keepAlive"),
        ("Pull mistral3 instead.", "mistral3"),
        ('The log says "cloud enabled".', "cloud enabled"),
        ("Ask Dr Ruth Gomez.", "Gomez"),
    ],
)
def test_a_term_the_sources_do_not_hold_is_unsupported(answer: str, term: str) -> None:
    """Identifiers are copied or not at all: an invented one is flagged, whatever its form."""
    assert unsupported(answer, "How do I use a proxy?", [PROXY], ["FAQ"]) == (
        f"a term in no source ({term})"
    )


@pytest.mark.parametrize(
    "answer",
    [
        "Use `HTTPS_PROXY` to redirect requests [1].",
        "Set https_proxy.",  # the same name, in another case
        "Run `ollama   run llama3.2`.",  # spacing differs
        "Set OLLAMA_MODELS to the folder, as Dr Ruth Perez says.",
        'It says "cloud disabled: true".',
        "Use the keep_alive parameter.",
    ],
)
def test_terms_the_sources_hold_are_supported(answer: str) -> None:
    assert unsupported(answer, "How do I use a proxy?", [PROXY], ["FAQ"]) == ""
