"""Tidying a model's answer: no boilerplate lead-in, citation markers only for given sources."""

from __future__ import annotations

import re

# Lead-ins small models put before the answer ("The answer to your question is: ..."). They say
# nothing, and in a chat of short answers they are most of what a reader sees.
_LEAD_IN = re.compile(
    r"""^\s*(?:
        the\s+(?:short\s+)?answer(?:\s+to\s+(?:this|the|your)\s+question)?\s+is\s*[:\-]?
      | answer(?:\s+to\s+(?:this|the|your)\s+question)?(?:\s+is)?\s*:
      | (?:according\s+to|based\s+on)\s+(?:the\s+)?(?:sources?|documents?|text)(?:\s*\[\d+\])?\s*,
    )\s*""",
    re.IGNORECASE | re.VERBOSE,
)
_CITATION = re.compile(r"\s*\[(\d{1,2})\]")
# The prompt's own labels, which a small model sometimes repeats: "Earlier question: … ?" is the
# previous question given beside a follow-up's sources, never part of an answer.
_PROMPT_LABELS = re.compile(
    r"(?:^|(?<=\s))(?:earlier\s+question|question|sources?)\s*:[^\n?]*\??\s*", re.IGNORECASE
)
_QUOTED = re.compile(r'^["“](?P<inner>[^"“”]+)["”](?P<tail>(?:\s*\[\d{1,2}\])*[.!]?)$')


def tidy_answer(text: str, sources: int) -> str:
    """`text` without a lead-in or wrapping quotes, and without `[n]` for n outside 1..sources."""
    tidied = _PROMPT_LABELS.sub("", text.strip()).strip()
    tidied, lead_ins = _LEAD_IN.subn("", tidied, count=1)
    if (quoted := _QUOTED.match(tidied)) is not None:
        tidied = quoted["inner"].strip() + quoted["tail"]

    def keep_valid(match: re.Match[str]) -> str:
        return match.group(0) if 1 <= int(match.group(1)) <= sources else ""

    tidied = _CITATION.sub(keep_valid, tidied).strip()
    if not tidied:
        return text.strip()  # never tidy an answer away
    return tidied[0].upper() + tidied[1:] if lead_ins else tidied


# Openings a lead-in may still become, while it is being written ("The answer to this"…).
_LEAD_IN_OPENINGS = ("the", "answer", "according", "based")
_LEAD_IN_MAX_WORDS = 8


def draft_text(text: str) -> str:
    """The part of an answer still being written that is shown: a lead-in is never shown, and
    while the first words may still turn out to be one, nothing is ("" until then)."""
    stripped = text.lstrip()
    if (found := _LEAD_IN.match(stripped)) is not None:
        rest = stripped[found.end() :]
        return rest[:1].upper() + rest[1:]
    words = stripped.split()
    if words and len(words) < _LEAD_IN_MAX_WORDS and words[0].lower() in _LEAD_IN_OPENINGS:
        return ""  # it may still be "The answer to your question is: …"
    return stripped
