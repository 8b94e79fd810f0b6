"""Knowledge bases as an older ragtune left them, for the tests of migrations and restores."""

from __future__ import annotations

from pathlib import Path

from knowledge import migrations
from knowledge.connection import connect, transaction


def as_schema_version_1(db: Path) -> None:
    """Rewrite a current knowledge base, rows kept, into exactly the schema ragtune's first
    migration creates (no collections, external ids unique across the file, no unique
    positions): the file a ragtune of schema version 1 would have written."""
    reference = connect(":memory:")
    migrations.MIGRATIONS[0](reference)
    (documents_v1,) = reference.execute(
        "SELECT sql FROM sqlite_master WHERE name = 'documents'"
    ).fetchone()
    reference.close()
    conn = connect(db)
    conn.execute("PRAGMA foreign_keys = OFF")
    with transaction(conn):
        for statement in (
            "CREATE TEMP TABLE documents_now AS SELECT id, external_id, source, title, "
            "content_hash, bytes, added_by, added_at, updated_at FROM documents",
            "DROP TABLE documents",
            documents_v1,
            "INSERT INTO documents SELECT * FROM temp.documents_now",
            "DROP TABLE temp.documents_now",
            "DROP TABLE collections",
            "DROP INDEX chunks_by_position",
            "CREATE INDEX chunks_by_document ON chunks(document_id, position)",
            "PRAGMA user_version = 1",
        ):
            conn.execute(statement)
    conn.close()
