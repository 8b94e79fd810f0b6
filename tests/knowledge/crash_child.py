"""Child process for the kill -9 and race tests: ingests, syncs a folder, reindexes, or
re-embeds one collection in place, printing after every commit; `reindex DB MODEL --step` also
stops after embedding each batch, before writing it, until a line arrives on stdin (so a test
can change the knowledge base exactly there)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from knowledge.embeddings import Vectors
from knowledge.ingest import Ingestor
from knowledge.reindex import reindex, reindex_collection
from knowledge.store import KnowledgeStore
from knowledge.sync import sync_folder
from tests.helpers import HashEmbedder

DOCUMENTS = 30


class SteppedEmbedder(HashEmbedder):
    """Embeds, says so, then waits for the parent's go-ahead before the vectors are written."""

    def embed(self, texts: Sequence[str]) -> Vectors:
        """HashEmbedder's vectors, handed back once a line arrives on stdin."""
        vectors = super().embed(texts)
        print(f"embedded {len(texts)}", flush=True)
        sys.stdin.readline()
        return vectors


def corpus(version: int) -> list[dict[str, str]]:
    """30 documents; in version 2 every third paragraph of each is rewritten."""
    rows = []
    for d in range(DOCUMENTS):
        paragraphs = []
        for p in range(12):
            edited = version == 2 and p % 3 == 0
            word = "revised" if edited else "original"
            paragraphs.append(
                f"Document {d} paragraph {p} is {word}. It describes valve {d}-{p} in detail. "
                f"The valve opens at pressure {p * 10 + d} and closes again when it drops."
            )
        rows.append({"id": f"doc-{d}", "title": f"Manual {d}", "text": "\n".join(paragraphs)})
    return rows


def write_corpus(path: Path, version: int) -> Path:
    """Write `corpus(version)` as JSONL."""
    path.write_text("\n".join(json.dumps(row) for row in corpus(version)))
    return path


def main() -> None:
    """argv: ingest DB CORPUS | sync DB FOLDER | reindex DB MODEL_ID [--step] |
    reindex-collection DB COLLECTION."""
    mode, db, arg = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    stepped = sys.argv[4:] == ["--step"]
    with KnowledgeStore.open(db) as store:
        print("ready", flush=True)
        if mode == "ingest":
            embedder = (
                HashEmbedder(model_id=store.embedding_model.model_id)
                if (store.embedding_model)
                else HashEmbedder()
            )
            ingestor = Ingestor(store, embedder, chunk_chars=200, overlap_chars=40, embed_batch=1)
            ingestor.add_paths([Path(arg)], progress=lambda r: print(r.external_id, flush=True))
        elif mode == "sync":
            ingestor = Ingestor(store, HashEmbedder(), chunk_chars=200, overlap_chars=40,
                                embed_batch=1)  # fmt: skip
            report = sync_folder(
                ingestor, Path(arg), progress=lambda r: print(r.external_id, flush=True)
            )
            print(json.dumps(report.counts()), flush=True)
        elif mode == "reindex-collection":
            model = store.embedding_model
            assert model is not None, "ingest first"
            reindex_collection(store, HashEmbedder(model_id=model.model_id),
                               store.collection(arg).id, batch_size=16,
                               progress=lambda n: print(n, flush=True))  # fmt: skip
        else:
            embedder = (SteppedEmbedder if stepped else HashEmbedder)(model_id=arg)
            reindex(store, embedder, batch_size=16, progress=lambda n: print(n, flush=True))
        print("done", flush=True)


if __name__ == "__main__":
    main()
