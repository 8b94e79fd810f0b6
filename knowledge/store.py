"""KnowledgeStore: owns the connection; every SQL statement of the knowledge base lives here."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import numpy as np

from knowledge.chunking import Chunk, embedding_input
from knowledge.connection import Connection, connect, database_file, transaction
from knowledge.embeddings import Vectors
from knowledge.errors import (
    CollectionError,
    ConcurrentWriteError,
    DocumentNotFoundError,
    EmbedderMismatchError,
    ReindexRunningError,
)
from knowledge.keywords import segment_for_index
from knowledge.locking import try_exclusive
from knowledge.migrations import GLOBAL_COLLECTION, migrate
from knowledge.schema import foreign_schema
from knowledge.snapshot import (
    BackupError,
    BackupInfo,
    check_file,
    database_path,
    timestamped,
    write_copy,
)
from knowledge.vector_tables import (
    VECTOR_TABLE_PREFIX,
    create_vector_generation,
    exact_table,
    is_vector_table,
)

# The coarse scan runs once per partition with a small k. sqlite-vec 0.1.9's k-NN costs grow
# with k times the rows scanned (k=400 over 100k rows: ~50 ms here), so 16 partitions x k=25
# give 400 candidates for the cost of one k=25 scan (~5 ms). Changing it needs a reindex.
COARSE_PARTITIONS = 16
# meta key: the vector table a running reindex is filling (deletes reach it too).
REINDEX_TABLE = "reindex_table"
LOCK_WAIT_S = 5.0
"""How long a reindex or a restore waits for openers that check the reindex lock."""
# BM25 over (heading, text); FTS5 returns it negated, lower is better. The heading weight did not
# matter on either dev set (0.5 to 2 within 0.002 R@5).
_BM25 = "bm25(chunks_fts, 2.0, 1.0)"
COLLECTION_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
"""Collection names: short, lower case, safe in a command line and a chat command."""


@dataclass(frozen=True)
class Collection:
    """A named set of documents; a chat searches the collection it is bound to."""

    id: int
    name: str
    created_at: str
    documents: int


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
    collection_id: int = GLOBAL_COLLECTION


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
    collection_id: int = GLOBAL_COLLECTION

    @property
    def embed_text(self) -> str:
        """What its vector was made from (see `knowledge.chunking.embedding_input`)."""
        return embedding_input(self.heading, self.text)


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
    model: EmbeddingModel  # the embedder `vectors` come from
    planned_on: frozenset[tuple[int, str]] = field(default_factory=frozenset)
    """The document's (chunk id, chunk hash) pairs when this write was planned (empty: it did
    not exist). Hashes too: a deleted chunk's id can be given to a new chunk."""
    collection: int = GLOBAL_COLLECTION


_CHUNK_COLUMNS = """
    c.id, c.document_id, c.position, c.heading, c.text, c.hash,
    d.external_id, d.title, d.source, d.collection_id
"""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _blob(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype=np.float32).tobytes()


def partition(collection: int, chunk_id: int) -> int:
    """The vector index partition of a chunk: its collection's block of COARSE_PARTITIONS.

    Searching a collection scans only its own partitions, so the filter is part of the k-NN
    query itself and a small collection is never crowded out by a big one.
    """
    return collection * COARSE_PARTITIONS + chunk_id % COARSE_PARTITIONS


@cache
def _nearest_sql(table: str, collections: int) -> str:
    """The two-stage k-NN query for one vector table over `collections` collections (built once
    per shape: it runs on every search); the collection ids are the parameters :c0, :c1, ..."""
    coarse = " UNION ALL ".join(
        f"SELECT rowid FROM (SELECT rowid FROM {table} WHERE embedding MATCH "
        f"vec_quantize_binary(:query) AND k = :per_partition "
        f"AND part = :c{n} * {COARSE_PARTITIONS} + {p})"
        for n in range(collections)
        for p in range(COARSE_PARTITIONS)
    )
    return (
        f"SELECT chunk_id, vec_distance_cosine(embedding, :query) AS distance "
        f"FROM {exact_table(table)} WHERE chunk_id IN ({coarse}) "
        "ORDER BY distance, chunk_id LIMIT :k"
    )


