"""Checked answers, measured: what quoting the sources instead of unsupported answers does.

    python -m bench.checked_answers [--per-set 60]      # RAGTUNE_MODEL=... for another model

Answers a spread of questions from both dev sets (default settings and profile) and prints, per
set: how often the model's own words contain a gold answer, how often what the reader is shown
does (the model's words, or the quoted sources where bot.core.support found them unsupported),
and, per reason, how many answers were replaced and how many of those the model had right.
"""

from __future__ import annotations

import json
from collections import Counter

from bench.common import each_answer_set, per_set_option
from bot.core.answer_eval import contains_answer, strip_citations


def main() -> None:
    """Answer a spread of each set's questions once; score model words and shown replies."""
    results: dict[str, dict[str, object]] = {}
    for name, answerer, asked in each_answer_set(per_set_option(__doc__)):
        model = reply = 0.0
        replaced: Counter[str] = Counter()
        model_right_replaced: Counter[str] = Counter()
        quote_right: Counter[str] = Counter()
        for question in asked:
            answer = answerer.ask(question.question)
            own = contains_answer(strip_citations(answer.model_text), question.answers)
            shown = contains_answer(strip_citations(answer.text), question.answers)
            model += own
            reply += shown
            if answer.quoted:
                replaced[answer.unsupported] += 1
                model_right_replaced[answer.unsupported] += int(own)
                quote_right[answer.unsupported] += int(shown)
        n = len(asked)
        results[name] = {
            "n": n,
            "model_contains": round(100 * model / n, 1),
            "reply_contains": round(100 * reply / n, 1),
            "replaced": dict(replaced),
            "model_right_of_replaced": dict(model_right_replaced),
            "quote_right_of_replaced": dict(quote_right),
        }
        print(f"{name}: {results[name]}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
