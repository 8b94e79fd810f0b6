"""Writers racing each other and a reindex: real processes, real SQLite, each chunk once."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from bot.app import build_ingestor
from bot.config import Settings
from knowledge.backup import backup
from knowledge.chunking import chunk_document
from knowledge.connection import Connection, connect
from knowledge.embeddings import SentenceTransformerEmbedder, Vectors
from knowledge.errors import ReindexRunningError
from knowledge.ingest import Ingestor, Outcome
from knowledge.parsers import parse_bytes
from knowledge.reindex import reindex
from knowledge.search import HybridSearcher
from knowledge.store import KnowledgeStore
from tests.helpers import HashEmbedder
from tests.knowledge.crash_child import corpus, write_corpus
from tests.knowledge.old_schema import as_schema_version_1

REPO_ROOT = Path(__file__).resolve().parents[2]
RAGTUNE = str(Path(sys.executable).parent / "ragtune")


def write_folder(folder: Path, version: int = 1) -> Path:
    """The crash corpus as a folder of 30 Markdown files, as an admin would keep it."""
    folder.mkdir(parents=True, exist_ok=True)
    for row in corpus(version):
        (folder / f"{row['id']}.md").write_text(f"# {row['title']}\n\n{row['text']}\n")
    return folder


def chunks_of_one_add(folder: Path) -> int:
    """How many chunks one `kb add` of `folder` stores with the default settings."""
    return sum(
        len(chunk_document(doc))
        for path in sorted(folder.glob("*.md"))
        for doc in parse_bytes(path.read_bytes(), path.name)
    )


def cli_env() -> dict[str, str]:
    """The environment without RAGTUNE_ settings, so the defaults apply."""
    return {k: v for k, v in os.environ.items() if not k.startswith("RAGTUNE_")}


@pytest.mark.slow
@pytest.mark.parametrize("gap_s", [0.0, 3.0], ids=["together", "3 s apart"])
def test_two_kb_add_processes_of_the_same_files_store_every_chunk_once(
    tmp_path: Path, gap_s: float, real_embedder: SentenceTransformerEmbedder
) -> None:
    docs = write_folder(tmp_path / "docs")
    db = tmp_path / "kb.db"
    command = [RAGTUNE, "kb", "add", str(docs), "--db", str(db)]
    run = {"cwd": tmp_path, "env": cli_env(), "stdout": subprocess.PIPE, "text": True}
    first = subprocess.Popen(command, **run)  # type: ignore[call-overload]
    time.sleep(gap_s)
    second = subprocess.Popen(command, **run)  # type: ignore[call-overload]
    outputs = [proc.communicate(timeout=300)[0] for proc in (first, second)]
    assert first.returncode == second.returncode == 0, outputs
    with KnowledgeStore.open(db) as store:
        assert store.problems() == []
        assert len(store.list_documents()) == 30
        assert store.stats().chunks == chunks_of_one_add(docs)
        backup(store.conn, tmp_path / "backup.db")
        # What a third `kb add` would find (the CLI's own settings, in this process).
        again = build_ingestor(Settings(_env_file=None), store, real_embedder).add_paths([docs])
        assert again.count(Outcome.UNCHANGED) == 30 and again.chunks_embedded == 0
    print(f"two kb add processes {gap_s:.0f} s apart: {outputs[0].strip()} | "
          f"{outputs[1].strip()}; {chunks_of_one_add(docs)} chunks stored once")  # fmt: skip


class InterruptedEmbedder(HashEmbedder):
    """Embeds; on the first call another writer changes the knowledge base meanwhile."""

    def __init__(self, meanwhile: Callable[[], object]) -> None:
        super().__init__()
        self.meanwhile: Callable[[], object] | None = meanwhile

    def embed(self, texts: Sequence[str]) -> Vectors:
        """HashEmbedder's vectors, after `meanwhile` ran (once)."""
        if self.meanwhile is not None:
            meanwhile, self.meanwhile = self.meanwhile, None
            meanwhile()
        return super().embed(texts)


def text_of(version: int) -> str:
    return " ".join(f"Clause {i} of version {version} sets limit {i * version}." for i in range(30))


def tail_edited(last: int, word: str) -> str:
    """The same 30 clauses with the last `last` of them reworded."""
    clauses = [f"Clause {i} sets limit {i}." for i in range(30)]
    clauses[30 - last :] = [f"Clause {i} is {word} now." for i in range(30 - last, 30)]
    return " ".join(clauses)


