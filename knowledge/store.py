"""KnowledgeStore: owns the connection; every SQL statement of the knowledge base lives here."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import numpy as np

from knowledge.chunking import Chunk
from knowledge.connection import Connection, connect, transaction
from knowledge.embeddings import Vectors
from knowledge.errors import DocumentNotFoundError, EmbedderMismatchError
from knowledge.keywords import segment_for_index
from knowledge.migrations import migrate

VECTOR_TABLE_PREFIX = "vec_chunks_"
EXACT_TABLE_PREFIX = "vec_floats_"
_VECTOR_TABLE_NAME = re.compile(rf"^{VECTOR_TABLE_PREFIX}\d+$")
# The coarse scan runs once per partition with a small k. sqlite-vec 0.1.9's k-NN costs grow
# with k times the rows scanned (k=400 over 100k rows: ~50 ms here), so 16 partitions x k=25
# give 400 candidates for the cost of one k=25 scan (~5 ms). Changing it needs a reindex.
COARSE_PARTITIONS = 16


@dataclass(frozen=True)
class DocumentInfo:
    """One stored document, with its chunk count."""

    id: int
    external_id: str
    source: str
    title: str
    content_hash: str
    bytes: int
    added_by: str | None
    added_at: str
    updated_at: str
    chunks: int


@dataclass(frozen=True)
class StoredChunk:
    """A chunk row plus the document fields a citation needs."""

    id: int
    document_id: int
    position: int
    heading: str
    text: str
    hash: str
    external_id: str
    title: str
    source: str


@dataclass(frozen=True)
class EmbeddingModel:
    """The embedder a database's vectors were made with."""

    model_id: str
    dimension: int


@dataclass(frozen=True)
class StoreStats:
    """Sizes of the knowledge base."""

    documents: int
    chunks: int
    text_bytes: int
    file_bytes: int
    model: EmbeddingModel | None


@dataclass(frozen=True)
class DocumentWrite:
    """Everything needed to write one document atomically (see `KnowledgeStore.save_document`)."""

    external_id: str
    source: str
    title: str
    content_hash: str
    size: int
    added_by: str | None
    keep: Sequence[tuple[int, int]]  # (existing chunk id, new position)
    remove: Sequence[int]  # existing chunk ids no longer present
    new: Sequence[Chunk]
    vectors: Vectors  # one row per chunk in `new`


_CHUNK_COLUMNS = """
    c.id, c.document_id, c.position, c.heading, c.text, c.hash,
    d.external_id, d.title, d.source
"""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _blob(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype=np.float32).tobytes()


@cache
def _nearest_sql(table: str) -> str:
    """The two-stage k-NN query for one vector table (built once: it runs on every search)."""
    coarse = " UNION ALL ".join(
        f"SELECT rowid FROM (SELECT rowid FROM {table} WHERE embedding MATCH "
        f"vec_quantize_binary(:query) AND k = :per_partition AND part = {p})"
        for p in range(COARSE_PARTITIONS)
    )
    return (
        f"SELECT chunk_id, vec_distance_cosine(embedding, :query) AS distance "
        f"FROM {_exact_table(table)} WHERE chunk_id IN ({coarse}) "
        "ORDER BY distance, chunk_id LIMIT :k"
    )


def _exact_table(vector_table: str) -> str:
    """The plain table holding the float vectors of a vec0 generation."""
    return EXACT_TABLE_PREFIX + vector_table.removeprefix(VECTOR_TABLE_PREFIX)


