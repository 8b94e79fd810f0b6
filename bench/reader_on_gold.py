"""The span reader alone, given each question's gold passage: how often its span is the answer.

    python -m bench.reader_on_gold [--per-set N]

Questions held out from the reader's training (XQuAD articles 36-47, TAT-QA dev), the first N of
each set; the reader reads the passage that holds the answer, so retrieval plays no part. The gap
between this and `eval answers`' reply F1 is what retrieval and chunking cost.
"""

from __future__ import annotations

import json

from bench.common import ANSWER_SETS, per_set_option, report
from bot import app
from bot.config import Settings
from bot.core.answer_eval import exact_match, held_out, token_f1
from knowledge.evaluation import load_questions


def main() -> None:
    """Read every question's gold passage and report F1 and EM (x100) per set."""
    per_set = per_set_option(__doc__)
    reader = app.build_reader(Settings(_env_file=None))
    if reader is None:
        raise SystemExit("No span reader is built: run `make reader` first.")
    results: dict[str, object] = {}
    for name, folder in ANSWER_SETS.items():
        passages = {}
        for line in (folder / "corpus.jsonl").open():
            row = json.loads(line)
            passages[row["id"]] = row["text"]
        asked, _ = held_out(load_questions(folder / "questions.jsonl"), reader.trained_question_ids)
        asked = asked[:per_set]
        f1 = em = 0.0
        for question in asked:
            span = reader.read(question.question, [passages[question.positive_ids[0]]])
            text = span.text if span is not None else ""
            f1 += token_f1(text, question.answers)
            em += exact_match(text, question.answers)
        results[name] = {"questions": len(asked), "f1": round(100 * f1 / len(asked), 1),
                         "em": round(100 * em / len(asked), 1)}  # fmt: skip
    report("reader_on_gold", results)


if __name__ == "__main__":
    main()
