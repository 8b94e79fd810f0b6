"""ragtune's own schema, and checking a file from elsewhere (a backup) against it.

A database file can carry code: triggers that rewrite every row added later, views, extra
tables and indexes. A file is accepted as a knowledge base only when its schema is exactly what
this ragtune creates at that schema version: the same tables, indexes, views and triggers, with
the same definitions, and nothing else.
"""

from __future__ import annotations

import re

from knowledge.connection import Connection, connect
from knowledge.migrations import MIGRATIONS, schema_version
from knowledge.vector_tables import VECTOR_TABLE_PREFIX, create_vector_generation

SchemaObject = tuple[str, str, str, str | None]
"""(type, name, table, normalised SQL) of one sqlite_master row."""

_GENERATION = re.compile(
    rf"CREATE VIRTUAL TABLE ({VECTOR_TABLE_PREFIX}\d+) USING vec0\( ?part INTEGER PARTITION KEY, "
    r"embedding bit\[(\d+)\] ?\)"
)
_MAX_DIMENSION = 16_384
_COMMENT = re.compile(r"--[^\n]*")
_SPACE = re.compile(r"\s+")


def _normalised(sql: str | None) -> str | None:
    """SQL without comments and with single spaces: old files keep their original text."""
    if sql is None:
        return None
    return _SPACE.sub(" ", _COMMENT.sub("", sql)).strip()


def objects(conn: Connection) -> set[SchemaObject]:
    """Every schema object of the main database (ragtune never runs ANALYZE: no exemptions,
    since a file can carry any object under a `sqlite_` name)."""
    rows = conn.execute("SELECT type, name, tbl_name, sql FROM main.sqlite_master")
    return {(str(kind), str(name), str(table), _normalised(sql)) for kind, name, table, sql in rows}


def expected_objects(version: int, generations: dict[str, int]) -> set[SchemaObject]:
    """The schema ragtune creates at `version`, with the given vector tables (name: dimension)."""
    reference = connect(":memory:")
    try:
        for step in MIGRATIONS[:version]:
            step(reference)
        for name, dimension in generations.items():
            create_vector_generation(reference, name, dimension)
        return objects(reference)
    finally:
        reference.close()


def foreign_schema(conn: Connection) -> str | None:
    """Why `conn`'s database is not a ragtune knowledge base (None: it is one, schema-wise)."""
    version = schema_version(conn)
    if version == 0:
        return "it has no ragtune schema version (another program's database?)"
    if version > len(MIGRATIONS):
        return (
            f"it has schema version {version}, newer than this ragtune understands "
            f"({len(MIGRATIONS)}); upgrade ragtune to restore it"
        )
    found = objects(conn)
    generations = {}
    for kind, name, _, sql in found:
        match = _GENERATION.fullmatch(sql or "") if kind == "table" else None
        if match and match[1] == name and 0 < int(match[2]) <= _MAX_DIMENSION:
            generations[name] = int(match[2])
    expected = expected_objects(version, generations)
    if extra := sorted(found - expected):
        listed = ", ".join(f"{kind} {name}" for kind, name, _, _ in extra[:5])
        more = f" and {len(extra) - 5} more" if len(extra) > 5 else ""
        return f"it holds what ragtune never creates ({listed}{more})"
    if missing := sorted(expected - found):
        listed = ", ".join(f"{kind} {name}" for kind, name, _, _ in missing[:5])
        return f"it lacks part of ragtune's schema ({listed})"
    return None
