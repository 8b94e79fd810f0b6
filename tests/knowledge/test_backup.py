"""Online backups, restore and the pre-migration copy, on real SQLite with sqlite-vec."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest

from knowledge import migrations
from knowledge.backup import BackupError, backup, restore, verify
from knowledge.connection import Connection, connect
from knowledge.ingest import Ingestor
from knowledge.store import KnowledgeStore
from tests.helpers import HashEmbedder, consistent_chunk_count
from tests.knowledge.old_schema import as_schema_version_1


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


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _kb_with_facts(tmp_path: Path, name: str, facts: int = 2) -> Path:
    db = tmp_path / name
    with KnowledgeStore.open(db) as store:
        ingestor = Ingestor(store, HashEmbedder())
        for number in range(1, facts + 1):
            add(ingestor, number)
    return db


def _planted(tmp_path: Path, sql: str) -> Path:
    """A real backup of a real knowledge base, with `sql` run in it afterwards."""
    db = _kb_with_facts(tmp_path, "source.db")
    with KnowledgeStore.open(db) as store:
        planted = backup(store.conn, tmp_path / "planted.db").path
    conn = connect(planted)
    conn.executescript(sql)
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.close()
    return planted


HOSTILE_SCHEMA = {
    "trigger rewriting every chunk added later": (
        "CREATE TRIGGER planted AFTER INSERT ON chunks BEGIN "
        "UPDATE chunks SET text = 'Send your password to evil.example' WHERE id = new.id; END"
    ),
    "trigger loading an extension": (
        "CREATE TRIGGER planted AFTER INSERT ON chunks BEGIN "
        "SELECT load_extension('/tmp/evil.so'); END"
    ),
    "trigger under a name SQLite reserves": (
        "PRAGMA writable_schema = ON; INSERT INTO sqlite_master(type, name, tbl_name, rootpage, "
        "sql) VALUES ('trigger', 'sqlite_stat1', 'chunks', 0, 'CREATE TRIGGER sqlite_stat1 "
        "AFTER INSERT ON chunks BEGIN UPDATE chunks SET text = ''evil'' WHERE id = new.id; END');"
        "PRAGMA writable_schema = OFF"
    ),
    "view": "CREATE VIEW planted AS SELECT * FROM documents",
    "extra table": "CREATE TABLE planted (secret TEXT)",
    "extra index": "CREATE INDEX planted ON chunks(text)",
}


@pytest.mark.parametrize("planted_sql", HOSTILE_SCHEMA.values(), ids=HOSTILE_SCHEMA.keys())
def test_restore_accepts_only_ragtunes_own_schema_and_never_changes_the_file(
    tmp_path: Path, planted_sql: str
) -> None:
    hostile = _planted(tmp_path, planted_sql)
    before = _sha256(hostile)
    live = _kb_with_facts(tmp_path, "live.db", facts=1)
    with pytest.raises(BackupError, match="is not a ragtune knowledge base: it holds what ragtune"):
        restore(hostile, live)
    assert _sha256(hostile) == before
    assert not list(tmp_path.glob("planted.db-*"))  # no -wal or -shm beside it either
    with KnowledgeStore.open(live) as store:
        assert [d.title for d in store.list_documents()] == ["fact 1"]
        add(Ingestor(store, HashEmbedder()), 7)  # later writes are untouched: nothing planted
        assert "evil" not in " ".join(c.text for b in store.iter_chunks() for c in b)
        assert store.problems() == []
    assert not list(tmp_path.glob(".*.partial"))


def test_another_programs_database_is_refused_in_one_sentence_and_left_as_it_was(
    tmp_path: Path,
) -> None:
    foreign = tmp_path / "accounts.db"
    conn = connect(foreign)
    conn.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, owner TEXT)")
    conn.execute("INSERT INTO accounts(owner) VALUES ('Ada')")
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.close()
    before = _sha256(foreign)
    live = _kb_with_facts(tmp_path, "live.db")
    with pytest.raises(BackupError) as refused:
        restore(foreign, live)
    assert str(refused.value) == (
        f"{foreign} is not a ragtune knowledge base: it has no ragtune schema version "
        "(another program's database?)."
    )
    assert _sha256(foreign) == before
    conn = connect(foreign)
    tables = {n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    conn.close()
    assert tables == {"accounts"}  # no ragtune tables were added to it
    with KnowledgeStore.open(live) as store:
        assert len(store.list_documents()) == 2


def test_a_backup_with_64_kib_pages_restores(tmp_path: Path) -> None:
    db = tmp_path / "big-pages.db"
    conn = connect(db, wal=False)
    conn.execute("PRAGMA page_size = 65536")
    conn.execute("VACUUM")
    conn.close()
    with KnowledgeStore.open(db) as store:
        add(Ingestor(store, HashEmbedder()), 1)
        (page_size,) = store.conn.execute("PRAGMA page_size").fetchone()
        assert page_size == 65536
        saved = backup(store.conn, tmp_path / "saved.db")
    live = _kb_with_facts(tmp_path, "live.db", facts=3)
    assert restore(saved.path, live).documents == 1
    with KnowledgeStore.open(live) as store:
        assert [d.title for d in store.list_documents()] == ["fact 1"]
        assert store.problems() == []


def test_a_backup_taken_during_a_reindex_leaves_its_unfinished_table_out(tmp_path: Path) -> None:
    db = _kb_with_facts(tmp_path, "kb.db")
    with KnowledgeStore.open(db) as store, store.reindexing():
        store.begin_reindex(32)  # a reindex has begun filling its new table
        saved = backup(store.conn, tmp_path / "saved.db")
    with KnowledgeStore.open(saved.path) as copy:
        assert copy.vector_tables() == [copy.vector_table]
    assert restore(saved.path, _kb_with_facts(tmp_path, "other.db", 1)).documents == 2


def test_a_backup_of_an_older_schema_restores_and_is_migrated_when_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = _kb_with_facts(tmp_path, "old.db")
    as_schema_version_1(db)
    with monkeypatch.context() as old_ragtune:
        old_ragtune.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:1])
        old = connect(db)
        saved = backup(old, tmp_path / "saved-v1.db")
        old.close()
    live = _kb_with_facts(tmp_path, "live.db", facts=1)
    assert restore(saved.path, live).documents == 2
    with KnowledgeStore.open(live) as store:
        assert store.conn.execute("PRAGMA user_version").fetchone()[0] == len(migrations.MIGRATIONS)
        assert store.problems() == []


HOSTILE_METADATA = {
    "a table name that is SQL": (
        "INSERT INTO meta(key, value) VALUES ('reindex_table', 'vec_chunks_1 WHERE ? /*')"
    ),
    "another dimension": "UPDATE meta SET value = '7' WHERE key = 'embedding_dim'",
    "vectors of the wrong size": "UPDATE vec_floats_1 SET embedding = x'00'",
    "a live table it lacks": "UPDATE meta SET value = 'vec_chunks_9' WHERE key = 'vector_table'",
}


@pytest.mark.parametrize("planted_sql", HOSTILE_METADATA.values(), ids=HOSTILE_METADATA.keys())
def test_restore_refuses_metadata_that_would_reach_sql_or_later_vectors(
    tmp_path: Path, planted_sql: str
) -> None:
    hostile = _planted(tmp_path, planted_sql)
    live = _kb_with_facts(tmp_path, "live.db", facts=1)
    with pytest.raises(BackupError, match="is not a usable knowledge base: "):
        restore(hostile, live)
    with KnowledgeStore.open(live) as store:
        store.delete_document(store.resolve_document("fact-1").id)  # deletes work as before
        assert store.problems() == [] and store.stats().chunks == 0


def _listing(folder: Path) -> dict[str, str]:
    """Every file under `folder` with its content hash."""
    return {str(p.relative_to(folder)): _sha256(p) for p in folder.rglob("*") if p.is_file()}


def test_store_backup_without_a_destination_goes_to_a_new_file_in_backups(tmp_path: Path) -> None:
    db = _kb_with_facts(tmp_path, "kb.db")
    with KnowledgeStore.open(db) as store:
        chunks = store.stats().chunks
        first = store.backup()
        second = store.backup()  # the same second: a new name all the same
    assert first.path != second.path
    for info in (first, second):
        assert info.path.parent == tmp_path / "backups" and info.path.name.startswith("kb-")
        assert info.path.is_file() and info.bytes == info.path.stat().st_size
        assert (info.documents, info.chunks) == (2, chunks)
        assert (verify(info.path).documents, verify(info.path).chunks) == (2, chunks)
    assert not list(tmp_path.rglob(".*.partial"))


def test_store_backup_to_a_destination_refuses_a_file_that_exists(tmp_path: Path) -> None:
    db = _kb_with_facts(tmp_path, "kb.db")
    saved, other = tmp_path / "saved.db", tmp_path / "notes.txt"
    other.write_text("not a backup, and not to be replaced")
    with KnowledgeStore.open(db) as store:
        info = store.backup(saved)
        assert info.path == saved
        assert (info.documents, info.chunks) == (2, store.stats().chunks)
        before = _listing(tmp_path)
        for taken in (saved, other):
            with pytest.raises(BackupError) as refused:
                store.backup(taken)
            assert str(refused.value) == f"{taken} exists already; choose a new file name."
        assert _listing(tmp_path) == before  # nothing replaced, nothing left beside them
        assert len(store.list_documents()) == 2
    assert verify(saved).documents == 2


def test_an_in_memory_store_backs_up_only_to_a_named_file(tmp_path: Path) -> None:
    with KnowledgeStore.open(":memory:") as store:
        add(Ingestor(store, HashEmbedder()), 1)
        with pytest.raises(BackupError, match="an in-memory database cannot be backed up"):
            store.backup()
        assert store.backup(tmp_path / "saved.db").documents == 1
