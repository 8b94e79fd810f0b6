"""The best EM/F1 each grounded reply form can score (issue 17): every question of the dev
recipe's unseen-passage set answered with the reply `tune train --grounded --reply FORM` would
teach for it, built from its own gold passage — a model that never picks the wrong sentence.

A sentence holds the answer and lets the person check it, but EM and F1 score it against a span
of a few words: this is the ceiling such a reply cannot pass however well it is trained. No
model is run; it takes a second.

Run: `python -m bench.reply_ceiling [QUESTIONS]` (default 100, the recipe's `--limit`). Scored as
`eval compare` scores a reply: citations taken out.
"""

from __future__ import annotations

import sys
from statistics import mean

from bench.common import DEV_EVAL_DIR, read_jsonl, report
from bench.rag_vs_ft import split
from bot.core.answer_eval import contains_answer, exact_match, strip_citations, token_f1
from knowledge.evaluation import load_questions
from tuning.grounded import REPLIES, short_reply


def main() -> None:
    """Score each reply form's gold reply on the first N unseen-passage questions."""
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    _, _, other, _ = split()
    passages = {str(p["id"]): str(p["text"]) for p in read_jsonl(DEV_EVAL_DIR / "corpus.jsonl")}
    rows = load_questions(other)[:count]
    results: dict[str, object] = {"questions": len(rows)}
    for form in (f for f in REPLIES if f != "auto"):
        em, f1, contains = [], [], []
        for row in rows:
            source = passages[row.positive_ids[0]]
            reply = strip_citations(short_reply(row.answers[0], source, 1, "extractive", form))
            em.append(exact_match(reply, row.answers))
            f1.append(token_f1(reply, row.answers))
            contains.append(contains_answer(reply, row.answers))
        results[form] = {"em": round(100 * mean(em), 1), "f1": round(100 * mean(f1), 1),
                         "contains": round(100 * mean(contains), 1)}  # fmt: skip
    report("reply_ceiling", results)


if __name__ == "__main__":
    main()
