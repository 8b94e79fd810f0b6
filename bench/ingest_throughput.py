"""Ingest throughput: chunks/s through `kb add`'s Ingestor vs raw SentenceTransformer.encode.

Both sides embed exactly the same chunk texts with the same loaded model in the same process;
model loading is excluded from both. Run: `make bench` or `python -m bench.ingest_throughput
[--small-files N]`: with N, the corpus is N small Markdown files in a folder (one dev passage
each, cycled), the case where starting a limited parser child per file used to dominate.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from bench.common import DEV_EVAL_DIR, median, read_jsonl, report
from bot.config import Settings
from knowledge.chunking import embedding_input
from knowledge.embeddings import SentenceTransformerEmbedder
from knowledge.ingest import Ingestor
from knowledge.store import KnowledgeStore

COPIES = 3  # the dev corpus three times over (distinct ids and titles): ~1,700 chunks
RUNS = 3


def write_corpus(path: Path) -> Path:
    """The dev corpus repeated COPIES times with distinct ids and titles."""
    rows = read_jsonl(DEV_EVAL_DIR / "corpus.jsonl")
    with path.open("w", encoding="utf-8") as out:
        for copy in range(COPIES):
            for row in rows:
                row = {**row, "id": f"{row['id']}-c{copy}", "title": f"{row['title']} ({copy})"}
                out.write(json.dumps(row) + "\n")
    return path


def write_folder(folder: Path, files: int) -> Path:
    """`files` small Markdown files, one dev passage each (cycled, with distinct titles)."""
    rows = read_jsonl(DEV_EVAL_DIR / "corpus.jsonl")
    folder.mkdir()
    for n in range(files):
        row = rows[n % len(rows)]
        (folder / f"note-{n:05}.md").write_text(f"# {row['title']} ({n})\n\n{row['text']}\n")
    return folder


def main() -> None:
    """Alternate ingest and raw runs; report medians and their ratio."""
    small_files = (
        int(sys.argv[sys.argv.index("--small-files") + 1]) if "--small-files" in sys.argv else 0
    )
    settings = Settings(_env_file=None)  # the defaults a user gets
    embedder = SentenceTransformerEmbedder(batch_size=settings.embedding_batch_size)
    model = embedder._load()  # the raw library's own object, shared by both sides
    embedder.embed(["warm up"])
    ingest_rates, raw_rates = [], []
    with tempfile.TemporaryDirectory() as tmp:
        corpus = (
            write_folder(Path(tmp) / "notes", small_files)
            if small_files
            else write_corpus(Path(tmp) / "corpus.jsonl")
        )
        for run in range(RUNS):
            with KnowledgeStore.open(Path(tmp) / f"run{run}.db") as store:
                ingestor = Ingestor(store, embedder, embed_batch=settings.ingest_batch_chunks)
                started = time.perf_counter()
                ingestor.add_paths([corpus])
                seconds = time.perf_counter() - started
                texts = [
                    embedding_input(c.heading, c.text)
                    for batch in store.iter_chunks()
                    for c in batch
                ]
            ingest_rates.append(len(texts) / seconds)
            started = time.perf_counter()
            model.encode(texts, batch_size=embedder.batch_size, normalize_embeddings=True)
            raw_seconds = time.perf_counter() - started
            raw_rates.append(len(texts) / raw_seconds)
            print(
                f"run {run}: {len(texts)} chunks, ingest {ingest_rates[-1]:.1f}/s, "
                f"raw encode {raw_rates[-1]:.1f}/s"
            )
    report(
        f"ingest_throughput_{small_files}_small_files" if small_files else "ingest_throughput",
        {
            "small_files": small_files,
            "chunks": len(texts),
            "runs": RUNS,
            "ingest_chunks_per_s": round(median(ingest_rates), 1),
            "raw_encode_chunks_per_s": round(median(raw_rates), 1),
            "ratio": round(median(ingest_rates) / median(raw_rates), 3),
        },
    )


if __name__ == "__main__":
    main()
