"""Consistent online copies of the knowledge base (SQLite's backup API), checked before trusted.

A file offered for restore comes from elsewhere. It is read once, into a private copy; the copy
is checked against the exact schema this ragtune creates (knowledge/schema.py), never migrated
and never allowed to run its own SQL; only then does it replace the live database. The offered
file itself is opened read-only and never changes.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from knowledge.connection import (
    Connection,
    connect,
    connect_read_only,
    database_file,
    is_storage_failure,
)
from knowledge.errors import KnowledgeError
from knowledge.locking import try_exclusive


class BackupError(KnowledgeError):
    """A backup cannot be written, or a file is not a usable backup."""


@dataclass(frozen=True)
class BackupInfo:
    """A checked copy: where, how big, what it holds."""

    path: Path
    bytes: int
    documents: int
    chunks: int


SQLITE_HEADER = b"SQLite format 3\x00"


def database_path(conn: Connection) -> Path:
    """The file behind a connection's main database."""
    path = database_file(conn)
    if path is None:
        raise BackupError("This database has no file (an in-memory database cannot be backed up).")
    return path


def timestamped(folder: Path, stem: str) -> Path:
    """A new file name like `ragtune-20261125-221500.db` in `folder` (suffixed if taken)."""
    base = f"{stem}-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    candidates = (folder / f"{base}{f'-{n}' if n > 1 else ''}.db" for n in range(1, 1000))
    return next(path for path in candidates if not path.exists())


def _scratch(folder: Path, name: str) -> Path:
    """A new, private file beside the destination (same filesystem, so publishing is a link)."""
    folder.mkdir(parents=True, exist_ok=True)
    fd, path = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".partial")
    os.close(fd)
    return Path(path)


