"""The README's "RAG or fine-tuning, or both?" recipe on the dev set, end to end, by the CLI.

Splits the dev questions by passage. Two adapters learn 4 of every 5 questions of the first 200
passages: `dev-qa` closed-book (the question alone), `dev-grounded` in the serving prompt with
the chunks the bot's retriever finds among those 200 passages (`tune train --grounded`). Then
`ragtune eval compare` scores base, fine-tuned, RAG and RAG + fine-tuned for each adapter on
questions neither saw — about the same passages, and about 40 passages they never saw at all.

Run: `python -m bench.rag_vs_ft [QUESTIONS_PER_SET] [EPOCHS] [reuse]` (about 45 minutes on 2
cores; `reuse` keeps existing adapters instead of training them again).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.common import DEV_EVAL_DIR, REPO_ROOT, read_jsonl, report

RAGTUNE = str(Path(sys.executable).parent / "ragtune")
WORK = REPO_ROOT / "data" / "rag-vs-ft"
FIGURES = REPO_ROOT / "bench" / "figures"
TRAIN_PASSAGES = 200
ADAPTERS = {
    "dev-qa": (),
    "dev-grounded": ("--grounded", "--reply", "span", "--lr", "5e-4", "--gold-share", "0.95"),
}
"""Adapter name -> extra `tune train` options. The grounded adapter learns answer spans (what EM
and F1 score) from whole chunks and excerpts (`--excerpts` 0.5, the default), at 5e-4 with 5 %
of "I don't know." prompts: at the defaults for a set this size (2e-4, 10 %) it answered 35 % of
its training questions and said "I don't know." to 12 of 100 unseen questions whose answer it
was given; with both changed, 55 % and answer-contains 50 against RAG's 40 (README, "One SmolLM2
adapter for both")."""


def write(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


def split() -> tuple[Path, Path, Path, Path]:
    """(train, same-passage test, other-passage test, training passages) JSONL files."""
    rows = read_jsonl(DEV_EVAL_DIR / "questions.jsonl")
    passages: list[str] = []
    seen_in_passage: dict[str, int] = {}
    train, same, different = [], [], []
    for row in rows:
        passage = str(row["positive_ids"][0])  # type: ignore[index]
        if passage not in seen_in_passage:
            passages.append(passage)
            seen_in_passage[passage] = 0
        number = seen_in_passage[passage]
        seen_in_passage[passage] += 1
        if passages.index(passage) >= TRAIN_PASSAGES:
            different.append(row)
        elif number % 5 == 0:
            same.append(row)
        else:
            train.append(row)
    WORK.mkdir(parents=True, exist_ok=True)
    seen = set(passages[:TRAIN_PASSAGES])
    corpus = [r for r in read_jsonl(DEV_EVAL_DIR / "corpus.jsonl") if str(r["id"]) in seen]
    return (
        write(WORK / "train.jsonl", train),
        write(WORK / "test-same-passages.jsonl", same),
        write(WORK / "test-other-passages.jsonl", different),
        write(WORK / "train-passages.jsonl", corpus),
    )


def ragtune(*args: str) -> str:
    """Run the CLI as a user would; return its stdout."""
    print("$ ragtune " + " ".join(args), file=sys.stderr, flush=True)
    done = subprocess.run([RAGTUNE, *args], stdout=subprocess.PIPE, text=True, check=True)
    return done.stdout


def main() -> None:
    """Split, train both adapters, compare each on both test sets, report."""
    per_set = sys.argv[1] if len(sys.argv) > 1 else "100"
    epochs = sys.argv[2] if len(sys.argv) > 2 else "2"
    reuse = len(sys.argv) > 3 and sys.argv[3] == "reuse"
    train, same, other, passages = split()
    results: dict[str, object] = {}
    for adapter, extra in ADAPTERS.items():
        if reuse and (REPO_ROOT / "data" / "adapters" / adapter).is_dir():
            continue
        grounding = ("--corpus", str(passages)) if "--grounded" in extra else ()
        trained = ragtune("tune", "train", "--data", str(train), "--name", adapter,
                          "--epochs", epochs, "--replace", *extra, *grounding)  # fmt: skip
        results[f"train {adapter}"] = trained.strip().splitlines()
    FIGURES.mkdir(exist_ok=True)
    corpus = str(DEV_EVAL_DIR / "corpus.jsonl")
    for adapter in ADAPTERS:
        for label, questions in (("same passages", same), ("other passages", other)):
            chart = FIGURES / f"rag_vs_ft_{adapter}_{label.replace(' ', '_')}.png"
            out = ragtune(
                "eval", "compare", "--corpus", corpus, "--questions", str(questions),
                "--adapter", adapter, "--limit", per_set, "--plot", str(chart), "--json",
            )  # fmt: skip
            print(out, file=sys.stderr)
            results[f"{adapter}, {label}"] = json.loads(out.strip().splitlines()[-1])
    report("rag_vs_ft", results)


if __name__ == "__main__":
    main()
