"""Write the reranker's training files from the evaluation checkout (run once, by a developer).

    python -m tuning.reranker_data.export ../shared

The same questions as the span reader's (TAT-QA's test split, all of it, and XQuAD articles 0-35;
articles 36-47 are held out), over every paragraph of those reports and articles. Each question
keeps the paragraphs the first stage ranks highest that are not its answer (`negatives`): what a
second stage has to learn is exactly where hybrid search goes wrong.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from knowledge.embeddings import SentenceTransformerEmbedder
from knowledge.ingest import Ingestor
from knowledge.search import HybridSearcher
from knowledge.store import KnowledgeStore
from tuning.reader_data.export import XQUAD_TRAIN_ARTICLES

OUT = Path(__file__).resolve().parent
NEGATIVES = 8
"""Hard negatives kept per question, best-ranked first."""


def _xquad_train(passage_id: str) -> bool:
    return int(passage_id.split("-")[1][1:]) < XQUAD_TRAIN_ARTICLES


def _load(folder: Path, keep: object = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    passages = [json.loads(line) for line in (folder / "corpus.jsonl").open()]
    questions = [json.loads(line) for line in (folder / "questions.jsonl").open()]
    if callable(keep):
        passages = [p for p in passages if keep(p["id"])]
        questions = [q for q in questions if all(keep(p) for p in q["positive_ids"])]
    return passages, questions


def main() -> None:
    """Write questions.jsonl and passages.jsonl beside this file."""
    shared = Path(sys.argv[1])
    finance = _load(shared / "train" / "finance")
    wikipedia = _load(shared / "eval" / "dev", _xquad_train)
    passages = [{"id": p["id"], "title": p["title"], "text": p["text"]}
                for p in finance[0] + wikipedia[0]]  # fmt: skip
    questions = finance[1] + wikipedia[1]
    text_of = {p["id"]: p["text"] for p in passages}
    with tempfile.TemporaryDirectory() as scratch:
        pool = Path(scratch) / "pool.jsonl"
        pool.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in passages))
        store = KnowledgeStore.open(Path(scratch) / "kb.db")
        embedder = SentenceTransformerEmbedder()
        Ingestor(store, embedder).add_paths([pool])
        searcher = HybridSearcher(store, embedder)
        rows = []
        for question in questions:
            gold = set(question["positive_ids"])
            answers = [a for a in question.get("answers", []) if a]
            ranked = dict.fromkeys(h.external_id for h in searcher.search(question["question"], 40))
            negatives = [pid for pid in ranked if pid not in gold
                         and not any(a in text_of[pid] for a in answers)][:NEGATIVES]  # fmt: skip
            rows.append({"id": question["id"], "question": question["question"],
                         "positive_ids": question["positive_ids"],
                         "negatives": negatives})  # fmt: skip
        searcher.close()
        store.close()
    files = {"questions.jsonl": rows, "passages.jsonl": passages}
    for name, items in files.items():
        (OUT / name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in items))
        print(name, len(items))


if __name__ == "__main__":
    main()
