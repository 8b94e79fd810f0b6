"""Numbered schema migrations; `PRAGMA user_version` records how many have run."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from knowledge.connection import Connection, transaction
from knowledge.errors import NewerSchemaError
from knowledge.snapshot import database_path, timestamped, write_copy

Migration = Callable[[Connection], None]
MIGRATIONS: list[Migration] = []


def migration(fn: Migration) -> Migration:
    """Register `fn` as the next migration; order of definition is order of application."""
    MIGRATIONS.append(fn)
    return fn


@migration
def m001_initial(conn: Connection) -> None:
    """Documents, chunks, keyword index and metadata (the vector table depends on the embedder)."""
    _run_script(
        conn,
        """
        CREATE TABLE meta (
            key   TEXT PRIMARY KEY,
            value TEXT NOT NULL
        );
        CREATE TABLE documents (
            id           INTEGER PRIMARY KEY,
            external_id  TEXT NOT NULL UNIQUE,
            source       TEXT NOT NULL,
            title        TEXT NOT NULL,
            content_hash TEXT NOT NULL,
            bytes        INTEGER NOT NULL,
            added_by     TEXT,
            added_at     TEXT NOT NULL,
            updated_at   TEXT NOT NULL
        );
        CREATE TABLE chunks (
            id          INTEGER PRIMARY KEY,
            document_id INTEGER NOT NULL REFERENCES documents(id),
            position    INTEGER NOT NULL,
            heading     TEXT NOT NULL,
            text        TEXT NOT NULL,
            hash        TEXT NOT NULL
        );
        CREATE INDEX chunks_by_document ON chunks(document_id, position);
        -- Contentless: the text lives in `chunks`, the index holds a CJK-segmented copy so that
        -- unicode61 finds Chinese/Japanese characters as tokens (see knowledge/keywords.py).
        CREATE VIRTUAL TABLE chunks_fts USING fts5(
            heading, text,
            content = '',
            contentless_delete = 1,
            tokenize = 'porter unicode61 remove_diacritics 2'
        );
        """,
    )


@migration
def m002_unique_positions(conn: Connection) -> None:
    """Every (document, position) at most once, enforced by the schema itself.

    Two writers racing on one document used to store its chunks twice. Databases hurt by that
    are repaired here: of each duplicated position the newest row stays (with its vector and
    keywords), and a document whose copies differ gets an empty content hash, so the next
    `kb add` of its source re-plans it instead of calling it unchanged.
    """
    # Each duplicated row, with whether it differs from the newest row at its position.
    duplicates = conn.execute(
        "SELECT c.id, c.document_id, c.hash != newest.hash FROM chunks c "
        "JOIN chunks newest ON newest.id = (SELECT max(id) FROM chunks m "
        "WHERE m.document_id = c.document_id AND m.position = c.position) "
        "WHERE c.id != newest.id"
    ).fetchall()
    if duplicates:
        ids = [(chunk_id,) for chunk_id, _, _ in duplicates]
        row = conn.execute("SELECT value FROM meta WHERE key = 'vector_table'").fetchone()
        if row is not None:
            table = str(row[0])
            if not re.fullmatch(r"vec_chunks_\d+", table):
                raise ValueError(f"unexpected vector table name {table!r}")
            conn.executemany(f"DELETE FROM {table} WHERE rowid = ?", ids)
            floats = "vec_floats_" + table.removeprefix("vec_chunks_")
            conn.executemany(f"DELETE FROM {floats} WHERE chunk_id = ?", ids)
        conn.executemany("DELETE FROM chunks_fts WHERE rowid = ?", ids)
        conn.executemany("DELETE FROM chunks WHERE id = ?", ids)
        mixed = {(document_id,) for _, document_id, differs in duplicates if differs}
        conn.executemany("UPDATE documents SET content_hash = '' WHERE id = ?", sorted(mixed))
    _run_script(
        conn,
        """
        DROP INDEX chunks_by_document;
        CREATE UNIQUE INDEX chunks_by_position ON chunks(document_id, position);
        """,
    )


GLOBAL_COLLECTION = 0
"""Id of the collection every knowledge base starts with (named `global`)."""


@migration
def m003_collections(conn: Connection) -> None:
    """Collections: every document belongs to one, external ids are unique within it.

    Existing documents go to `global`, id 0, so their vectors stay where they are: the vector
    index's partition of a chunk is `collection * COARSE_PARTITIONS + chunk id % COARSE_PARTITIONS`
    (knowledge/store.py), which for collection 0 is what it was. Nothing is re-embedded.
    """
    _run_script(
        conn,
        f"""
        CREATE TABLE collections (
            id         INTEGER PRIMARY KEY,
            name       TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL
        );
        INSERT INTO collections(id, name, created_at)
            VALUES ({GLOBAL_COLLECTION}, 'global', strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now'));
        CREATE TABLE documents_v3 (
            id            INTEGER PRIMARY KEY,
            collection_id INTEGER NOT NULL REFERENCES collections(id),
            external_id   TEXT NOT NULL,
            source        TEXT NOT NULL,
            title         TEXT NOT NULL,
            content_hash  TEXT NOT NULL,
            bytes         INTEGER NOT NULL,
            added_by      TEXT,
            added_at      TEXT NOT NULL,
            updated_at    TEXT NOT NULL,
            UNIQUE (collection_id, external_id)
        );
        INSERT INTO documents_v3
            SELECT id, {GLOBAL_COLLECTION}, external_id, source, title, content_hash, bytes,
                   added_by, added_at, updated_at
            FROM documents;
        DROP TABLE documents;
        ALTER TABLE documents_v3 RENAME TO documents
        """,
    )


m003_collections.rebuilds_tables = True  # type: ignore[attr-defined]


def _run_script(conn: Connection, script: str) -> None:
    """Run `;`-separated statements inside the caller's transaction.

    `executescript` would commit first on some drivers, breaking a migration's atomicity.
    """
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


def schema_version(conn: Connection) -> int:
    """Number of migrations applied to this database."""
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    return int(version)


def migrate(
    conn: Connection, steps: Sequence[Migration] | None = None, *, what: str = "This database"
) -> int:
    """Apply pending `steps` (the knowledge base's by default), each in its own transaction.

    Returns the resulting version. The bot's state database passes its own steps, and `what`
    names its file in the sentence that refuses a database from a newer ragtune.
    """
    # Read at call time, not bound as a default: tests stand in for older or newer ragtunes by
    # replacing the module's list.
    chain = MIGRATIONS if steps is None else steps
    current = schema_version(conn)
    if current > len(chain):
        raise NewerSchemaError(
            f"{what} has schema version {current}, newer than this ragtune understands "
            f"({len(chain)}): upgrade ragtune to open it."
        )
    if 0 < current < len(chain):
        _backup_before_migrating(conn, current)
    for number, step in enumerate(chain[current:], start=current + 1):
        # SQLite's way to change a table's constraints: build the new table, copy, drop the old,
        # rename. Foreign keys must be off meanwhile (dropping the parent table would delete or
        # refuse its children) and are checked as a whole before the step commits.
        rebuilds = bool(getattr(step, "rebuilds_tables", False))
        if rebuilds:
            conn.execute("PRAGMA foreign_keys = OFF")
        try:
            with transaction(conn):
                # Another process may have opened the same file at the same moment and applied
                # this step while we waited for the write lock.
                if schema_version(conn) < number:
                    step(conn)
                    if rebuilds and conn.execute("PRAGMA foreign_key_check").fetchone():
                        raise ValueError(f"migration {number} broke a foreign key; rolled back")
                    conn.execute(f"PRAGMA user_version = {number}")
        finally:
            if rebuilds:
                conn.execute("PRAGMA foreign_keys = ON")
    return len(chain)


def _backup_before_migrating(conn: Connection, version: int) -> None:
    """A checked copy of the old schema beside the database, in case a migration goes wrong."""
    # Integrity only: the copy has the old schema, which this ragtune would first migrate.
    path = database_path(conn)
    write_copy(conn, timestamped(path.parent / "backups", f"{path.stem}-schema-v{version}"))
