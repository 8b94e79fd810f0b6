"""Checked answers, measured: what quoting the sources instead of unsupported answers does.

    python -m bench.checked_answers [--per-set 60]      # RAGTUNE_MODEL=... for another model

Answers a spread of questions from both dev sets (default settings and profile) and prints, per
set: how often the model's own words contain a gold answer, how often what the reader is shown
does (the model's words, or the quoted sources where bot.core.support found them unsupported),
and, per reason, how many answers were replaced and how many of those the model had right.
"""

from __future__ import annotations

import argparse
import json
import os
from collections import Counter
from pathlib import Path

from bench.common import answering_on
from bot import app
from bot.config import Settings
from bot.core.answer_eval import contains_answer, strip_citations

EVAL_DIR = Path(os.environ.get("RAGTUNE_EVAL_DIR", Path(__file__).parents[2] / "shared/eval/dev"))
SETS = {"xquad": EVAL_DIR, "tatqa": EVAL_DIR.parent / "dev-finance"}


def main() -> None:
    """Answer a spread of each set's questions once; score model words and shown replies."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--per-set", type=int, default=60)
    args = parser.parse_args()
    settings = Settings(_env_file=None)
    embedder = app.build_embedder(settings)
    worker = app.build_worker(settings, app.build_engine(settings))
    results: dict[str, dict[str, object]] = {}
    try:
        for name, folder in SETS.items():
            with answering_on(folder, settings, embedder, worker, args.per_set) as (
                answerer,
                asked,
            ):
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
    finally:
        worker.close()
    print(json.dumps(results))


if __name__ == "__main__":
    main()
