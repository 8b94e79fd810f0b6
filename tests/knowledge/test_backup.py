"""Online backups, restore and the pre-migration copy, on real SQLite with sqlite-vec."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from knowledge import migrations
from knowledge.backup import BackupError, backup, restore, verify
from knowledge.connection import Connection, connect
from knowledge.ingest import Ingestor
from knowledge.store import KnowledgeStore
from tests.helpers import HashEmbedder, consistent_chunk_count


def add(ingestor: Ingestor, number: int) -> None:
    ingestor.add_text(
        f"Fact {number}: the lighthouse keeper counted {number} gulls. " * 3,
        title=f"fact {number}", external_id=f"fact-{number}", source="test",
    )  # fmt: skip


def test_backups_taken_during_writes_are_whole_snapshots(tmp_path: Path) -> None:
    db = tmp_path / "kb.db"
    with KnowledgeStore.open(db) as store:
        add(Ingestor(store, HashEmbedder()), 0)
    stop = threading.Event()

    def keep_writing() -> None:
        with KnowledgeStore.open(db) as writer:
            ingestor = Ingestor(writer, HashEmbedder())
            number = 1
            while not stop.is_set():
                add(ingestor, number)
                number += 1

    thread = threading.Thread(target=keep_writing)
    thread.start()
    taken = []
    try:
        with KnowledgeStore.open(db) as reader:
            for number in range(5):
                taken.append(backup(reader.conn, tmp_path / f"backup-{number}.db"))
    finally:
        stop.set()
        thread.join()
    for info in taken:
        assert not (info.path.parent / f"{info.path.name}-wal").exists()  # one file
        with KnowledgeStore.open(info.path) as copy:
            assert consistent_chunk_count(copy) == info.chunks
            assert len(copy.list_documents()) == info.documents >= 1
    assert not list(tmp_path.glob(".*.partial"))


def test_restore_brings_back_what_was_forgotten_and_keeps_the_replaced_state(
    tmp_path: Path,
) -> None:
    db = tmp_path / "kb.db"
    with KnowledgeStore.open(db) as store:
        ingestor = Ingestor(store, HashEmbedder())
        add(ingestor, 1)
        add(ingestor, 2)
        saved = backup(store.conn, tmp_path / "saved.db")
        with pytest.raises(BackupError, match="exists already"):
            backup(store.conn, tmp_path / "saved.db")
        store.delete_document(store.resolve_document("fact-1").id)
    restored = restore(saved.path, db)
    assert restored.documents == 2
    with KnowledgeStore.open(db) as store:
        assert sorted(d.title for d in store.list_documents()) == ["fact 1", "fact 2"]
        assert consistent_chunk_count(store) == saved.chunks
    (before,) = (tmp_path / "backups").glob("before-restore-*.db")
    assert verify(before).documents == 1  # the state it replaced, kept


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"not a database at all", "not an SQLite database"),
     (b"SQLite format 3\x00" + b"\xff" * 5000, "damaged|not a usable")],
)  # fmt: skip
def test_a_bad_backup_is_refused_and_the_database_is_untouched(
    tmp_path: Path, content: bytes, message: str
) -> None:
    db = tmp_path / "kb.db"
    with KnowledgeStore.open(db) as store:
        add(Ingestor(store, HashEmbedder()), 1)
    bad = tmp_path / "bad.db"
    bad.write_bytes(content)
    with pytest.raises(BackupError, match=message):
        restore(bad, db)
    with KnowledgeStore.open(db) as store:
        assert [d.title for d in store.list_documents()] == ["fact 1"]


def test_a_schema_migration_takes_a_backup_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "kb.db"
    with KnowledgeStore.open(db) as store:
        add(Ingestor(store, HashEmbedder()), 1)
    version = len(migrations.MIGRATIONS)

    def m_next(conn: Connection) -> None:
        """A harmless new table stands in for a future schema change."""
        conn.execute("CREATE TABLE future_feature (id INTEGER PRIMARY KEY)")

    monkeypatch.setattr(migrations, "MIGRATIONS", [*migrations.MIGRATIONS, m_next])
    with KnowledgeStore.open(db) as store:
        (now,) = store.conn.execute("PRAGMA user_version").fetchone()
        assert now == version + 1
    (copy,) = (tmp_path / "backups").glob(f"kb-schema-v{version}-*.db")
    conn = connect(copy)
    try:
        (old,) = conn.execute("PRAGMA user_version").fetchone()
        tables = {n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        conn.close()
    assert old == version and "future_feature" not in tables and "documents" in tables
