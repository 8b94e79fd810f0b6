"""Names and creation of the vector index's tables, shared by the store and the schema check."""

from __future__ import annotations

import re

from knowledge.connection import Connection

VECTOR_TABLE_PREFIX = "vec_chunks_"
EXACT_TABLE_PREFIX = "vec_floats_"
_VECTOR_TABLE_NAME = re.compile(rf"^{VECTOR_TABLE_PREFIX}\d+$")


def is_vector_table(name: str) -> bool:
    """True for a name ragtune gives a vec0 table (names go into SQL: never trust another)."""
    return _VECTOR_TABLE_NAME.match(name) is not None


def exact_table(vector_table: str) -> str:
    """The plain table holding the float vectors of a vec0 generation."""
    return EXACT_TABLE_PREFIX + vector_table.removeprefix(VECTOR_TABLE_PREFIX)


def create_vector_generation(conn: Connection, name: str, dimension: int) -> None:
    """Create one generation of the vector index: a vec0 table and its float table.

    The vec0 table holds 1-bit quantised vectors for a fast coarse scan; the plain table beside
    it holds the float vectors that re-score the candidates exactly (see
    `KnowledgeStore.nearest_chunks`). Point reads of floats from a vec0 table cost ~0.1 ms each
    here, from a plain table ~1 us.
    """
    if not is_vector_table(name):
        raise ValueError(f"not a vector table name: {name!r}")
    conn.execute(
        f"CREATE VIRTUAL TABLE {name} USING vec0("
        f"part INTEGER PARTITION KEY, embedding bit[{int(dimension)}])"
    )
    conn.execute(
        f"CREATE TABLE {exact_table(name)} (chunk_id INTEGER PRIMARY KEY, embedding BLOB NOT NULL)"
    )
