"""Evidence: the source sentences an answer rests on, quoted under it so a reader can check it.

A small model's answer is often a copy of a few source words, or a wrong paraphrase of them;
either way the sentence it drew on is the one that shares most of its words. Sentences are
scored by the share of the answer's words they hold plus, weighted twice, the share of the
question's words (which also decides when the answer says too little, "Yes." or "No."). The
weight was measured on both dev sets (`python -m bench.evidence_rule`; README, "Evidence").
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from knowledge.chunking import split_sentences

QUESTION_WEIGHT = 2.0
"""Weight of the question's words beside the answer's: evidence_contains on XQuAD / TAT-QA was
72.7 / 88.1 at 0, 87.3 / 92.9 at 0.5, 89.1 / 97.6 at 2 (55 and 42 answers)."""
MAX_EVIDENCE = 2
SECOND_WITHIN = 0.8
"""A second sentence is quoted only when it scores at least this share of the best one."""
# Words that say nothing about which sentence is meant.
_STOPWORDS = frozenset(
    "a an the is are was were be been of in on at to for and or but not no yes it its this "
    "that these those there their they he she his her you your we our i my me do does did can "
    "with by from as what when where which who whom whose why how".split()
)
# Words of a sentence that tells its reader what to say. The guard already keeps sentences that
# address the model out of the prompt; a quote goes to the person, so it is stricter still: a
# legitimate sentence dropped here only loses its quote, a planted one would be shown as fact.
_TELLS_THE_READER = re.compile(
    r"\b(?:say|reply|respond|write|output|pretend|mention|ignore|disregard|instructions?|"
    r"override|prompt)\b",
    re.IGNORECASE,
)
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_WORD = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]|[^\W_]+")


def content_words(text: str) -> set[str]:
    """Lower-cased words that carry meaning; each CJK character counts as a word."""
    return {
        w
        for w in _WORD.findall(text.lower())
        if _CJK.match(w) or (w not in _STOPWORDS and (len(w) > 1 or w.isdigit()))  # not "s", "t"
    }


def _share(words: set[str], sentence: set[str]) -> float:
    return len(words & sentence) / len(words) if words else 0.0


def quote_evidence(answer: str, question: str, texts: Sequence[str]) -> list[str]:
    """The one or two sentences of `texts` that `answer` (to `question`) most likely rests on."""
    answer_words, question_words = content_words(answer), content_words(question)
    scored: list[tuple[float, int, str]] = []
    for sentence in (s for text in texts for s in split_sentences(text)):
        if _TELLS_THE_READER.search(sentence):
            continue
        words = content_words(sentence)
        score = _share(answer_words, words) + QUESTION_WEIGHT * _share(question_words, words)
        if score > 0:
            scored.append((score, -len(scored), sentence))  # ties: the earlier sentence
    scored.sort(reverse=True)
    if not scored:
        return []
    best = scored[0][0]
    return [s for score, _, s in scored[:MAX_EVIDENCE] if score >= SECOND_WITHIN * best]
