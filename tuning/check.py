"""Did it work? Right after training, the adapter answers its own training questions (in the
prompts it was trained with) and the general-knowledge probe, beside the base model, so the
person who trained it sees at once whether it learned its data and what it forgot."""

from __future__ import annotations

import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bot.core.answer_eval import contains_answer, strip_citations
from bot.core.compare import GENERAL_PROBE
from bot.core.prompts import base_messages
from bot.llm.engine import GenerationLimits, Message
from knowledge.evaluation import load_questions
from tuning.data import Example

RECALL_QUESTIONS = 40
"""Training questions asked at most (a sample; each takes about a quarter of a second)."""
FORGETTING_POINTS = 10.0
"""A probe this many points below the base model's is called forgetting."""
LEARNED = 50.0
"""Recall below this (x100) is called not learned."""
_LIMITS = GenerationLimits(max_tokens=48)


@dataclass(frozen=True)
class TrainingCheck:
    """Answer-contains (x100) on the training questions and on the probe, base and tuned."""

    recall: float
    asked: int
    probe_base: float
    probe_tuned: float
    probe_questions: int

    def verdict(self) -> str:
        """One line on what the figures mean, with the knob to turn when they are bad."""
        if self.recall < LEARNED:
            return (
                "It did not learn its data well: try more --steps or a higher --lr "
                "(or fewer --general answers beside a small set)."
            )
        if self.probe_tuned < self.probe_base - FORGETTING_POINTS:
            return (
                "It forgot general knowledge: try fewer --steps, a lower --lr or --rank, "
                "or more --general answers."
            )
        return "It learned its data and kept its general knowledge."

    def as_dict(self) -> dict[str, float | int]:
        """For the adapter's manifest."""
        return {
            "training_recall": round(self.recall, 1),
            "training_recall_asked": self.asked,
            "probe_base": round(self.probe_base, 1),
            "probe_tuned": round(self.probe_tuned, 1),
            "probe_questions": self.probe_questions,
        }


def check_adapter(
    served_model: Path, adapter: Path, examples: Sequence[Example], threads: int = 0, seed: int = 0
) -> TrainingCheck:
    """Ask a sample of `examples` with the adapter, and the probe without and with it."""
    from tqdm import tqdm

    from bot.llm.llama import LlamaCppEngine

    engine = LlamaCppEngine(served_model, threads=threads)
    asked = random.Random(seed).sample(list(examples), min(RECALL_QUESTIONS, len(examples)))
    probe = load_questions(GENERAL_PROBE)
    bar = tqdm(total=len(asked) + 2 * len(probe), desc="checking", unit="q", file=sys.stderr)

    def contains(messages: list[Message], answers: Sequence[str], with_adapter: bool) -> float:
        pieces = engine.stream(messages, _LIMITS, lambda: False, adapter if with_adapter else None)
        bar.update(1)
        return contains_answer(strip_citations("".join(pieces)), answers)

    recall = sum(contains(e.messages(), [strip_citations(e.reply())], True) for e in asked)
    base = sum(contains(base_messages(q.question, []), q.answers, False) for q in probe)
    tuned = sum(contains(base_messages(q.question, []), q.answers, True) for q in probe)
    bar.close()
    return TrainingCheck(
        recall=100 * recall / max(1, len(asked)),
        asked=len(asked),
        probe_base=100 * base / len(probe),
        probe_tuned=100 * tuned / len(probe),
        probe_questions=len(probe),
    )
