"""Write the reader's training files from the evaluation checkout (run once, by a developer).

    python -m tuning.reader_data.export ../shared

TAT-QA's test split (all of it: it is never reported on) and XQuAD articles 0-35 (articles 36-47
are held out: `eval answers` leaves out the questions the reader trained on). A row is kept only
where its answer occurs verbatim in its paragraph: the reader learns spans.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

XQUAD_TRAIN_ARTICLES = 36
OUT = Path(__file__).resolve().parent


def _rows(
    folder: Path, passages: dict[str, dict[str, str]], keep: object = None
) -> list[dict[str, str]]:
    corpus = {}
    for line in (folder / "corpus.jsonl").open():
        row = json.loads(line)
        corpus[row["id"]] = row["text"]
    rows = []
    for line in (folder / "questions.jsonl").open():
        question = json.loads(line)
        passage_id = question["positive_ids"][0]
        if callable(keep) and not keep(passage_id):
            continue
        context = corpus[passage_id]
        answer = next((a for a in question["answers"] if a and a in context), None)
        if answer is None:
            continue
        passages[passage_id] = {"id": passage_id, "document": passage_id.rsplit("-p", 1)[0],
                                "text": context}  # fmt: skip
        rows.append({"id": question["id"], "question": question["question"],
                     "passage": passage_id, "answer": answer})  # fmt: skip
    return rows


def main() -> None:
    """Write questions.jsonl and passages.jsonl beside this file."""
    shared = Path(sys.argv[1])
    passages: dict[str, dict[str, str]] = {}
    questions = _rows(shared / "train" / "finance", passages) + _rows(
        shared / "eval" / "dev", passages,
        lambda pid: int(pid.split("-")[1][1:]) < XQUAD_TRAIN_ARTICLES,
    )  # fmt: skip
    files = {"questions.jsonl": questions, "passages.jsonl": list(passages.values())}
    for name, rows in files.items():
        (OUT / name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        print(name, len(rows))


if __name__ == "__main__":
    main()
