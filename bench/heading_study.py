"""Headings in retrieval, measured: what a chunk's heading path does for recall on three sets.

    python -m bench.heading_study

A chunk's heading ("document title › section heading") is embedded with its text and indexed
for keywords (knowledge.chunking.embedding_input, the FTS heading column). This ingests each
set three times — heading path as is, section heading only, no heading — and prints recall@1,
recall@5 and MRR@10 of the hybrid search: XQuAD (Wikipedia, en + zh), TAT-QA (annual
reports) and the café FAQ (18 customer questions, the FAQ's own questions as headings).
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import knowledge.ingest as ingest
from bench.common import DEV_EVAL_DIR, REPO_ROOT, report
from bot import app
from bot.config import Settings
from knowledge.chunking import HEADING_SEPARATOR, Chunk
from knowledge.evaluation import evaluate_retrieval, load_questions
from knowledge.ingest import Ingestor
from knowledge.store import KnowledgeStore

SETS = {
    "xquad": DEV_EVAL_DIR,
    "tatqa": DEV_EVAL_DIR.parent / "dev-finance",
    "cafe": REPO_ROOT / "knowledge" / "examples" / "cafe_eval",
}
VARIANTS: dict[str, Callable[[str], str]] = {
    "title › section (as is)": lambda heading: heading,
    "section only": lambda heading: heading.rsplit(HEADING_SEPARATOR, 1)[-1],
    "none": lambda heading: "",
}


def main() -> None:
    """Each set under each heading variant: ingest fresh, score the hybrid search."""
    settings = Settings(_env_file=None)
    embedder = app.build_embedder(settings)
    original = getattr(ingest, "chunk_document")  # noqa: B009  # replaced per variant
    results: dict[str, dict[str, dict[str, float]]] = {}
    for variant, rewrite in VARIANTS.items():

        def chunked(*args: object, rewrite=rewrite, **kwargs: object) -> list[Chunk]:  # type: ignore[no-untyped-def]
            return [dataclasses.replace(c, heading=rewrite(c.heading))
                    for c in original(*args, **kwargs)]  # fmt: skip

        setattr(ingest, "chunk_document", chunked)  # noqa: B010
        results[variant] = {}
        for name, folder in SETS.items():
            with tempfile.TemporaryDirectory() as scratch:
                store = KnowledgeStore.open(Path(scratch) / "kb.db")
                Ingestor(store, embedder).add_paths([folder / "corpus.jsonl"])
                questions = load_questions(folder / "questions.jsonl")
                scores = evaluate_retrieval(
                    app.build_searcher(settings, store, embedder), questions
                ).as_dict()
                store.close()
            results[variant][name] = {k: scores[k] for k in ("recall@1", "recall@5", "mrr@10", "n")}
            print(f"{variant:24} {name:6} {results[variant][name]}", flush=True)
    setattr(ingest, "chunk_document", original)  # noqa: B010
    report("heading_study", {"results": results})
    print(json.dumps(results))


if __name__ == "__main__":
    main()
