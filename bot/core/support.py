"""Support: whether a model's answer holds up against its sources, and what to say when not.

A 135M model often answers with the right source in front of it and still gets it wrong, in
two ways a rule can see without understanding the text:

- it **invents a number** ("8:30am-10:30am" for "from 8 am to 6 pm"): a figure that is in no
  source and not in the question cannot have come from them;
- it **says nothing new**: "No.", "No, you cannot bring your dog inside.", "Harbour Street
  Café." — every meaning-carrying word is already in the question or the document's title, so
  the answer is a bare yes/no (whose sign a small model gets wrong as often as right) or a
  repetition.

- it **invents a term**: an environment variable spelled `olmaju_context_length`, a `-d` option,
  a command, a file name, a quoted string or a name that no source holds — identifiers are
  copied, never paraphrased, so one the sources do not hold did not come from them.

Either way the reader is better served by the source sentences the answer would rest on
(bot.core.evidence), quoted as the reply. The effect on both dev sets is measured by
`ragtune eval answers --json` (`reply_contains`, `replaced`; README, "Checked answers").
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from bot.core.evidence import content_words

# Digit runs, so "1,200" and "1200" both count as the figures they are made of.
_DIGITS = re.compile(r"\d+")
_CITATION = re.compile(r"\[\d{1,2}\]")
# Words that only give an answer its sign or its grammar; content_words keeps them.
_POLARITY = frozenset(
    "cannot can't cant don't dont doesn't doesnt isn't isnt aren't arent won't wont not no yes "
    "yeah nope sure only also you're youre i'm im we're were please sorry".split()
)


# Terms that are copied exactly or not at all: `code`, "quoted strings", snake_case and
# UPPER_CASE names, camelCase, -options and --options, /commands and /paths, dotted names
# (ollama.service), words mixing letters and digits (llama3, q4_0).
_TERMS = re.compile(
    r"""`(?P<code>[^`\n]{1,80})`
    | ["“](?P<quoted>[^"”\n]{2,80})["”]
    | (?<![\w/.-])(?P<word>
          -{1,2}[A-Za-z][\w-]*
        | /[A-Za-z][\w./-]*
        | \w+(?:[._]\w+)+
        | [a-z]+[A-Z]\w*
        | [A-Z]{2,}\w*
        | [A-Za-z]+\d\w* )""",
    re.VERBOSE,
)
# A capitalised word inside a sentence is a name ("the Broncos", "Dr Smith"); the first word of
# a sentence and "I" are capitalised anyway.
_NAME = re.compile(r"(?<=[a-z,;:] )[A-Z][a-z]+\b")


def invented_terms(answer: str, known: str) -> list[str]:
    """Identifiers, options, commands, quoted strings and names of `answer` that `known`
    (the sources and the question) does not hold."""
    folded = " ".join(known.split()).casefold()
    invented: list[str] = []
    for found in _TERMS.finditer(answer):
        term = (found["code"] or found["quoted"] or found["word"]).strip().rstrip(".,;:")
        if term and " ".join(term.split()).casefold() not in folded:
            invented.append(term)
    for found in _NAME.finditer(answer):
        if not re.search(rf"\b{re.escape(found[0].casefold())}\b", folded):
            invented.append(found[0])
    return invented


def unsupported(answer: str, question: str, sources: Sequence[str], titles: Sequence[str]) -> str:
    """Why `answer` does not hold up against `sources` ("" when it does)."""
    answer = _CITATION.sub(" ", answer)  # "[1]" is a citation, not a figure
    known = " ".join([question, *sources, *titles])
    if set(_DIGITS.findall(answer)) - set(_DIGITS.findall(known)):
        return "a number in no source"
    if invented := invented_terms(answer, known):
        return f"a term in no source ({invented[0][:40]})"
    said = content_words(answer) - _POLARITY
    if not said - content_words(" ".join([question, *titles])):
        return "nothing beyond the question"
    return ""


def quoted_reply(evidence: Sequence[str], citation: str) -> str:
    """The reply that quotes the source sentences instead of an answer that did not hold up."""
    return " ".join(evidence) + (f" {citation}" if citation else "")
