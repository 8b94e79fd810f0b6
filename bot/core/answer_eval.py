"""Answer evaluation: SQuAD-normalised exact match, token F1 and answer-contains, with latency."""

from __future__ import annotations

import re
import string
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from bot.core.answer import Answerer, Mode
from bot.llm.worker import DEFAULT_ADAPTER, AdapterChoice
from knowledge.evaluation import EvalQuestion
from knowledge.migrations import GLOBAL_COLLECTION

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_CITATIONS = re.compile(r"\[\d{1,2}\]")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD v1.1: lower-case, drop punctuation and articles, collapse whitespace."""
    text = text.lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def strip_citations(text: str) -> str:
    """Remove `[n]` markers: they belong to the display, not to the answer."""
    return _CITATIONS.sub("", text)


def exact_match(prediction: str, answers: Sequence[str]) -> float:
    """1.0 if the normalised prediction equals any normalised gold answer."""
    pred = normalize_answer(prediction)
    return float(any(pred == normalize_answer(a) for a in answers))


def token_f1(prediction: str, answers: Sequence[str]) -> float:
    """Best bag-of-tokens F1 against the gold answers."""
    pred = normalize_answer(prediction).split()
    best = 0.0
    for answer in answers:
        gold = normalize_answer(answer).split()
        shared = sum((Counter(pred) & Counter(gold)).values())
        if shared:
            precision, recall = shared / len(pred), shared / len(gold)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


def contains_answer(prediction: str, answers: Sequence[str]) -> float:
    """1.0 if any normalised gold answer is a substring of the normalised prediction."""
    pred = normalize_answer(prediction)
    return float(any((gold := normalize_answer(a)) and gold in pred for a in answers))


def held_out(
    questions: Sequence[EvalQuestion], trained: frozenset[str]
) -> tuple[list[EvalQuestion], int]:
    """(the questions not in `trained`, how many were left out): never score on training data."""
    kept = [q for q in questions if q.id not in trained]
    return kept, len(questions) - len(kept)


@dataclass(frozen=True)
class AnswerScores:
    """Means ×100 over all questions, latency percentiles and generation speed."""

    em: float
    f1: float
    contains: float
    n: int
    p50_s: float
    p95_s: float
    tokens_per_s: float
    first_text_p50_s: float = 0.0
    """Median time from the question to the first answer text (what a chat user waits for)."""
    evidence_contains: float | None = None
    """Of the answers whose sources held a gold passage, the share (x100) whose quoted evidence
    contains a gold answer (None: no such answer, or no gold passages given)."""
    evidence_n: int = 0
    """How many answers `evidence_contains` is over."""
    reply_contains: float = 0.0
    """Answer-contains (x100) of what the reader is shown: the model's words, or the quoted
    sources where those did not hold up (bot.core.support); `contains` scores the model's."""
    replaced: float = 0.0
    """Share (x100) of answers whose model words were replaced by the quoted sources."""
    reply_em: float = 0.0
    """Exact match (x100) of what the reader is shown; `em` scores the model's words."""
    reply_f1: float = 0.0
    """Token F1 (x100) of what the reader is shown; `f1` scores the model's words."""

    def as_dict(self) -> dict[str, float | int | None]:
        """The JSON keys scripts rely on."""
        return {
            "em": round(self.em, 2),
            "f1": round(self.f1, 2),
            "contains": round(self.contains, 2),
            "n": self.n,
            "p50_s": round(self.p50_s, 3),
            "p95_s": round(self.p95_s, 3),
            "tokens_per_s": round(self.tokens_per_s, 1),
            "first_text_p50_s": round(self.first_text_p50_s, 3),
            "evidence_contains": (
                None if self.evidence_contains is None else round(self.evidence_contains, 2)
            ),
            "evidence_n": self.evidence_n,
            "reply_contains": round(self.reply_contains, 2),
            "replaced": round(self.replaced, 2),
            "reply_em": round(self.reply_em, 2),
            "reply_f1": round(self.reply_f1, 2),
        }


def evaluate_answers(
    answerer: Answerer,
    questions: Sequence[EvalQuestion],
    *,
    mode: Mode,
    adapter: AdapterChoice = DEFAULT_ADAPTER,
    progress: Callable[[], object] | None = None,
    collections: Sequence[int] = (GLOBAL_COLLECTION,),
) -> AnswerScores:
    """Answer every question (searching `collections`) and score it; a refusal or empty answer
    scores 0."""
    em = f1 = contains = evidence_hits = reply_contains = replaced = reply_em = reply_f1 = 0.0
    evidence_n = 0
    latencies: list[float] = []
    first_texts: list[float] = []
    tokens = 0
    generating = 0.0
    for question in questions:
        started = time.perf_counter()
        answer = answerer.ask(
            question.question, mode=mode, adapter=adapter, collections=collections
        )
        latencies.append(time.perf_counter() - started)
        # EM, F1 and contains score the model's own words; reply_contains what a reader sees.
        prediction = strip_citations(answer.model_text or answer.text)
        em += exact_match(prediction, question.answers)
        f1 += token_f1(prediction, question.answers)
        contains += contains_answer(prediction, question.answers)
        shown = strip_citations(answer.text)
        reply_contains += contains_answer(shown, question.answers)
        reply_em += exact_match(shown, question.answers)
        reply_f1 += token_f1(shown, question.answers)
        replaced += answer.quoted
        gold = set(question.positive_ids)
        if gold and any(s.hit.external_id in gold for s in answer.sources):
            evidence_n += 1
            evidence_hits += contains_answer(" ".join(answer.evidence), question.answers)
        done = answer.completion
        if done is not None and done.first_token_s is not None:
            first_texts.append(latencies[-1] - (done.generation_s - done.first_token_s))
            if done.tokens > 1:
                tokens += done.tokens - 1
                generating += done.generation_s - done.first_token_s
        else:
            first_texts.append(latencies[-1])  # a refusal: its text is all there is
        if progress is not None:
            progress()
    n = len(questions)
    if n == 0:
        return AnswerScores(0, 0, 0, 0, 0, 0, 0)
    return AnswerScores(
        em=100 * em / n,
        f1=100 * f1 / n,
        contains=100 * contains / n,
        n=n,
        p50_s=float(np.percentile(latencies, 50)),
        p95_s=float(np.percentile(latencies, 95)),
        tokens_per_s=tokens / generating if generating else 0.0,
        first_text_p50_s=float(np.percentile(first_texts, 50)),
        evidence_contains=100 * evidence_hits / evidence_n if evidence_n else None,
        evidence_n=evidence_n,
        reply_contains=100 * reply_contains / n,
        replaced=100 * replaced / n,
        reply_em=100 * reply_em / n,
        reply_f1=100 * reply_f1 / n,
    )
