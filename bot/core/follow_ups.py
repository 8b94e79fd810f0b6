"""Follow-ups: whether a question leans on the previous one for its meaning.

"and on Sunday?" or "How much does it cost?" mean nothing alone: the previous question is
searched with them. "I only carry cash, is that a problem?" reads whole, although it says
"that": gluing the previous (dog) question to it found the dog section. Without a parser, four
signs of English that a question cannot stand alone, each measured on a set of real follow-ups
and questions of their own (tests/bot/follow_up_questions.py; README, "Follow-ups"):

- an opening that continues ("what about …", "how about …", "same for …"), or "and …" / "also
  …" before a fragment with no verb of its own ("and on Sunday?", but not "And is there wifi?");
- a pronoun that points outside the question: "it", "they", "one", "there" as a place ("live
  there", not "is there"), "that"/"this" standing alone ("is that right", not "that soup") —
  unless an earlier clause of the same question gives it something to point at, or "it" is the
  empty subject of "is it possible to …";
- a short fragment (at most four words) with no auxiliary verb that opens with a preposition or a
  question word ("For how many people?", "Why?", "Which ones?"; not "Which team won Super Bowl
  50?", whose verb is no auxiliary).
"""

from __future__ import annotations

import re

_AUXILIARIES = frozenset(
    "is are was were am be been do does did can could will would shall should may might must "
    "has have had isn't aren't wasn't weren't don't doesn't didn't can't couldn't won't "
    "wouldn't shouldn't hasn't haven't 's".split()
)
_CONTINUING = ("what about ", "how about ", "what of ", "same ")
_JOINING = ("and ", "also ", "but ", "or ", "plus ")
_PRONOUNS = frozenset("it its they them their theirs he him his she her one ones".split())
_DEMONSTRATIVES = frozenset("that this these those".split())
# Words after a demonstrative that make it a pronoun ("is that a problem", "that is"), not a
# determiner ("that soup").
_AFTER_A_PRONOUN = frozenset("a an the for in on at to with of".split()) | _AUXILIARIES
_PREPOSITIONS = frozenset(
    "for in on at by with from to about during after before until since near per".split()
)
_QUESTION_WORDS = frozenset("why which what who whom whose when where how".split())
_FRAGMENT_WORDS = 4
_WORD = re.compile(r"[a-z']+|\d+")


def _clauses(question: str) -> list[list[str]]:
    return [_WORD.findall(part) for part in re.split(r"[,;:]", question.lower())]


def _points_outside(words: list[str]) -> bool:
    """Whether a clause holds a pronoun that needs an antecedent outside it."""
    for i, word in enumerate(words):
        after = words[i + 1] if i + 1 < len(words) else ""
        before = words[i - 1] if i else ""
        if word == "it" and (
            before in _AUXILIARIES and i + 2 < len(words) and words[i + 2] == "to"
        ):
            continue  # "is it possible to …": the empty subject
        if word in _PRONOUNS:
            return True
        if word == "there" and before not in _AUXILIARIES and after not in _AUXILIARIES:
            return True  # "live there"; "is there" and "there is" point nowhere
        if word in _DEMONSTRATIVES and (not after or after in _AFTER_A_PRONOUN):
            return True
    return False


def is_follow_up(question: str) -> bool:
    """Whether `question` leans on the previous question for its meaning."""
    lowered = " ".join(question.lower().split())
    clauses = [c for c in _clauses(lowered) if c]
    if not clauses:
        return False
    words = [w for clause in clauses for w in clause]
    has_verb = any(w in _AUXILIARIES for w in words)
    if lowered.startswith(_CONTINUING):
        return True
    if lowered.startswith(_JOINING) and not has_verb:
        return True
    # Only the first clause can point outside: a later one points at the clauses before it.
    if _points_outside(clauses[0]):
        return True
    fragment = not has_verb and len(words) <= _FRAGMENT_WORDS
    return fragment and (words[0] in _PREPOSITIONS or words[0] in _QUESTION_WORDS)
