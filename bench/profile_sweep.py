"""Prompt-profile sweep: chunks in the prompt and their token budget, per model, on both dev sets.

Every setting answers the same questions (every n-th of XQuAD and of TAT-QA, so many passages
are covered) through `ragtune eval answers`, one process at a time (two models at once on 2
cores would measure each other). Prints one JSON line per (model, set, setting) and a summary;
the README's "Models" table comes from it.

Run: `python -m bench.profile_sweep [QUESTIONS_PER_SET] [MODEL ...]` (default 30 questions,
both catalogue models; about 40 minutes on 2 cores, most of it the 0.5B model).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bench.common import DEV_EVAL_DIR, REPO_ROOT, read_jsonl, report

RAGTUNE = str(Path(sys.executable).parent / "ragtune")
WORK = REPO_ROOT / "data" / "profile-sweep"
SETS = {
    "xquad": DEV_EVAL_DIR,
    "tatqa": DEV_EVAL_DIR.parent / "dev-finance",
    "zh": DEV_EVAL_DIR / "zh",  # F1 means little here: Chinese has no spaces between words
}
# (chunks, source tokens, prompt style) per model: an English chunk is about 120 tokens, so each
# budget fits its chunks; the 135M model's extractive k=1 was chosen by an earlier sweep.
SETTINGS = {
    "smollm2-135m": [(1, 300, "extractive"), (2, 600, "extractive"), (1, 300, "sentence")],
    "qwen2.5-coder-0.5b": [(1, 300, "extractive"), (1, 300, "sentence"), (2, 600, "sentence"),
                           (3, 900, "sentence")],
}  # fmt: skip


def sample(folder: Path, count: int, out: Path) -> Path:
    """Every n-th question of a set, so the sample spans the corpus."""
    rows = read_jsonl(folder / "questions.jsonl")
    step = max(1, len(rows) // count)
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows[::step][:count]))
    return out


def eval_answers(
    env: dict[str, str], name: str, folder: Path, questions: Path, mode: str = "rag"
) -> dict[str, object]:
    """`ragtune eval answers --json` on one set with the given environment; its JSON scores."""
    proc = subprocess.run(
        [RAGTUNE, "eval", "answers", "--corpus", str(folder / "corpus.jsonl"),
         "--questions", str(questions), "--db", str(WORK / f"{name}.db"), "--mode", mode,
         "--json"],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-2000:])
    scores: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return scores


def answer(
    model: str, setting: tuple[int, int, str], name: str, folder: Path, questions: Path
) -> dict[str, object]:
    """`ragtune eval answers --json` for one setting; its JSON scores."""
    k, tokens, prompt = setting
    env = {**os.environ, "RAGTUNE_MODEL": model, "RAGTUNE_ANSWER_K": str(k),
           "RAGTUNE_CONTEXT_TOKENS": str(tokens), "RAGTUNE_RAG_PROMPT": prompt}  # fmt: skip
    env.pop("RAGTUNE_MODEL_PATH", None)
    return eval_answers(env, name, folder, questions)


def main() -> None:
    """Sweep every model × setting × set; report the rows and, per model, the mean of both sets."""
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 25
    models = sys.argv[2:] or list(SETTINGS)
    WORK.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, object]] = []
    for model in models:
        for setting in SETTINGS[model]:
            for name, folder in SETS.items():
                questions = sample(folder, count, WORK / f"{name}-{count}.jsonl")
                scores = answer(model, setting, name, folder, questions)
                k, tokens, prompt = setting
                row = {"model": model, "set": name, "answer_k": k, "context_tokens": tokens,
                       "rag_prompt": prompt, **scores}  # fmt: skip
                print(json.dumps(row), flush=True)
                rows.append(row)
    summary = []
    for model in models:
        for k, tokens, prompt in SETTINGS[model]:
            # The English sets decide (F1 is meaningless for Chinese); zh is reported beside.
            pair = [r for r in rows if r["model"] == model and r["answer_k"] == k
                    and r["rag_prompt"] == prompt and r["set"] != "zh"]  # fmt: skip
            summary.append({
                "model": model, "answer_k": k, "context_tokens": tokens, "rag_prompt": prompt,
                **{key: round(sum(float(str(r[key])) for r in pair) / len(pair), 3)
                   for key in ("em", "f1", "contains", "p50_s", "first_text_p50_s")},
            })  # fmt: skip
    report("profile_sweep", {"questions_per_set": count, "rows": rows, "summary": summary})


if __name__ == "__main__":
    main()