class KnowledgeStore:
    """The knowledge base in one SQLite file: documents, chunks, vectors, keywords."""

    def __init__(self, conn: Connection, *, keyword_reader: Connection | None = None) -> None:
        self.conn = conn
        # A second, read-only use connection lets the keyword query run on another core while
        # the vector scan runs on this one (SQLite releases the GIL while it steps). WAL mode
        # lets it read while `conn` writes; it sees committed documents only.
        self._keyword_reader = keyword_reader or conn
        migrate(conn)
        self._drop_orphan_vector_tables()

    @classmethod
    def open(cls, path: Path | str) -> KnowledgeStore:
        """Open (creating if needed) the knowledge base at `path`."""
        conn = connect(path)
        reader = None if str(path) == ":memory:" else connect(path)
        return cls(conn, keyword_reader=reader)

    @property
    def parallel_keywords(self) -> bool:
        """True when `keyword_chunks` may run on another thread beside vector search."""
        return self._keyword_reader is not self.conn

    def close(self) -> None:
        """Close the connections."""
        if self.parallel_keywords:
            self._keyword_reader.close()
        self.conn.close()

    def __enter__(self) -> KnowledgeStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- metadata and the embedding model -------------------------------------------------

    def _meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _set_meta(self, key: str, value: str) -> None:
        self.conn.execute(
            "INSERT INTO meta(key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    @property
    def embedding_model(self) -> EmbeddingModel | None:
        """The model this database's vectors come from, or None before the first ingest."""
        model_id, dim = self._meta("embedding_model"), self._meta("embedding_dim")
        if model_id is None or dim is None:
            return None
        return EmbeddingModel(model_id, int(dim))

    @property
    def vector_table(self) -> str | None:
        """Name of the live vec0 table (it changes on reindex)."""
        return self._meta("vector_table")

    def bind_embedder(self, model_id: str, dimension: int) -> None:
        """Record the embedder on first use; refuse a different one afterwards."""
        recorded = self.embedding_model
        if recorded == EmbeddingModel(model_id, dimension):
            return
        if recorded is not None:
            raise EmbedderMismatchError(
                f"This knowledge base was built with {recorded.model_id} "
                f"({recorded.dimension}-d), not {model_id} ({dimension}-d): run "
                "`ragtune kb reindex` to re-embed it with the configured model."
            )
        table = self.create_vector_table(dimension)
        with transaction(self.conn):
            self._set_meta("embedding_model", model_id)
            self._set_meta("embedding_dim", str(dimension))
            self._set_meta("vector_table", table)

    def create_vector_table(self, dimension: int) -> str:
        """Create a new, empty vector index generation and return its name (not yet live).

        A vec0 table holds 1-bit quantised vectors for a fast coarse scan; a plain table beside
        it holds the float vectors that re-score the candidates exactly (see `nearest_chunks`).
        Point reads of floats from a vec0 table cost ~0.1 ms each here, from a plain table ~1 us.
        """
        existing = [int(n.removeprefix(VECTOR_TABLE_PREFIX)) for n in self._vector_tables()]
        name = f"{VECTOR_TABLE_PREFIX}{max(existing, default=0) + 1}"
        with transaction(self.conn):
            self.conn.execute(
                f"CREATE VIRTUAL TABLE {name} USING vec0("
                f"part INTEGER PARTITION KEY, embedding bit[{int(dimension)}])"
            )
            self.conn.execute(
                f"CREATE TABLE {_exact_table(name)} "
                "(chunk_id INTEGER PRIMARY KEY, embedding BLOB NOT NULL)"
            )
        return name

    def _vector_tables(self) -> list[str]:
        rows = self.conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE ?",
            (VECTOR_TABLE_PREFIX + "%",),
        )
        return [str(name) for (name,) in rows if _VECTOR_TABLE_NAME.match(name)]

    def _drop_vector_tables(self, table: str) -> None:
        self.conn.execute(f"DROP TABLE IF EXISTS {table}")
        self.conn.execute(f"DROP TABLE IF EXISTS {_exact_table(table)}")

    def _drop_orphan_vector_tables(self) -> None:
        """Drop vector tables left by an interrupted reindex (never the live ones)."""
        live = self.vector_table
        orphans = [name for name in self._vector_tables() if name != live]
        if orphans:
            with transaction(self.conn):
                for name in orphans:
                    self._drop_vector_tables(name)

    def _insert_vectors(self, table: str, ids: Sequence[int], vectors: Vectors) -> None:
        blobs = [_blob(v) for v in vectors]
        self.conn.executemany(
            f"INSERT INTO {table}(rowid, part, embedding) VALUES (?, ?, vec_quantize_binary(?))",
            [(i, i % COARSE_PARTITIONS, b) for i, b in zip(ids, blobs, strict=True)],
        )
        self.conn.executemany(
            f"INSERT INTO {_exact_table(table)}(chunk_id, embedding) VALUES (?, ?)",
            list(zip(ids, blobs, strict=True)),
        )

    def _live_vector_table(self) -> str:
        table = self.vector_table
        if table is None:
            raise RuntimeError("bind_embedder() must run before vectors are written or read")
        return table

    # --- documents --------------------------------------------------------------------------

    def _documents(self, where: str = "", params: Sequence[object] = ()) -> list[DocumentInfo]:
        rows = self.conn.execute(
            "SELECT d.id, d.external_id, d.source, d.title, d.content_hash, d.bytes, d.added_by, "
            "d.added_at, d.updated_at, "
            "(SELECT count(*) FROM chunks c WHERE c.document_id = d.id) "
            f"FROM documents d {where} ORDER BY d.id",
            tuple(params),
        )
        return [DocumentInfo(*row) for row in rows]

    def list_documents(self) -> list[DocumentInfo]:
        """Every document, oldest first."""
        return self._documents()

    def find_document(self, external_id: str) -> DocumentInfo | None:
        """The document with this external id, if stored."""
        found = self._documents("WHERE d.external_id = ?", (external_id,))
        return found[0] if found else None

    def resolve_document(self, ref: str) -> DocumentInfo:
        """Find a document by numeric id or external id, or raise DocumentNotFoundError."""
        found = self._documents("WHERE d.id = ?", (int(ref),)) if ref.isdigit() else []
        found = found or self._documents("WHERE d.external_id = ?", (ref,))
        if not found:
            raise DocumentNotFoundError(f"No document with id {ref!r}: see `ragtune kb list`.")
        return found[0]

    def document_chunks(self, document_id: int) -> list[StoredChunk]:
        """A document's chunks in order."""
        rows = self.conn.execute(
            f"SELECT {_CHUNK_COLUMNS} FROM chunks c JOIN documents d ON d.id = c.document_id "
            "WHERE c.document_id = ? ORDER BY c.position",
            (document_id,),
        )
        return [StoredChunk(*row) for row in rows]

    def save_document(self, write: DocumentWrite) -> int:
        """Insert or replace a document and its chunks in one transaction; return its id."""
        if len(write.new) != len(write.vectors):
            raise ValueError("one vector per new chunk")
        table = self._live_vector_table()
        now = _now()
        with transaction(self.conn):
            (document_id,) = self.conn.execute(
                "INSERT INTO documents(external_id, source, title, content_hash, bytes, added_by,"
                " added_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(external_id) DO UPDATE SET source = excluded.source, "
                "title = excluded.title, content_hash = excluded.content_hash, "
                "bytes = excluded.bytes, added_by = excluded.added_by, "
                "updated_at = excluded.updated_at RETURNING id",
                (
                    write.external_id,
                    write.source,
                    write.title,
                    write.content_hash,
                    write.size,
                    write.added_by,
                    now,
                    now,
                ),
            ).fetchone()
            self._delete_chunks(table, write.remove)
            self.conn.executemany(
                "UPDATE chunks SET position = ? WHERE id = ?",
                [(position, chunk_id) for chunk_id, position in write.keep],
            )
            ids = [
                self.conn.execute(
                    "INSERT INTO chunks(document_id, position, heading, text, hash) "
                    "VALUES (?, ?, ?, ?, ?) RETURNING id",
                    (document_id, c.position, c.heading, c.text, c.hash),
                ).fetchone()[0]
                for c in write.new
            ]
            self.conn.executemany(
                "INSERT INTO chunks_fts(rowid, heading, text) VALUES (?, ?, ?)",
                [
                    (i, segment_for_index(c.heading), segment_for_index(c.text))
                    for i, c in zip(ids, write.new, strict=True)
                ],
            )
            self._insert_vectors(table, ids, write.vectors)
        return int(document_id)

    def _delete_chunks(self, table: str | None, chunk_ids: Sequence[int]) -> None:
        params = [(i,) for i in chunk_ids]
        if table is not None:
            self.conn.executemany(f"DELETE FROM {table} WHERE rowid = ?", params)
            self.conn.executemany(f"DELETE FROM {_exact_table(table)} WHERE chunk_id = ?", params)
        self.conn.executemany("DELETE FROM chunks_fts WHERE rowid = ?", params)
        self.conn.executemany("DELETE FROM chunks WHERE id = ?", params)

    def delete_document(self, document_id: int) -> None:
        """Remove a document with its chunks, vectors and keywords, in one transaction."""
        chunk_ids = [
            int(i)
            for (i,) in self.conn.execute(
                "SELECT id FROM chunks WHERE document_id = ?", (document_id,)
            )
        ]
        with transaction(self.conn):
            self._delete_chunks(self.vector_table, chunk_ids)
            deleted = self.conn.execute("DELETE FROM documents WHERE id = ?", (document_id,))
            if deleted.rowcount == 0:
                raise DocumentNotFoundError(f"No document with id {document_id}.")

    def stats(self) -> StoreStats:
        """Counts and sizes for `kb stats`."""
        documents, text_bytes = self.conn.execute(
            "SELECT count(*), coalesce(sum(bytes), 0) FROM documents"
        ).fetchone()
        (chunks,) = self.conn.execute("SELECT count(*) FROM chunks").fetchone()
        (pages,) = self.conn.execute("PRAGMA page_count").fetchone()
        (page_size,) = self.conn.execute("PRAGMA page_size").fetchone()
        return StoreStats(
            int(documents), int(chunks), int(text_bytes), pages * page_size, self.embedding_model
        )

    # --- search primitives --------------------------------------------------------------------

    def nearest_chunks(
        self, vector: np.ndarray, k: int, *, candidates: int
    ) -> list[tuple[int, float]]:
        """k nearest chunks as (chunk id, cosine distance): a Hamming scan, re-scored exactly.

        The coarse pass takes about `candidates` chunks by Hamming distance of the 1-bit
        vectors (k per partition); their float vectors then give exact cosine distances.
        """
        per_partition = -(-max(candidates, k) // COARSE_PARTITIONS)
        rows = self.conn.execute(
            _nearest_sql(self._live_vector_table()),
            {"query": _blob(vector), "per_partition": per_partition, "k": k},
        )
        return [(int(i), float(d)) for i, d in rows]

    def cosine_distances(self, ids: Sequence[int], vector: np.ndarray) -> dict[int, float]:
        """Exact cosine distance from `vector` to each of the given chunks."""
        if not ids:
            return {}
        table = self._live_vector_table()
        marks = ",".join("?" * len(ids))
        rows = self.conn.execute(
            f"SELECT chunk_id, vec_distance_cosine(embedding, ?) FROM {_exact_table(table)} "
            f"WHERE chunk_id IN ({marks})",
            (_blob(vector), *ids),
        )
        return {int(i): float(d) for i, d in rows}

    def keyword_chunks(self, match: str, k: int) -> list[tuple[int, float]]:
        """Top k chunks for an FTS5 MATCH expression as (chunk id, bm25; lower is better)."""
        rows = self._keyword_reader.execute(
            "SELECT rowid, bm25(chunks_fts, 2.0, 1.0) AS score FROM chunks_fts "
            "WHERE chunks_fts MATCH ? ORDER BY score LIMIT ?",
            (match, k),
        )
        return [(int(i), float(s)) for i, s in rows]

    def chunks_by_id(self, ids: Sequence[int]) -> dict[int, StoredChunk]:
        """Chunk rows (with document fields) for the given ids."""
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self.conn.execute(
            f"SELECT {_CHUNK_COLUMNS} FROM chunks c JOIN documents d ON d.id = c.document_id "
            f"WHERE c.id IN ({marks})",
            tuple(ids),
        )
        return {row[0]: StoredChunk(*row) for row in rows}

    # --- reindex ------------------------------------------------------------------------------

    def iter_chunks(self, batch_size: int = 256) -> Iterator[list[StoredChunk]]:
        """All chunks in id order, in batches (for reindex)."""
        last = 0
        while True:
            rows = self.conn.execute(
                f"SELECT {_CHUNK_COLUMNS} FROM chunks c JOIN documents d ON d.id = c.document_id "
                "WHERE c.id > ? ORDER BY c.id LIMIT ?",
                (last, batch_size),
            ).fetchall()
            if not rows:
                return
            batch = [StoredChunk(*row) for row in rows]
            yield batch
            last = batch[-1].id

    def fill_vector_table(self, table: str, ids: Sequence[int], vectors: Vectors) -> None:
        """Add vectors to a not-yet-live table, in one transaction."""
        with transaction(self.conn):
            self._insert_vectors(table, ids, vectors)

    def switch_vector_table(self, table: str, model: EmbeddingModel) -> None:
        """Make `table` live for `model` and drop the old one, in one transaction."""
        old = self.vector_table
        with transaction(self.conn):
            self._set_meta("vector_table", table)
            self._set_meta("embedding_model", model.model_id)
            self._set_meta("embedding_dim", str(model.dimension))
            if old is not None and old != table:
                self._drop_vector_tables(old)

    def row_ids(self) -> dict[str, set[int]]:
        """Chunk ids present in the chunk, keyword, vector and exact-vector tables."""

        def ids(sql: str) -> set[int]:
            return {int(i) for (i,) in self.conn.execute(sql)}

        table = self.vector_table
        return {
            "chunks": ids("SELECT id FROM chunks"),
            # A contentless FTS5 table keeps one docsize row per indexed row.
            "keywords": ids("SELECT id FROM chunks_fts_docsize"),
            "vectors": ids(f"SELECT rowid FROM {table}") if table else set(),
            "exact_vectors": ids(f"SELECT chunk_id FROM {_exact_table(table)}") if table else set(),
        }

    def count_rows(self) -> dict[str, int]:
        """Row counts of the chunk, keyword and vector tables (they must agree)."""
        return {name: len(ids) for name, ids in self.row_ids().items()}