@pytest.mark.parametrize(
    ("other_writes", "outcome"),
    [
        (3, Outcome.UNCHANGED),  # the other writer stored the same text first
        (2, Outcome.REPLACED),  # it stored another version: ours replaces it
        (None, Outcome.ADDED),  # it deleted the document: ours adds it again
    ],
)
def test_a_write_planned_before_another_writer_changed_the_document_is_planned_again(
    tmp_path: Path, other_writes: int | None, outcome: Outcome
) -> None:
    db = tmp_path / "kb.db"
    key = {"title": "Terms", "external_id": "terms", "source": "test"}
    with KnowledgeStore.open(db) as store:
        Ingestor(store, HashEmbedder(), chunk_chars=120).add_text(text_of(1), **key)
    other = KnowledgeStore.open(db)

    def other_writer() -> None:
        if other_writes is None:
            other.delete_document(other.resolve_document("terms").id)
        else:
            Ingestor(other, HashEmbedder(), chunk_chars=120).add_text(text_of(other_writes), **key)

    with KnowledgeStore.open(db) as store:
        ingestor = Ingestor(store, InterruptedEmbedder(other_writer), chunk_chars=120)
        result = ingestor.add_text(text_of(3), **key)
        assert result.outcome is outcome
        assert store.problems() == []
        (doc,) = store.list_documents()
        expected = chunk_document(parse_bytes(text_of(3).encode(), "Terms.txt")[0], max_chars=120)
        assert [c.text for c in store.document_chunks(doc.id)] == [c.text for c in expected]
    other.close()


def test_the_schema_refuses_a_second_chunk_at_the_same_position(store: KnowledgeStore) -> None:
    Ingestor(store, HashEmbedder()).add_text("One fact.", title="t", external_id="t", source="s")
    (chunk,) = store.document_chunks(store.resolve_document("t").id)
    with pytest.raises(Exception, match="UNIQUE constraint failed"):
        store.conn.execute(
            "INSERT INTO chunks(document_id, position, heading, text, hash) VALUES (?, ?, ?, ?, ?)",
            (chunk.document_id, chunk.position, chunk.heading, chunk.text, chunk.hash),
        )


def _duplicate_chunks(conn: Connection, document_id: int, *, text: str | None = None) -> None:
    """What two racing writers used to leave: each chunk of a document stored again."""
    (table,) = conn.execute("SELECT value FROM meta WHERE key = 'vector_table'").fetchone()
    floats = table.replace("vec_chunks_", "vec_floats_")
    rows = conn.execute(
        "SELECT id, position, heading, text, hash FROM chunks WHERE document_id = ?",
        (document_id,),
    ).fetchall()
    for old_id, position, heading, old_text, digest in rows:
        (new_id,) = conn.execute(
            "INSERT INTO chunks(document_id, position, heading, text, hash) "
            "VALUES (?, ?, ?, ?, ?) RETURNING id",
            (document_id, position, heading, text or old_text, "x" if text else digest),
        ).fetchone()
        conn.execute("INSERT INTO chunks_fts(rowid, heading, text) VALUES (?, ?, ?)",
                     (new_id, heading, text or old_text))  # fmt: skip
        (blob,) = conn.execute(
            f"SELECT embedding FROM {floats} WHERE chunk_id = ?", (old_id,)
        ).fetchone()
        conn.execute(f"INSERT INTO {floats}(chunk_id, embedding) VALUES (?, ?)", (new_id, blob))
        conn.execute(
            f"INSERT INTO {table}(rowid, part, embedding) VALUES (?, ?, vec_quantize_binary(?))",
            (new_id, new_id % 16, blob),
        )


def test_migration_2_repairs_a_knowledge_base_with_duplicated_chunks(tmp_path: Path) -> None:
    db = tmp_path / "kb.db"
    with KnowledgeStore.open(db) as store:
        ingestor = Ingestor(store, HashEmbedder(), chunk_chars=120)
        for name in ("same", "mixed", "clean"):
            ingestor.add_text(text_of(1), title=name, external_id=name, source="test")
        ids = {d.external_id: d.id for d in store.list_documents()}
        per_document = store.list_documents()[0].chunks
    as_schema_version_1(db)  # what a ragtune of schema version 1 left, where writers raced:
    conn = connect(db)
    _duplicate_chunks(conn, ids["same"])  # two identical writes raced
    _duplicate_chunks(conn, ids["mixed"], text="Another writer's text.")
    conn.close()
    with KnowledgeStore.open(db) as store:
        assert store.problems() == []
        assert [d.chunks for d in store.list_documents()] == [per_document] * 3
        hashes = {d.external_id: d.content_hash for d in store.list_documents()}
        assert hashes["mixed"] == "" and "" not in (hashes["same"], hashes["clean"])
        report = Ingestor(store, HashEmbedder(), chunk_chars=120).add_text(
            text_of(1), title="mixed", external_id="mixed", source="test"
        )
        assert report.outcome is Outcome.REPLACED  # the next add repairs the mixed one
        assert store.problems() == []
    assert list((tmp_path / "backups").glob("kb-schema-v1-*.db"))  # the repair backed up first


def stepped_reindex(db: Path, model_id: str) -> subprocess.Popen[str]:
    """A reindex in another process that stops after embedding each batch (see crash_child)."""
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.knowledge.crash_child", "reindex", str(db), model_id,
         "--step"],
        cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    assert child.stdout.readline().startswith("embedded")  # paused before writing batch 1
    return child


