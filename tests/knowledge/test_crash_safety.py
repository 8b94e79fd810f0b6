"""A real `kill -9` at random moments of ingest and reindex never leaves part of a document."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot.core.answer import Answerer, AnswerSettings
from bot.llm.engine import GenerationLimits
from bot.llm.llama import LlamaCppEngine
from bot.llm.model_files import packaged_gguf_path
from bot.llm.worker import ModelWorker
from knowledge.chunking import chunk_document
from knowledge.connection import connect
from knowledge.ingest import content_hash
from knowledge.parsers import parse_bytes
from knowledge.search import HybridSearcher
from knowledge.store import KnowledgeStore
from tests.helpers import HashEmbedder
from tests.knowledge.crash_child import write_corpus

REPO_ROOT = Path(__file__).resolve().parents[2]
KILLS = int(os.environ.get("RAGTUNE_CRASH_KILLS", "20"))


def expected_versions(corpus: Path) -> dict[str, dict[str, list[str]]]:
    """external id -> content hash -> chunk hashes in order, as the child would write them."""
    out: dict[str, dict[str, list[str]]] = {}
    for doc in parse_bytes(corpus.read_bytes(), corpus.name):
        chunks = chunk_document(doc, max_chars=200, overlap_chars=40)
        out.setdefault(doc.external_id or "", {})[content_hash(doc)] = [c.hash for c in chunks]
    return out


def check_consistent(db: Path, versions: dict[str, dict[str, list[str]]]) -> int:
    """Assert integrity and whole documents; return how many distinct versions are stored."""
    conn = connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    with KnowledgeStore.open(db) as store:
        ids = store.row_ids()
        assert ids["chunks"] == ids["keywords"] == ids["vectors"] == ids["exact_vectors"]
        orphans = store.conn.execute(
            "SELECT count(*) FROM chunks WHERE document_id NOT IN (SELECT id FROM documents)"
        ).fetchone()[0]
        assert orphans == 0
        documents = store.list_documents()
        for doc in documents:
            known = versions[doc.external_id]
            assert doc.content_hash in known, f"{doc.external_id} has an unknown content hash"
            stored = [c.hash for c in store.document_chunks(doc.id)]
            assert stored == known[doc.content_hash], f"{doc.external_id} is partly written"
        return len(documents)


def stored_hashes(db: Path) -> set[str]:
    """Content hashes of the stored documents."""
    with KnowledgeStore.open(db) as store:
        return {d.content_hash for d in store.list_documents()}


def answers_after_the_crashes(db: Path) -> None:
    """What a restarted bot does: open the knowledge base, retrieve, answer with the real model."""
    model = packaged_gguf_path()
    assert model is not None
    with KnowledgeStore.open(db) as store:
        stored = store.embedding_model
        assert stored is not None
        searcher = HybridSearcher(store, HashEmbedder(model_id=stored.model_id))
        worker = ModelWorker(LlamaCppEngine(model))
        try:
            settings = AnswerSettings(min_similarity=-1, limits=GenerationLimits(max_tokens=32))
            answer = Answerer(worker, searcher, settings=settings).ask(
                "At what pressure does valve 5-5 open?"  # 5-5: the hash embedder ignores order
            )
        finally:
            worker.close()
            searcher.close()
    assert answer.completion is not None and answer.completion.tokens > 0
    assert answer.sources and answer.sources[0].hit.chunk.title == "Manual 5"


def run_and_kill(args: list[str], after_lines: int) -> bool:
    """Start the child, kill -9 it after `after_lines` progress lines; True if it was killed."""
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.knowledge.crash_child", *args],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    for _ in range(after_lines):
        if child.stdout.readline().strip() in ("done", ""):
            break
    time.sleep(random.uniform(0, 0.004))  # land anywhere inside the next transaction
    killed = child.poll() is None
    child.send_signal(signal.SIGKILL)
    child.wait()
    return killed


@pytest.mark.slow
def test_kill_minus_nine_during_ingest_and_replace(tmp_path: Path) -> None:
    random.seed(20261125)
    db = tmp_path / "kb.db"
    corpora = {v: write_corpus(tmp_path / f"v{v}.jsonl", v) for v in (1, 2)}
    versions = expected_versions(corpora[1])
    for external_id, hashes in expected_versions(corpora[2]).items():
        versions[external_id].update(hashes)
    v1_hashes = {h for by_hash in expected_versions(corpora[1]).values() for h in by_hash}
    killed = mixed = 0
    for round_number in range(KILLS):
        corpus = corpora[1 + round_number % 2]  # alternate, so replacements get killed too
        killed += run_and_kill(["ingest", str(db), str(corpus)], random.randint(0, 29))
        check_consistent(db, versions)
        stored = stored_hashes(db)
        mixed += bool(stored & v1_hashes) and bool(stored - v1_hashes)
    assert killed >= KILLS * 3 // 4, "most runs must really be killed mid-ingest"
    assert mixed > 0, "some kills must land in the middle of a replacement run"
    # After all that, a clean run completes the knowledge base.
    subprocess.run(
        [sys.executable, "-m", "tests.knowledge.crash_child", "ingest", str(db), str(corpora[2])],
        cwd=REPO_ROOT, check=True, capture_output=True,
    )  # fmt: skip
    assert check_consistent(db, versions) == 30
    answers_after_the_crashes(db)
    print(f"kill -9 during ingest: {killed}/{KILLS} runs killed mid-ingest ({mixed} in the middle "
          "of a replacement), 0 inconsistencies, answered afterwards")  # fmt: skip


def ingested(tmp_path: Path) -> tuple[Path, dict[str, dict[str, list[str]]]]:
    """A knowledge base of corpus version 1, ingested by a child run to the end; with the
    chunk versions `check_consistent` expects of it."""
    db = tmp_path / "kb.db"
    corpus = write_corpus(tmp_path / "v1.jsonl", 1)
    subprocess.run(
        [sys.executable, "-m", "tests.knowledge.crash_child", "ingest", str(db), str(corpus)],
        cwd=REPO_ROOT, check=True, capture_output=True,
    )  # fmt: skip
    return db, expected_versions(corpus)


@pytest.mark.slow
def test_kill_minus_nine_during_reindex(tmp_path: Path) -> None:
    random.seed(7)
    db, versions = ingested(tmp_path)
    killed = 0
    for round_number in range(KILLS):
        killed += run_and_kill(
            ["reindex", str(db), f"test/hash-{round_number}"], random.randint(0, 20)
        )
        assert check_consistent(db, versions) == 30
        with KnowledgeStore.open(db) as store:
            model = store.embedding_model
            assert model is not None
            known = {"test/hash-embedder", *(f"test/hash-{i}" for i in range(KILLS))}
            assert model.model_id in known
            assert len(store.vector_tables()) == 1
    assert killed >= KILLS * 3 // 4, "most runs must really be killed mid-reindex"
    answers_after_the_crashes(db)
    print(f"kill -9 during reindex: {killed}/{KILLS} runs killed mid-reindex, 0 inconsistencies, "
          "answered afterwards")  # fmt: skip


@pytest.mark.slow
def test_kill_minus_nine_while_one_collection_is_re_embedded_in_place(tmp_path: Path) -> None:
    random.seed(11)
    db, versions = ingested(tmp_path)
    with KnowledgeStore.open(db) as store:
        table = store.vector_table
    killed = 0
    for _ in range(KILLS):
        killed += run_and_kill(["reindex-collection", str(db), "global"], random.randint(0, 20))
        assert check_consistent(db, versions) == 30
        with KnowledgeStore.open(db) as store:  # in place: the same table, every vector kept
            assert store.vector_tables() == [table] and store.problems() == []
            for batch in store.iter_chunks():  # ... and each one is its own chunk's
                vectors = HashEmbedder().embed([c.embed_text for c in batch])
                distances = [
                    store.cosine_distances([c.id], v)[c.id]
                    for c, v in zip(batch, vectors, strict=True)
                ]
                assert max(distances) < 1e-5
    assert killed >= KILLS * 3 // 4, "most runs must really be killed mid-way"
    answers_after_the_crashes(db)
    print(f"kill -9 while re-embedding a collection: {killed}/{KILLS} runs killed mid-way, "
          "0 inconsistencies, answered afterwards")  # fmt: skip
