"""The README's model table: each catalogue model × {base, rag} on the dev sets, with its profile.

Every run answers the same questions (every n-th of XQuAD, TAT-QA and the Chinese XQuAD slice,
as in `bench.profile_sweep`) through `ragtune eval answers --json`, one process at a time, with
nothing set but the model, so each model answers with the prompt profile it is served with.

Run: `python -m bench.model_table [QUESTIONS_PER_SET] [MODEL ...]` (default 25 questions, both
catalogue models; about 15 minutes on 2 cores).
"""

from __future__ import annotations

import json
import os
import sys

from bench.common import report
from bench.profile_sweep import SETS, WORK, eval_answers, sample
from bot.llm.catalogue import CATALOGUE

MODES = ("base", "rag")


def scores(model: str, mode: str, name: str, count: int) -> dict[str, object]:
    """`ragtune eval answers --json` for one model, mode and set, with the model's own profile."""
    folder = SETS[name]
    questions = sample(folder, count, WORK / f"{name}-{count}.jsonl")
    env = {**os.environ, "RAGTUNE_MODEL": model}
    for key in ("RAGTUNE_MODEL_PATH", "RAGTUNE_ANSWER_K", "RAGTUNE_CONTEXT_TOKENS",
                "RAGTUNE_RAG_PROMPT", "RAGTUNE_MAX_ANSWER_TOKENS"):  # fmt: skip
        env.pop(key, None)  # the profile decides
    return eval_answers(env, name, folder, questions, mode)


def main() -> None:
    """Every model × mode × set; one JSON line per row, then the saved report."""
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 25
    models = sys.argv[2:] or [model.name for model in CATALOGUE]
    WORK.mkdir(parents=True, exist_ok=True)
    rows = []
    for model in models:
        for name in SETS:
            for mode in MODES:
                scored = scores(model, mode, name, count)
                row = {"model": model, "set": name, "mode": mode, **scored}
                print(json.dumps(row), flush=True)
                rows.append(row)
    report("model_table", {"questions_per_set": count, "rows": rows})


if __name__ == "__main__":
    main()