def finish(child: subprocess.Popen[str]) -> list[str]:
    """Let a stepped reindex run to its end; return what it printed."""
    assert child.stdin is not None and child.stdout is not None
    lines = ["embedded"]  # where `stepped_reindex` left it
    line = ""
    while lines[-1].startswith("embedded"):
        child.stdin.write("\n")  # go on writing the batch it embedded
        child.stdin.flush()
        while (line := child.stdout.readline().strip()) not in ("done", ""):
            lines.append(line)
            if line.startswith("embedded"):
                break
        else:
            break
    child.wait(timeout=60)
    assert child.returncode == 0 and line == "done", lines
    return lines


@pytest.fixture
def ingested(tmp_path: Path) -> Iterator[Path]:
    """The 30-document crash corpus in a knowledge base file, written by another process."""
    db = tmp_path / "kb.db"
    subprocess.run(
        [sys.executable, "-m", "tests.knowledge.crash_child", "ingest", str(db),
         str(write_corpus(tmp_path / "v1.jsonl", 1))],
        cwd=REPO_ROOT, check=True, capture_output=True,
    )  # fmt: skip
    yield db


def test_opening_the_database_during_a_reindex_leaves_its_table_alone(ingested: Path) -> None:
    child = stepped_reindex(ingested, "test/new")
    try:
        with KnowledgeStore.open(ingested) as other:  # e.g. the bot starting, or `kb list`
            assert len(other.vector_tables()) == 2
            with pytest.raises(ReindexRunningError, match="Another reindex"):
                reindex(other, HashEmbedder(model_id="test/third"))
    finally:
        finish(child)
    with KnowledgeStore.open(ingested) as store:
        assert store.problems() == []
        assert store.embedding_model is not None
        assert store.embedding_model.model_id == "test/new"
        assert len(store.vector_tables()) == 1


def test_writes_during_a_reindex_reach_the_new_table(ingested: Path, tmp_path: Path) -> None:
    child = stepped_reindex(ingested, "test/new")
    try:
        with KnowledgeStore.open(ingested) as bot:  # the bot's writer, while the CLI reindexes
            ingestor = Ingestor(bot, HashEmbedder(), chunk_chars=200, overlap_chars=40)
            bot.delete_document(bot.resolve_document("doc-29").id)  # /forget: the newest ids
            ingestor.add_text("The harbour crane lifts 40 tonnes.", title="Crane",
                              external_id="crane", source="telegram")  # fmt: skip
            # doc-0's chunks are in the batch the reindex has embedded but not yet written.
            ingestor.add_text("Valve 0-0 was replaced by a pump.", title="Manual 0",
                              external_id="doc-0", source="telegram")  # fmt: skip
    finally:
        finish(child)
    with KnowledgeStore.open(ingested) as store:
        assert store.problems() == []
        assert len(store.list_documents()) == 30
        hits = HybridSearcher(store, HashEmbedder(model_id="test/new")).search("crane tonnes", 1)
        assert hits[0].chunk.title == "Crane" and hits[0].vector_rank == 1
        # Every vector in the new table is that of its chunk's current text: none is stale.
        chunks = [c for batch in store.iter_chunks() for c in batch]
        vectors = HashEmbedder().embed([c.embed_text for c in chunks])
        for chunk, vector in zip(chunks, vectors, strict=True):
            assert store.cosine_distances([chunk.id], vector)[chunk.id] < 1e-6, chunk
        assert backup(store.conn, tmp_path / "after.db").chunks == store.stats().chunks


def small(store: KnowledgeStore, embedder: HashEmbedder) -> Ingestor:
    """An ingestor with small chunks, so a short text makes many."""
    return Ingestor(store, embedder, chunk_chars=80, overlap_chars=20)


def test_a_chunk_id_reused_by_another_writer_does_not_mix_versions(tmp_path: Path) -> None:
    """Another writer rewrites the document's last chunks, and SQLite gives the new chunks the
    ids the old ones had: a plan made on the old chunks must still be seen as stale."""
    db = tmp_path / "kb.db"
    key = {"title": "Terms", "external_id": "terms", "source": "test"}
    with KnowledgeStore.open(db) as store:
        small(store, HashEmbedder()).add_text(tail_edited(0, ""), **key)
        before = {c.id for c in store.document_chunks(store.resolve_document("terms").id)}
    other = KnowledgeStore.open(db)

    def other_writer() -> None:
        small(other, HashEmbedder()).add_text(tail_edited(6, "changed"), **key)
        after = {c.id for c in other.document_chunks(other.resolve_document("terms").id)}
        assert after == before  # the ids were given out again: the old check saw no change

    with KnowledgeStore.open(db) as store:
        ingestor = small(store, InterruptedEmbedder(other_writer))
        assert ingestor.add_text(tail_edited(1, "final"), **key).outcome is Outcome.REPLACED
        (doc,) = store.list_documents()
        parsed = parse_bytes(tail_edited(1, "final").encode(), "Terms.txt")[0]
        expected = [c.text for c in chunk_document(parsed, max_chars=80, overlap_chars=20)]
        assert [c.text for c in store.document_chunks(doc.id)] == expected
    other.close()