def reindex_lock_path(database: Path) -> Path:
    """The lock file a running reindex of `database` holds (one per file, however it is named)."""
    real = database.resolve()
    return real.with_name(f"{real.name}.reindex-lock")


class KnowledgeStore:
    """The knowledge base in one SQLite file: documents, chunks, vectors, keywords."""

    def __init__(
        self,
        conn: Connection,
        *,
        keyword_reader: Connection | None = None,
        inspect_only: bool = False,
    ) -> None:
        self.conn = conn
        # A second, read-only use connection lets the keyword query run on another core while
        # the vector scan runs on this one (SQLite releases the GIL while it steps). WAL mode
        # lets it read while `conn` writes; it sees committed documents only.
        self._keyword_reader = keyword_reader or conn
        if inspect_only:  # a file being checked (a backup): it must not change
            return
        migrate(conn)
        with self._reindex_lock() as free:
            if free:  # no reindex is running: what one left behind is abandoned
                self.drop_abandoned_vector_tables()

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
        if self.embedding_model == EmbeddingModel(model_id, dimension):
            return
        # Checked again inside the write: two processes may bind a new file at the same time.
        with transaction(self.conn):
            if self.embedding_model is None:
                table = self._next_vector_table()
                create_vector_generation(self.conn, table, dimension)
                self._set_meta("embedding_model", model_id)
                self._set_meta("embedding_dim", str(dimension))
                self._set_meta("vector_table", table)
            self._check_model(EmbeddingModel(model_id, dimension))

    def _check_model(self, model: EmbeddingModel) -> None:
        """Raise EmbedderMismatchError unless the live vectors come from `model`."""
        recorded = self.embedding_model
        if recorded != model:
            raise EmbedderMismatchError(
                f"This knowledge base was built with "
                f"{recorded.model_id if recorded else 'no embedder'} "
                f"({recorded.dimension if recorded else 0}-d), not {model.model_id} "
                f"({model.dimension}-d): run `ragtune kb reindex` to re-embed it with the "
                "configured model."
            )

    def _next_vector_table(self) -> str:
        existing = [int(n.removeprefix(VECTOR_TABLE_PREFIX)) for n in self.vector_tables()]
        return f"{VECTOR_TABLE_PREFIX}{max(existing, default=0) + 1}"

    def vector_tables(self) -> list[str]:
        """Every generation of vector tables in the file (the live one and any unfinished)."""
        rows = self.conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE ?",
            (VECTOR_TABLE_PREFIX + "%",),
        )
        return [str(name) for (name,) in rows if is_vector_table(name)]

    def _drop_vector_tables(self, table: str) -> None:
        self.conn.execute(f"DROP TABLE IF EXISTS {table}")
        self.conn.execute(f"DROP TABLE IF EXISTS {exact_table(table)}")

    def _reindex_lock(self, wait_s: float = 0.0) -> AbstractContextManager[bool]:
        """Held by a running reindex; free means none is running (a killed one releases it).

        Every opener takes it for a moment to see whether it is free, so whoever means to hold
        it (a reindex) waits a little for those moments to pass.
        """
        path = database_file(self.conn)
        if path is None:  # in memory: one connection, nobody else to race
            return nullcontext(True)
        return try_exclusive(reindex_lock_path(path), wait_s)

    def drop_abandoned_vector_tables(self) -> None:
        """Drop the vector tables an interrupted reindex left.

        Only while holding the reindex lock, or on a copy nobody else uses (a fresh backup).
        """
        live = self.vector_table
        leftovers = [name for name in self.vector_tables() if name != live]
        if leftovers or self._meta(REINDEX_TABLE) is not None:
            with transaction(self.conn):
                for name in leftovers:
                    self._drop_vector_tables(name)
                self.conn.execute("DELETE FROM meta WHERE key = ?", (REINDEX_TABLE,))

    def _insert_vectors(
        self, table: str, ids: Sequence[int], collections: Sequence[int], vectors: Vectors
    ) -> None:
        blobs = [_blob(v) for v in vectors]
        self.conn.executemany(
            f"INSERT INTO {table}(rowid, part, embedding) VALUES (?, ?, vec_quantize_binary(?))",
            [(i, partition(c, i), b) for i, c, b in zip(ids, collections, blobs, strict=True)],
        )
        self.conn.executemany(
            f"INSERT INTO {exact_table(table)}(chunk_id, embedding) VALUES (?, ?)",
            list(zip(ids, blobs, strict=True)),
        )

    def _live_vector_table(self) -> str:
        table = self.vector_table
        if table is None:
            raise RuntimeError("bind_embedder() must run before vectors are written or read")
        return table

    # --- collections ------------------------------------------------------------------------

    def collections(self) -> list[Collection]:
        """Every collection with its document count, `global` first."""
        rows = self.conn.execute(
            "SELECT k.id, k.name, k.created_at, "
            "(SELECT count(*) FROM documents d WHERE d.collection_id = k.id) "
            "FROM collections k ORDER BY k.id"
        )
        return [Collection(*row) for row in rows]

    def find_collection(self, name: str) -> Collection | None:
        """The collection called `name`, if there is one."""
        return next((c for c in self.collections() if c.name == name), None)

    def collection(self, name: str) -> Collection:
        """The collection called `name`, or CollectionError naming the ones there are."""
        found = self.find_collection(name)
        if found is None:
            names = ", ".join(c.name for c in self.collections())
            raise CollectionError(f"There is no collection {name!r} (there are: {names}).")
        return found

    def collection_by_id(self, collection: int) -> Collection:
        """The collection with this id (CollectionError if there is none)."""
        found = next((c for c in self.collections() if c.id == collection), None)
        if found is None:
            raise CollectionError(f"There is no collection number {collection}.")
        return found

    def collection_name(self, collection: int) -> str:
        """The name of collection id `collection` (its number, if it no longer exists)."""
        row = self.conn.execute(
            "SELECT name FROM collections WHERE id = ?", (collection,)
        ).fetchone()
        return str(row[0]) if row else str(collection)

    def create_collection(self, name: str) -> Collection:
        """Create an empty collection, or CollectionError if the name is taken or not valid."""
        if not COLLECTION_NAME.fullmatch(name):
            raise CollectionError(
                f"{name[:40]!r} is not a collection name: use 1 to 32 lower-case letters, "
                "digits, - or _, starting with a letter or digit."
            )
        with transaction(self.conn):
            if self.find_collection(name) is not None:
                raise CollectionError(f"There is already a collection {name!r}.")
            self.conn.execute(
                "INSERT INTO collections(id, name, created_at) VALUES "
                "((SELECT max(id) + 1 FROM collections), ?, ?)",
                (name, _now()),
            )
        return self.collection(name)

    # --- documents --------------------------------------------------------------------------

    def _documents(self, where: str = "", params: Sequence[object] = ()) -> list[DocumentInfo]:
        rows = self.conn.execute(
            "SELECT d.id, d.external_id, d.source, d.title, d.content_hash, d.bytes, d.added_by, "
            "d.added_at, d.updated_at, "
            "(SELECT count(*) FROM chunks c WHERE c.document_id = d.id), d.collection_id "
            f"FROM documents d {where} ORDER BY d.id",
            tuple(params),
        )
        return [DocumentInfo(*row) for row in rows]

    def list_documents(self, collection: int | None = GLOBAL_COLLECTION) -> list[DocumentInfo]:
        """The documents of a collection (None: of every collection), oldest first."""
        if collection is None:
            return self._documents()
        return self._documents("WHERE d.collection_id = ?", (collection,))

    def find_document(
        self, external_id: str, collection: int = GLOBAL_COLLECTION
    ) -> DocumentInfo | None:
        """The document with this external id in `collection`, if stored."""
        found = self._documents(
            "WHERE d.collection_id = ? AND d.external_id = ?", (collection, external_id)
        )
        return found[0] if found else None

    def resolve_document(self, ref: str, collection: int = GLOBAL_COLLECTION) -> DocumentInfo:
        """Find a document of `collection` by numeric id or external id, or raise
        DocumentNotFoundError (a document of another collection is not found either)."""
        number = ref.isascii() and ref.isdigit() and len(ref) < 19  # not "²" (isdigit says yes)
        where = "WHERE d.collection_id = ? AND "
        found = self._documents(where + "d.id = ?", (collection, int(ref))) if number else []
        storable = ref.encode("utf-8", "surrogatepass").decode("utf-8", "ignore") == ref
        if not found and storable:
            found = self._documents(where + "d.external_id = ?", (collection, ref))
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
        """Insert or replace a document and its chunks in one transaction; return its id.

        The write applies only to the state it was planned on: if another writer changed the
        document since (or the embedder was switched), it raises ConcurrentWriteError (or
        EmbedderMismatchError) and writes nothing, so two writers never both add its chunks.
        """
        if len(write.new) != len(write.vectors):
            raise ValueError("one vector per new chunk")
        now = _now()
        with transaction(self.conn):
            self._check_model(write.model)
            row = self.conn.execute(
                "SELECT id, content_hash FROM documents WHERE collection_id = ? "
                "AND external_id = ?",
                (write.collection, write.external_id),
            ).fetchone()
            current = self._chunk_versions(int(row[0])) if row is not None else frozenset()
            if current != write.planned_on or (row is not None and row[1] == write.content_hash):
                raise ConcurrentWriteError(
                    f"{write.external_id} was changed by another writer while this one was "
                    "being prepared."
                )
            (document_id,) = self.conn.execute(
                "INSERT INTO documents(collection_id, external_id, source, title, content_hash,"
                " bytes, added_by, added_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(collection_id, external_id) DO UPDATE SET source = excluded.source, "
                "title = excluded.title, content_hash = excluded.content_hash, "
                "bytes = excluded.bytes, added_by = excluded.added_by, "
                "updated_at = excluded.updated_at RETURNING id",
                (
                    write.collection,
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
            self._delete_chunks(write.remove)
            # Two steps, because (document, position) is unique: kept chunks that swap places
            # would collide half-way through one pass.
            for sign, offset in ((-1, -1), (1, 0)):
                self.conn.executemany(
                    "UPDATE chunks SET position = ? WHERE id = ?",
                    [(sign * position + offset, chunk_id) for chunk_id, position in write.keep],
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
            self._insert_vectors(
                self._live_vector_table(), ids, [write.collection] * len(ids), write.vectors
            )
        return int(document_id)

    def _chunk_versions(self, document_id: int) -> frozenset[tuple[int, str]]:
        rows = self.conn.execute(
            "SELECT id, hash FROM chunks WHERE document_id = ?", (document_id,)
        )
        return frozenset((int(i), str(h)) for i, h in rows)

    def _chunk_ids(self, document_id: int) -> frozenset[int]:
        rows = self.conn.execute("SELECT id FROM chunks WHERE document_id = ?", (document_id,))
        return frozenset(int(i) for (i,) in rows)

    def _delete_chunks(self, chunk_ids: Sequence[int] | frozenset[int]) -> None:
        """Delete chunks with their keywords and vectors (in the live table and in the one a
        running reindex fills, so that a chunk deleted now has no vector after its switch)."""
        params = [(i,) for i in chunk_ids]
        tables = [self.vector_table]
        if (building := self._meta(REINDEX_TABLE)) not in (None, self.vector_table):
            tables.append(building)
        for table in tables:
            if table is None:
                continue
            if not is_vector_table(table):  # names go into SQL: never trust one
                raise ValueError(f"not a vector table name: {table!r}")
            self.conn.executemany(f"DELETE FROM {table} WHERE rowid = ?", params)
            self.conn.executemany(f"DELETE FROM {exact_table(table)} WHERE chunk_id = ?", params)
        self.conn.executemany("DELETE FROM chunks_fts WHERE rowid = ?", params)
        self.conn.executemany("DELETE FROM chunks WHERE id = ?", params)

    def delete_document(self, document_id: int) -> None:
        """Remove a document with its chunks, vectors and keywords, in one transaction."""
        with transaction(self.conn):
            self._delete_chunks(self._chunk_ids(document_id))
            deleted = self.conn.execute("DELETE FROM documents WHERE id = ?", (document_id,))
            if deleted.rowcount == 0:
                raise DocumentNotFoundError(f"No document with id {document_id}.")

    def stats(self, collection: int | None = None) -> StoreStats:
        """Counts and sizes for `kb stats`: of one collection, or (None) of all; the file size is
        always the whole file's."""
        where, params = (
            ("", ()) if collection is None else ("WHERE collection_id = ?", (collection,))
        )
        documents, text_bytes = self.conn.execute(
            f"SELECT count(*), coalesce(sum(bytes), 0) FROM documents {where}", params
        ).fetchone()
        (chunks,) = self.conn.execute(
            f"SELECT count(*) FROM chunks WHERE document_id IN (SELECT id FROM documents {where})",
            params,
        ).fetchone()
        (pages,) = self.conn.execute("PRAGMA page_count").fetchone()
        (page_size,) = self.conn.execute("PRAGMA page_size").fetchone()
        return StoreStats(
            int(documents), int(chunks), int(text_bytes), pages * page_size, self.embedding_model
        )

    # --- search primitives --------------------------------------------------------------------

    def nearest_chunks(
        self,
        vector: np.ndarray,
        k: int,
        *,
        candidates: int,
        collections: Sequence[int] = (GLOBAL_COLLECTION,),
    ) -> list[tuple[int, float]]:
        """k nearest chunks of `collections` as (chunk id, cosine distance): a Hamming scan of
        their partitions, re-scored exactly.

        The coarse pass takes about `candidates` chunks per collection by Hamming distance of
        the 1-bit vectors (k per partition); their float vectors then give exact distances.
        """
        if not collections:
            return []
        per_partition = -(-max(candidates, k) // COARSE_PARTITIONS)
        wanted = sorted(set(collections))
        rows = self.conn.execute(
            _nearest_sql(self._live_vector_table(), len(wanted)),
            {
                "query": _blob(vector),
                "per_partition": per_partition,
                "k": k,
                **{f"c{n}": c for n, c in enumerate(wanted)},
            },
        )
        return [(int(i), float(d)) for i, d in rows]

    def cosine_distances(self, ids: Sequence[int], vector: np.ndarray) -> dict[int, float]:
        """Exact cosine distance from `vector` to each of the given chunks."""
        if not ids:
            return {}
        table = self._live_vector_table()
        marks = ",".join("?" * len(ids))
        rows = self.conn.execute(
            f"SELECT chunk_id, vec_distance_cosine(embedding, ?) FROM {exact_table(table)} "
            f"WHERE chunk_id IN ({marks})",
            (_blob(vector), *ids),
        )
        return {int(i): float(d) for i, d in rows}

    def keyword_chunks(
        self, match: str, k: int, collections: Sequence[int] = (GLOBAL_COLLECTION,)
    ) -> list[tuple[int, float]]:
        """Top k chunks of `collections` for an FTS5 MATCH expression as (chunk id, bm25;
        lower is better). The collection filter is inside the query, before the top k."""
        wanted = sorted(set(collections))
        if not wanted:
            return []
        marks = ",".join("?" * len(wanted))
        rows = self._keyword_reader.execute(
            # CROSS JOIN keeps the full-text match the outer loop: the planner would otherwise
            # walk the collection's chunks and run the match once for each of them.
            f"SELECT chunks_fts.rowid, {_BM25} AS score FROM chunks_fts "
            "CROSS JOIN chunks c ON c.id = chunks_fts.rowid "
            "CROSS JOIN documents d ON d.id = c.document_id "
            f"WHERE chunks_fts MATCH ? AND d.collection_id IN ({marks}) ORDER BY score LIMIT ?",
            (match, *wanted, k),
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

    def iter_chunks(
        self, batch_size: int = 256, collection: int | None = None
    ) -> Iterator[list[StoredChunk]]:
        """All chunks (of one collection, or of all with None) in id order, in batches."""
        last = 0
        where = "" if collection is None else "AND d.collection_id = ? "
        while True:
            rows = self.conn.execute(
                f"SELECT {_CHUNK_COLUMNS} FROM chunks c JOIN documents d ON d.id = c.document_id "
                f"WHERE c.id > ? {where}ORDER BY c.id LIMIT ?",
                (last, *(() if collection is None else (collection,)), batch_size),
            ).fetchall()
            if not rows:
                return
            batch = [StoredChunk(*row) for row in rows]
            yield batch
            last = batch[-1].id

    @contextmanager
    def reindexing(self) -> Iterator[None]:
        """Hold the reindex lock for the block, or raise ReindexRunningError if it is taken."""
        with self._reindex_lock(wait_s=LOCK_WAIT_S) as free:
            if not free:
                raise ReindexRunningError(
                    "Another reindex of this knowledge base is running; wait for it to finish."
                )
            yield

    def begin_reindex(self, dimension: int) -> str:
        """Create the vector table a reindex fills (not yet live); call inside `reindexing`."""
        self.drop_abandoned_vector_tables()  # ours to clean: we hold the reindex lock
        with transaction(self.conn):
            name = self._next_vector_table()
            create_vector_generation(self.conn, name, dimension)
            self._set_meta(REINDEX_TABLE, name)
        return name

    def fill_vector_table(
        self, table: str, chunks: Sequence[StoredChunk], vectors: Vectors
    ) -> None:
        """Add vectors to a not-yet-live table, in one transaction, for the chunks that still
        hold the text they were embedded from (a writer may have replaced one meanwhile)."""
        with transaction(self.conn):
            fresh, collections = self._still_current(chunks)
            self._insert_vectors(table, [chunks[n].id for n in fresh], collections, vectors[fresh])

    def _still_current(self, chunks: Sequence[StoredChunk]) -> tuple[list[int], list[int]]:
        """Positions of the chunks that still hold the text they were read with (same hash,
        same document), and the collection each is in now; call inside the write."""
        current = self.chunks_by_id([c.id for c in chunks])
        fresh = [
            n for n, c in enumerate(chunks)
            if c.id in current and current[c.id].hash == c.hash
            and current[c.id].document_id == c.document_id
        ]  # fmt: skip
        return fresh, [current[chunks[n].id].collection_id for n in fresh]

    def replace_vectors(
        self, chunks: Sequence[StoredChunk], vectors: Vectors, model: EmbeddingModel
    ) -> int:
        """Swap the live vectors of chunks that still hold the text they were embedded from, in
        one transaction; return how many (a writer may have replaced or deleted one meanwhile).

        For re-embedding one collection with the file's own model, checked inside the write (a
        whole-file reindex to another model may have switched since the caller looked): every
        vector stays from that model, so a kill between two batches leaves a search that works.
        """
        with transaction(self.conn):
            self._check_model(model)
            table = self._live_vector_table()
            fresh, collections = self._still_current(chunks)
            ids = [chunks[n].id for n in fresh]
            params = [(i,) for i in ids]
            self.conn.executemany(f"DELETE FROM {table} WHERE rowid = ?", params)
            self.conn.executemany(f"DELETE FROM {exact_table(table)} WHERE chunk_id = ?", params)
            self._insert_vectors(table, ids, collections, vectors[fresh])
        return len(ids)

    def chunks_without_vectors(self, table: str, limit: int) -> list[StoredChunk]:
        """Chunks that `table` has no vector for yet (added while a reindex ran)."""
        rows = self.conn.execute(
            f"SELECT {_CHUNK_COLUMNS} FROM chunks c JOIN documents d ON d.id = c.document_id "
            f"WHERE c.id NOT IN (SELECT chunk_id FROM {exact_table(table)}) ORDER BY c.id LIMIT ?",
            (limit,),
        ).fetchall()
        return [StoredChunk(*row) for row in rows]

    def switch_vector_table(self, table: str, model: EmbeddingModel) -> bool:
        """Make `table` live for `model` and drop the old one, in one transaction; False (and
        nothing changed) when a writer added chunks it has no vectors for: embed those first.

        Embedding is never done here: it would hold the write lock for seconds.
        """
        old = self.vector_table
        with transaction(self.conn):
            if self.chunks_without_vectors(table, limit=1):
                return False
            self._set_meta("vector_table", table)
            self._set_meta("embedding_model", model.model_id)
            self._set_meta("embedding_dim", str(model.dimension))
            self.conn.execute("DELETE FROM meta WHERE key = ?", (REINDEX_TABLE,))
            if old is not None and old != table:
                self._drop_vector_tables(old)
        return True

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
            "exact_vectors": ids(f"SELECT chunk_id FROM {exact_table(table)}") if table else set(),
        }

    def count_rows(self) -> dict[str, int]:
        """Row counts of the chunk, keyword and vector tables (they must agree)."""
        return {name: len(ids) for name, ids in self.row_ids().items()}

    def metadata_problems(self) -> list[str]:
        """What is wrong with the metadata of a file offered for restore (empty: nothing).

        Its values name tables and sizes that go into SQL and into every vector written later:
        only ragtune's own keys, a live table the file has, and its dimension, are accepted.
        """
        keys = {str(k) for (k,) in self.conn.execute("SELECT key FROM meta")}
        if unknown := keys - {"embedding_model", "embedding_dim", "vector_table"}:
            return [f"unknown metadata ({', '.join(sorted(unknown))})"]
        live = self.vector_table
        if live is None:
            return [] if self.stats().chunks == 0 else ["chunks but no vector table"]
        if live not in self.vector_tables():
            return ["it names a vector table it does not have"]
        (sql,) = self.conn.execute(
            "SELECT sql FROM sqlite_master WHERE name = ?", (live,)
        ).fetchone()
        dimension = self._meta("embedding_dim") or ""
        if not dimension.isdigit() or f"bit[{int(dimension)}]" not in str(sql):
            return [f"its embedding dimension {dimension!r} is not its vector table's"]
        (wrong,) = self.conn.execute(
            f"SELECT count(*) FROM {exact_table(live)} WHERE length(embedding) != ?",
            (4 * int(dimension),),
        ).fetchone()
        return [f"{wrong} vectors of the wrong size"] if wrong else []

    def fts_options(self) -> set[str]:
        """Options stored in the keyword index's config (only its format version, normally)."""
        return {str(k) for (k,) in self.conn.execute("SELECT k FROM chunks_fts_config")}

    def problems(self) -> list[str]:
        """What breaks the knowledge base's invariants, one sentence each (empty: none).

        Chunk, keyword and vector rows agree; every chunk belongs to a document; every document
        has chunks at positions 0..n-1, each exactly once.
        """
        found = []
        ids = self.row_ids()
        if not ids["chunks"] == ids["keywords"] == ids["vectors"] == ids["exact_vectors"]:
            counts = ", ".join(f"{len(v)} {k.replace('_', ' ')}" for k, v in ids.items())
            found.append(f"chunks without their keyword or vector rows ({counts})")
        columns = {str(row[1]) for row in self.conn.execute("PRAGMA table_info(documents)")}
        table = self.vector_table
        # A file from before collections (a backup being restored) has every chunk in global.
        if "collection_id" in columns and table is not None and is_vector_table(table):
            # A vector outside its collection's partitions would be found by another collection.
            (misplaced,) = self.conn.execute(
                f"SELECT count(*) FROM {table} v JOIN chunks c ON c.id = v.rowid "
                "JOIN documents d ON d.id = c.document_id "
                f"WHERE v.part != d.collection_id * {COARSE_PARTITIONS} "
                f"+ v.rowid % {COARSE_PARTITIONS}"
            ).fetchone()
            if misplaced:
                found.append(f"{misplaced} vectors outside their collection's partitions")
        (orphans,) = self.conn.execute(
            "SELECT count(*) FROM chunks WHERE document_id NOT IN (SELECT id FROM documents)"
        ).fetchone()
        if orphans:
            found.append(f"{orphans} chunks of no document")
        broken = self.conn.execute(
            "SELECT d.external_id FROM documents d LEFT JOIN chunks c ON c.document_id = d.id "
            "GROUP BY d.id HAVING count(c.id) = 0 OR count(DISTINCT c.position) != count(c.id) "
            "OR min(c.position) != 0 OR max(c.position) != count(c.id) - 1"
        ).fetchall()
        if broken:
            names = ", ".join(str(name) for (name,) in broken[:5])
            found.append(f"{len(broken)} documents not whole (gaps or repeats: {names})")
        return found

    # --- backups ------------------------------------------------------------------------------

    def backup(self, destination: Path | None = None) -> BackupInfo:
        """A checked copy of this knowledge base, taken while others keep reading and writing.

        `destination` must be a new file (default: a timestamped one in `backups/` beside the
        database). The copy is one consistent snapshot without the table of a reindex running
        meanwhile, and it is linked into place only after it passed `verify_file`: a backup
        that exists is a good backup, and a failed one leaves no file behind.
        """
        if destination is None:
            path = database_path(self.conn)
            destination = timestamped(path.parent / "backups", path.stem)
        return write_copy(
            self.conn, destination, prepare=_drop_unfinished_reindex, check=self.verify_file
        )

    @classmethod
    def verify_file(cls, path: Path, *, shown_as: Path | None = None) -> BackupInfo:
        """Check, read-only, that `path` is a whole knowledge base of ragtune's own schema.

        Integrity, the exact schema (no extra tables, indexes, views or triggers), a live vector
        table, agreeing chunk, keyword and vector rows, and every document whole. `shown_as`
        names the file in messages when `path` is a private copy of it.
        """

        def contents(conn: Connection, name: Path) -> tuple[int, int]:
            return cls(conn, inspect_only=True).whole_contents(name)

        return check_file(path, shown_as=shown_as, contents=contents)

    def whole_contents(self, name: Path) -> tuple[int, int]:
        """(documents, chunks) of a file opened `inspect_only`, or BackupError naming `name`
        when it is not exactly ragtune's schema with whole, agreeing rows."""
        if (reason := foreign_schema(self.conn)) is not None:
            raise BackupError(f"{name} is not a ragtune knowledge base: {reason}.")
        if problems := self.metadata_problems():
            raise BackupError(f"{name} is not a usable knowledge base: {problems[0]}.")
        if self.fts_options() - {"version"}:
            raise BackupError(f"{name} changes the keyword index's options.")
        if problems := self.problems():
            raise BackupError(f"{name} is not whole: {'; '.join(problems)}.")
        stats = self.stats()
        return stats.documents, stats.chunks


def _drop_unfinished_reindex(copy: Connection) -> None:
    """A reindex running at backup time left its half-filled table in the copy: not ours."""
    KnowledgeStore(copy, inspect_only=True).drop_abandoned_vector_tables()
