"""When to trust the span reader: reply F1 and answer-contains for each pair of confidence floors.

    python -m bench.reader_threshold [--per-set N]

For each question (held out from the reader's training, spread over both dev sets) the reader's
span, its confidence and the sentence that holds it, and the chat model's checked reply to the
same sources, are scored. Then each pair of floors is scored as the bot would answer with it:
below RAGTUNE_READER_MIN_CONFIDENCE the chat model answers; between it and
RAGTUNE_READER_SPAN_CONFIDENCE the reply is the span's sentence; above, the span.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

from bench.common import each_answer_set, per_set_option, report
from bot.core.answer_eval import contains_answer, strip_citations, token_f1
from bot.core.reading import span_reply

MODEL_FLOORS = (-100.0, -4.0, 0.0, 2.0)
"""-100: the reader always answers."""
SPAN_FLOORS = (-100.0, 0.0, 2.0, 4.0, 6.0, 8.0, 100.0)
"""-100: always the span; 100: always its sentence."""


@dataclass(frozen=True)
class Row:
    """One question: the chat model's reply scores, and the reader's with their scores."""

    model: tuple[float, float]
    """(F1, contains) of the chat model's reply."""
    confidence: float | None = None
    span: tuple[float, float] = (0.0, 0.0)
    sentence: tuple[float, float] = (0.0, 0.0)


def _scores(reply: str, answers: tuple[str, ...]) -> tuple[float, float]:
    return token_f1(reply, answers), contains_answer(reply, answers)


def main() -> None:
    """Score every pair of floors on both dev sets and report."""
    per_set = per_set_option(__doc__)
    results: dict[str, object] = {}
    for name, answerer, asked in each_answer_set(per_set):
        # Every span is read, whatever its confidence: the floors are applied below.
        answerer.settings = replace(answerer.settings, min_reader_confidence=float("-inf"))
        rows: list[Row] = []
        for question in asked:
            prepared = answerer.prepare(question.question)
            by_model = answerer.start(replace(prepared, read=None), None, None).answer()
            row = Row(_scores(strip_citations(by_model.text), question.answers))
            if (read := prepared.read) is not None:
                span, _ = span_reply(question.question, read.span.text, read.span.start,
                                     read.source.text)  # fmt: skip
                sentence, _ = span_reply(question.question, read.span.text, read.span.start,
                                         read.source.text, sure=False)  # fmt: skip
                row = replace(row, confidence=read.span.confidence,
                              span=_scores(span, question.answers),
                              sentence=_scores(sentence, question.answers))  # fmt: skip
            rows.append(row)
        table = {}
        for model_floor in MODEL_FLOORS:
            for span_floor in SPAN_FLOORS:
                f1 = contains = 0.0
                for row in rows:
                    if row.confidence is None or row.confidence < model_floor:
                        scores = row.model
                    else:
                        scores = row.span if row.confidence >= span_floor else row.sentence
                    f1, contains = f1 + scores[0], contains + scores[1]
                table[f"{model_floor}/{span_floor}"] = {
                    "reply_f1": round(100 * f1 / len(rows), 1),
                    "reply_contains": round(100 * contains / len(rows), 1),
                }
        model_alone = [row.model for row in rows]
        table["model alone"] = {
            "reply_f1": round(100 * sum(s[0] for s in model_alone) / len(rows), 1),
            "reply_contains": round(100 * sum(s[1] for s in model_alone) / len(rows), 1),
        }
        results[name] = {"questions": len(rows), "by_floor": table}
        print(name, json.dumps(table))
    report("reader_threshold", results)


if __name__ == "__main__":
    main()
