"""How the evidence sentence is chosen, measured: evidence_contains for several question weights.

    python -m bench.evidence_rule [--per-set 60]

Answers a spread of questions from both dev sets once (default model and profile), then scores,
for each weight of the question's words beside the answer's (bot.core.evidence), how often the
quoted sentences contain a gold answer when the sources held a gold passage.
"""

from __future__ import annotations

import json

from bench.common import each_answer_set, per_set_option
from bot.core import evidence
from bot.core.answer_eval import contains_answer

WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)


def main() -> None:
    """Answer once per question, then score every weight on the same answers."""
    rows: dict[str, list[tuple[str, str, list[str], tuple[str, ...]]]] = {}
    for name, answerer, asked in each_answer_set(per_set_option(__doc__)):
        rows[name] = []
        for question in asked:
            answer = answerer.ask(question.question)
            gold = set(question.positive_ids)
            if any(s.hit.external_id in gold for s in answer.sources):
                texts = [s.text for s in answer.cited or answer.sources]
                rows[name].append((answer.model_text, question.question, texts, question.answers))
    results: dict[str, dict[str, float]] = {}
    for weight in WEIGHTS:
        evidence.QUESTION_WEIGHT = weight  # the module reads it on every call
        results[str(weight)] = {}
        for name, answered in rows.items():
            hits = sum(
                contains_answer(" ".join(evidence.quote_evidence(a, q, texts)), gold)
                for a, q, texts, gold in answered
            )
            results[str(weight)][name] = round(100 * hits / max(1, len(answered)), 1)
        print(f"question weight {weight}: " + ", ".join(
            f"{name} {value} (n={len(rows[name])})" for name, value in results[str(weight)].items()
        ))  # fmt: skip
    print(json.dumps(results))


if __name__ == "__main__":
    main()