def _remove(path: Path) -> None:
    """Delete a scratch database with its journal files."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


def _failure(error: BaseException, what: str) -> BackupError | None:
    """One sentence for a write that failed for want of space or permission (else None)."""
    if is_storage_failure(error) or isinstance(error, OSError):
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        return BackupError(f"Could not write {what}: {reason}; nothing was kept.")
    return None


def backup(source: Connection, destination: Path, *, whole: bool = True) -> BackupInfo:
    """Copy the live database to `destination` while others keep reading and writing.

    The copy is one consistent snapshot (SQLite's backup API), written beside the destination
    and linked into place only after it passed `integrity_check` and (`whole`) the checks of
    `verify`: a backup that exists is a good backup, and a failed one leaves no file behind.
    Migrations pass `whole=False`: their copy has the old schema, which this version would
    first migrate.
    """
    if destination.exists():
        raise BackupError(f"{destination} exists already; choose a new file name.")
    partial: Path | None = None
    try:
        partial = _scratch(destination.parent, destination.name)
        copy = connect(partial, wal=False)
        try:
            source.backup(copy)
            if whole:
                _drop_unfinished_reindex(copy)
            # One self-contained file: no -wal beside it to forget when it is moved or sent.
            copy.execute("PRAGMA journal_mode = DELETE")
        finally:
            copy.close()
        info = verify(partial) if whole else _check_integrity(partial)
        try:
            os.link(partial, destination)  # never replaces a file that appeared meanwhile
        except FileExistsError:
            raise BackupError(f"{destination} exists already; choose a new file name.") from None
    except BaseException as exc:
        if (failure := _failure(exc, f"the backup {destination}")) is not None:
            raise failure from None
        raise
    finally:
        if partial is not None:
            _remove(partial)
    return BackupInfo(destination, destination.stat().st_size, info.documents, info.chunks)


def _drop_unfinished_reindex(copy: Connection) -> None:
    """A reindex running at backup time left its half-filled table in the copy: not ours."""
    from knowledge.store import KnowledgeStore

    KnowledgeStore(copy, inspect_only=True).drop_abandoned_vector_tables()


def _check_integrity(path: Path) -> BackupInfo:
    conn = connect_read_only(path)
    try:
        (status,) = conn.execute("PRAGMA integrity_check").fetchone()
    finally:
        conn.close()
    if status != "ok":
        raise BackupError(f"{path} fails SQLite's integrity check ({status}).")
    return BackupInfo(path, path.stat().st_size, -1, -1)


def _check_header(path: Path) -> None:
    if not path.is_file():
        raise BackupError(f"There is no backup at {path}.")
    with path.open("rb") as handle:
        if handle.read(16) != SQLITE_HEADER:
            raise BackupError(f"{path} is not an SQLite database.")


def verify(path: Path, *, shown_as: Path | None = None) -> BackupInfo:
    """Check, read-only, that `path` is a whole knowledge base of ragtune's own schema.

    Integrity, the exact schema (no extra tables, indexes, views or triggers), a live vector
    table, agreeing chunk, keyword and vector rows, and every document whole. `shown_as` names
    the file in messages when `path` is a private copy of it.
    """
    from knowledge.schema import foreign_schema
    from knowledge.store import KnowledgeStore

    name = shown_as or path
    _check_header(path)
    try:
        conn = connect_read_only(path)
        try:
            (status,) = conn.execute("PRAGMA integrity_check").fetchone()
            if status != "ok":
                raise BackupError(f"{name} fails SQLite's integrity check ({status}).")
            if (reason := foreign_schema(conn)) is not None:
                raise BackupError(f"{name} is not a ragtune knowledge base: {reason}.")
            store = KnowledgeStore(conn, inspect_only=True)
            if problems := store.metadata_problems():
                raise BackupError(f"{name} is not a usable knowledge base: {problems[0]}.")
            if store.fts_options() - {"version"}:
                raise BackupError(f"{name} changes the keyword index's options.")
            if problems := store.problems():
                raise BackupError(f"{name} is not whole: {'; '.join(problems)}.")
            stats = store.stats()
        finally:
            conn.close()
    except BackupError:
        raise
    except Exception as exc:  # the driver's DatabaseError family: a damaged file
        raise BackupError(f"{name} is damaged ({type(exc).__name__}: {exc}).") from None
    return BackupInfo(path, path.stat().st_size, stats.documents, stats.chunks)


def restore(backup_path: Path, destination: Path) -> BackupInfo:
    """Replace the knowledge base at `destination` with a checked backup, in one step.

    The backup API writes into the live file under SQLite's own locking, so the WAL of the old
    database is never replayed over the new one, and processes that have it open see the new
    content at their next read. The old content is kept as a backup beside it first.
    """
    from knowledge.store import LOCK_WAIT_S, reindex_lock_path

    _check_header(backup_path)
    candidate = _scratch(destination.parent, "restore")
    try:
        _copy_read_only(backup_path, candidate)
        info = verify(candidate, shown_as=backup_path)
        with try_exclusive(reindex_lock_path(destination), LOCK_WAIT_S) as free:
            if not free:
                raise BackupError("A reindex of this knowledge base is running; restore after it.")
            target = connect(destination)
            try:
                _match_page_size(candidate, target)
                if destination.stat().st_size > 0:
                    backup(target, timestamped(destination.parent / "backups", "before-restore"))
                source = connect(candidate, wal=False)
                try:
                    source.backup(target)
                finally:
                    source.close()
            finally:
                target.close()
    except BaseException as exc:
        if (failure := _failure(exc, f"the knowledge base {destination}")) is not None:
            raise failure from None
        raise
    finally:
        _remove(candidate)
    return BackupInfo(destination, destination.stat().st_size, info.documents, info.chunks)


def _copy_read_only(path: Path, copy_path: Path) -> None:
    """Copy `path` into `copy_path` through SQLite, reading `path` without changing it."""
    try:
        source = connect_read_only(path)
    except Exception as exc:
        raise BackupError(f"{path} cannot be opened ({exc}).") from None
    try:
        copy = connect(copy_path, wal=False)
        try:
            source.backup(copy)
            copy.execute("PRAGMA journal_mode = DELETE")
        except Exception as exc:
            if is_storage_failure(exc):
                raise
            raise BackupError(f"{path} is damaged ({type(exc).__name__}: {exc}).") from None
        finally:
            copy.close()
    finally:
        source.close()


def _match_page_size(candidate: Path, target: Connection) -> None:
    """Give the copy the live file's page size: the backup API cannot change a WAL file's."""
    (wanted,) = target.execute("PRAGMA page_size").fetchone()
    copy = connect(candidate, wal=False)
    try:
        (have,) = copy.execute("PRAGMA page_size").fetchone()
        if have != wanted:
            copy.execute(f"PRAGMA page_size = {int(wanted)}")
            copy.execute("VACUUM")
    finally:
        with contextlib.suppress(Exception):
            copy.close()
