"""RAG or fine-tuning, or both? The four-way comparison on one Q/A set, with a bar chart."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from bot.core.adapters import AdapterSwitcher
from bot.core.answer import Answerer, Mode
from bot.core.answer_eval import AnswerScores, evaluate_answers
from knowledge.evaluation import EvalQuestion

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
) -> dict[str, AnswerScores]:
    """Score every mode on the same questions; the adapter is switched, the model never reloaded."""
    results: dict[str, AnswerScores] = {}
    try:
        for name, mode, tuned in MODES:
            switcher.use(adapter if tuned else None)
            results[name] = evaluate_answers(answerer, questions, mode=mode, progress=progress)
    finally:
        switcher.use(None)
    return results


def table(results: dict[str, AnswerScores]) -> str:
    """A Markdown table of the comparison."""
    lines = [
        "| mode | EM | F1 | answer-contains | p50 latency |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, s in results.items():
        lines.append(f"| {name} | {s.em:.1f} | {s.f1:.1f} | {s.contains:.1f} | {s.p50_s:.2f} s |")
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
