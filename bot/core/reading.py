"""What a read span is shown as: the span itself, or for a yes/no question its whole sentence.

The span reader (bot.llm.span_reader) points at the words of a source that answer the question:
"Kawann Short", "the modified retrospective method". Shown alone with the sentence it came from
quoted under it, that is a short answer a reader can check. A yes/no question ("Can I pay with
cash?") has no span that answers it — "cash" would read as a yes — so its reply is the sentence
that holds the span ("It does not accept cash."), which carries its own sign. So is a span the
reader is unsure of: when the span is wrong, its sentence is often right.
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.llm.span_reader import Span
from knowledge.chunking import split_sentences

# Questions that open with an auxiliary verb ask for yes or no.
_POLAR_OPENINGS = frozenset(
    "is are was were am do does did can could will would shall should may might must has have "
    "had isn't aren't wasn't weren't don't doesn't didn't can't couldn't won't wouldn't "
    "shouldn't hasn't haven't".split()
)


def is_yes_no(question: str) -> bool:
    """Whether `question` asks for yes or no (it opens with an auxiliary verb)."""
    words = question.strip().lower().split(maxsplit=1)
    return bool(words) and words[0].strip("¿¡\"'“(") in _POLAR_OPENINGS


def holding_sentence(text: str, start: int) -> str:
    """The sentence of `text` that holds the character at `start`."""
    position = 0
    for sentence in split_sentences(text):
        found = text.find(sentence, position)
        if found < 0:
            continue
        position = found + len(sentence)
        if start < position:
            return sentence
    return text.strip()


def span_reply(
    question: str, span: str, start: int, source: str, *, sure: bool = True
) -> tuple[str, list[str]]:
    """(the reply, the evidence quoted under it) for `span`, found at `start` of `source`;
    a span the reader is not `sure` of is replied with its sentence, which holds the answer
    more often than the span does."""
    sentence = holding_sentence(source, start)
    if not sure or is_yes_no(question) or not span.strip():
        return sentence, [sentence]
    return span.strip(), [sentence]


def ranked_span(spans: Sequence[Span | None], margin: float) -> Span | None:
    """The span of the best-ranked source, unless a lower-ranked source's span is more confident
    by at least `margin`: search rank is evidence too, and the reader is confidently wrong on a
    near-miss source about as often as it is right on the one search missed."""
    chosen: Span | None = None
    for span in spans:
        if span is not None and (chosen is None or span.confidence >= chosen.confidence + margin):
            chosen = span
    return chosen


def reader_can_read(question: str) -> bool:
    """Whether the span reader, trained on English, should read `question`: most of its letters
    are Latin. A Chinese question went to the reader and got a vegan-menu sentence for "When
    does the café open on Saturday?"; the chat model answers it in Chinese."""
    letters = [c for c in question if c.isalpha()]
    latin = sum(c.isascii() or "\u00c0" <= c <= "\u024f" for c in letters)
    return bool(letters) and latin >= 0.5 * len(letters)
