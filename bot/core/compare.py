"""RAG or fine-tuning, or both? The four-way comparison on one Q/A set, with a bar chart."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bot.core.adapters import AdapterSwitcher
from bot.core.answer import Answerer, Mode
from bot.core.answer_eval import AnswerScores, evaluate_answers, held_out
from bot.llm.adapters import AdapterError
from knowledge.errors import KnowledgeError
from knowledge.evaluation import EvalQuestion, load_questions
from knowledge.migrations import GLOBAL_COLLECTION

GENERAL_PROBE = Path(__file__).with_name("general_probe.jsonl")
"""General-knowledge questions with answers that no adapter trains on (tuning mixes in a
different list): forgetting shows as the fine-tuned model answering fewer of them."""

# (name in tables and JSON, answering mode, whether the adapter is applied)
MODES: tuple[tuple[str, Mode, bool], ...] = (
    ("base", Mode.BASE, False),
    ("fine-tuned", Mode.BASE, True),
    ("rag", Mode.RAG, False),
    ("rag+fine-tuned", Mode.RAG, True),
)


def compare(
    answerer: Answerer,
    switcher: AdapterSwitcher,
    questions: Sequence[EvalQuestion],
    adapter: str,
    *,
    progress: Callable[[], object] | None = None,
    collections: Sequence[int] = (GLOBAL_COLLECTION,),
) -> dict[str, AnswerScores]:
    """Score every mode on the same questions, the adapter named per generation.

    The model is never reloaded, and answers given meanwhile (a running bot) keep their adapter.
    """
    path = switcher.resolve(adapter).path
    # The same questions for every mode, none that the span reader trained on.
    questions, _ = held_out(questions, answerer.trained_question_ids)
    results: dict[str, AnswerScores] = {}
    for name, mode, tuned in MODES:
        results[name] = evaluate_answers(
            answerer, questions, mode=mode, adapter=path if tuned else None, progress=progress,
            collections=collections,
        )  # fmt: skip
    return results


@dataclass(frozen=True)
class GeneralProbe:
    """Answer-contains (×100) on the general-knowledge probe, without and with the adapter."""

    base: float
    tuned: float
    questions: int
    """How many probe questions were asked."""


def general_knowledge(answerer: Answerer, switcher: AdapterSwitcher, adapter: str) -> GeneralProbe:
    """The general-knowledge probe answered by the base model and with the adapter."""
    path = switcher.resolve(adapter).path
    probe = load_questions(GENERAL_PROBE)
    base = evaluate_answers(answerer, probe, mode=Mode.BASE, adapter=None)
    tuned = evaluate_answers(answerer, probe, mode=Mode.BASE, adapter=path)
    return GeneralProbe(base.contains, tuned.contains, len(probe))


def table(results: dict[str, AnswerScores], general: GeneralProbe | None = None) -> str:
    """A Markdown table of the comparison (and the forgetting probe's figures)."""
    lines = [
        "| mode | EM | F1 | answer-contains | p50 latency |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, s in results.items():
        lines.append(f"| {name} | {s.em:.1f} | {s.f1:.1f} | {s.contains:.1f} | {s.p50_s:.2f} s |")
    if general is not None:
        lines.append(
            f"\ngeneral-knowledge probe ({general.questions} held-out questions, "
            f"answer-contains): base {general.base:.1f}, fine-tuned {general.tuned:.1f}"
        )
    return "\n".join(lines)


def plot(results: dict[str, AnswerScores], path: Path, title: str) -> None:
    """A grouped bar chart of EM, F1 and answer-contains per mode, saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a server
    import matplotlib.pyplot as plt
    import numpy as np

    metrics = (("EM", "em"), ("F1", "f1"), ("answer-contains", "contains"))
    names = list(results)
    x = np.arange(len(names))
    width = 0.26
    figure, axes = plt.subplots(figsize=(8, 4.5), dpi=120)
    for offset, (label, key) in enumerate(metrics):
        values = [getattr(results[n], key) for n in names]
        bars = axes.bar(x + (offset - 1) * width, values, width, label=label)
        axes.bar_label(bars, fmt="%.1f", fontsize=7)
    axes.set_xticks(x, names)
    axes.set_ylabel("score (×100)")
    axes.set_ylim(0, 100)
    axes.set_title(title, fontsize=10)
    axes.legend(frameon=False)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


@dataclass(frozen=True)
class Comparison:
    """A finished comparison: which adapter, on how many questions, and the scores."""

    adapter: str
    questions: int
    results: dict[str, AnswerScores]
    general: GeneralProbe


class ComparisonRunner:
    """`/eval` in the running bot: a small comparison on a configured question set.

    Its answers queue like users' questions, one at a time, each naming its adapter, so users
    keep being served (with their adapter) while it runs. One comparison at a time.
    """

    def __init__(
        self,
        answerer: Answerer,
        switcher: AdapterSwitcher,
        questions_path: Path | None,
        limit: int,
    ) -> None:
        self.answerer = answerer
        self.switcher = switcher
        self.questions_path = questions_path
        self.limit = limit
        self._running = threading.Lock()

    def run(
        self,
        adapter: str | None,
        progress: Callable[[], object] | None = None,
        collections: Sequence[int] = (GLOBAL_COLLECTION,),
    ) -> Comparison:
        """Compare `adapter` (default: the active one) on the configured questions, the RAG
        modes searching `collections` (a chat's own)."""
        name = adapter or self.switcher.active
        if name is None:
            raise AdapterError("Name an adapter (/eval NAME) or switch one on first.")
        if self.questions_path is None:
            raise AdapterError(
                "Set RAGTUNE_EVAL_QUESTIONS to a JSONL of questions with answers to use /eval."
            )
        try:
            questions = load_questions(self.questions_path)[: self.limit]
        except (OSError, KnowledgeError) as exc:
            raise AdapterError(f"The /eval questions cannot be read: {exc}") from None
        if not self._running.acquire(blocking=False):
            raise AdapterError("A comparison is running already; wait for its table.")
        try:
            results = compare(
                self.answerer, self.switcher, questions, name, progress=progress,
                collections=collections,
            )  # fmt: skip
            general = general_knowledge(self.answerer, self.switcher, name)
        finally:
            self._running.release()
        return Comparison(name, len(questions), results, general)
