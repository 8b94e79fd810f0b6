"""Consistent online copies of the knowledge base (SQLite's backup API), checked before trusted."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from knowledge.connection import Connection, connect
from knowledge.errors import KnowledgeError


class BackupError(KnowledgeError):
    """A backup cannot be written, or a file is not a usable backup."""


@dataclass(frozen=True)
class BackupInfo:
    """A checked copy: where, how big, what it holds."""

    path: Path
    bytes: int
    documents: int
    chunks: int


def database_path(conn: Connection) -> Path:
    """The file behind a connection's main database."""
    for _, name, file in conn.execute("PRAGMA database_list"):
        if name == "main" and file:
            return Path(file)
    raise BackupError("This database has no file (an in-memory database cannot be backed up).")


def timestamped(folder: Path, stem: str) -> Path:
    """A new file name like `ragtune-20261125-221500.db` in `folder`."""
    return folder / f"{stem}-{datetime.now(UTC):%Y%m%d-%H%M%S}.db"


def backup(source: Connection, destination: Path, *, whole: bool = True) -> BackupInfo:
    """Copy the live database to `destination` while others keep reading and writing.

    The copy is one consistent snapshot (SQLite's backup API), written beside the destination
    and renamed into place only after it passed `integrity_check` and (`whole`) the chunk,
    keyword and vector tables agree: a backup that exists is a good backup. Migrations pass
    `whole=False`: their copy has the old schema, which this version would first migrate.
    """
    if destination.exists():
        raise BackupError(f"{destination} exists already; choose a new file name.")
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(f".{destination.name}.partial")
    partial.unlink(missing_ok=True)
    copy = connect(partial)
    try:
        source.backup(copy)
    finally:
        copy.close()
    try:
        info = verify(partial) if whole else _check_integrity(partial)
        copy = connect(partial)
        # One self-contained file: no -wal beside it to forget when it is moved or sent.
        copy.execute("PRAGMA journal_mode = DELETE")
        copy.close()
    except BackupError:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(destination)
    return BackupInfo(destination, destination.stat().st_size, info.documents, info.chunks)


def _check_integrity(path: Path) -> BackupInfo:
    conn = connect(path)
    try:
        (status,) = conn.execute("PRAGMA integrity_check").fetchone()
    finally:
        conn.close()
    if status != "ok":
        raise BackupError(f"{path} fails SQLite's integrity check ({status}).")
    return BackupInfo(path, path.stat().st_size, -1, -1)


def verify(path: Path) -> BackupInfo:
    """Check that `path` is a whole knowledge base: integrity, schema, and agreeing tables."""
    from knowledge.store import KnowledgeStore

    if not path.is_file():
        raise BackupError(f"There is no backup at {path}.")
    with path.open("rb") as handle:
        if handle.read(16) != b"SQLite format 3\x00":
            raise BackupError(f"{path} is not an SQLite database.")
    try:
        with KnowledgeStore.open(path) as store:
            (status,) = store.conn.execute("PRAGMA integrity_check").fetchone()
            if status != "ok":
                raise BackupError(f"{path} fails SQLite's integrity check ({status}).")
            ids = store.row_ids()
            if not ids["chunks"] == ids["keywords"] == ids["vectors"] == ids["exact_vectors"]:
                raise BackupError(f"{path} has chunks without their keyword or vector rows.")
            stats = store.stats()
    except BackupError:
        raise
    except KnowledgeError as exc:
        raise BackupError(f"{path} is not a usable knowledge base: {exc}") from None
    except Exception as exc:  # the driver's DatabaseError family: a damaged file
        raise BackupError(f"{path} is damaged ({type(exc).__name__}: {exc}).") from None
    return BackupInfo(path, path.stat().st_size, stats.documents, stats.chunks)


def restore(backup_path: Path, destination: Path) -> BackupInfo:
    """Replace the knowledge base at `destination` with a verified backup, in one step.

    The backup API writes into the live file under SQLite's own locking, so the WAL of the old
    database is never left to be replayed over the new one. The old content is kept as a backup
    beside it first.
    """
    info = verify(backup_path)
    target = connect(destination)
    try:
        if destination.stat().st_size > 0:
            backup(target, timestamped(destination.parent / "backups", "before-restore"))
        source = connect(backup_path)
        try:
            source.backup(target)
        finally:
            source.close()
    finally:
        target.close()
    return BackupInfo(destination, destination.stat().st_size, info.documents, info.chunks)
