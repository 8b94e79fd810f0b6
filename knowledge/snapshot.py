"""Consistent copies of one SQLite file through the backup API, kept whole or not at all.

Nothing here knows what a knowledge base holds: callers pass the checks a copy must pass
(knowledge/store.py for a backup of the knowledge base, nothing more for the copy a migration
takes), so migrations and the store can both take copies without importing each other.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
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


class BackupError(KnowledgeError):
    """A backup cannot be written, or a file is not a usable backup."""


@dataclass(frozen=True)
class BackupInfo:
    """A checked copy: where, how big, what it holds (-1: not counted)."""

    path: Path
    bytes: int
    documents: int
    chunks: int


SQLITE_HEADER = b"SQLite format 3\x00"

Contents = Callable[[Connection, Path], tuple[int, int]]
"""Checks what an opened copy holds (raising BackupError) and returns (documents, chunks); the
path is the name to use in messages."""


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


def scratch(folder: Path, name: str) -> Path:
    """A new, private file beside the destination (same filesystem, so publishing is a link)."""
    folder.mkdir(parents=True, exist_ok=True)
    fd, path = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".partial")
    os.close(fd)
    return Path(path)


def remove(path: Path) -> None:
    """Delete a scratch database with its journal files."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


def storage_failure(error: BaseException, what: str) -> BackupError | None:
    """One sentence for a write that failed for want of space or permission (else None)."""
    if is_storage_failure(error) or isinstance(error, OSError):
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        return BackupError(f"Could not write {what}: {reason}; nothing was kept.")
    return None


def check_header(path: Path) -> None:
    """Raise BackupError unless `path` is a file that starts like an SQLite database."""
    if not path.is_file():
        raise BackupError(f"There is no backup at {path}.")
    with path.open("rb") as handle:
        if handle.read(16) != SQLITE_HEADER:
            raise BackupError(f"{path} is not an SQLite database.")


def check_file(
    path: Path, *, shown_as: Path | None = None, contents: Contents | None = None
) -> BackupInfo:
    """Check, read-only, that `path` is an intact SQLite file holding what `contents` accepts.

    `shown_as` names the file in messages when `path` is a private copy of it. Without
    `contents` only SQLite's integrity check runs and nothing is counted.
    """
    name = shown_as or path
    check_header(path)
    try:
        conn = connect_read_only(path)
        try:
            (status,) = conn.execute("PRAGMA integrity_check").fetchone()
            if status != "ok":
                raise BackupError(f"{name} fails SQLite's integrity check ({status}).")
            documents, chunks = contents(conn, name) if contents is not None else (-1, -1)
        finally:
            conn.close()
    except BackupError:
        raise
    except Exception as exc:  # the driver's DatabaseError family: a damaged file
        raise BackupError(f"{name} is damaged ({type(exc).__name__}: {exc}).") from None
    return BackupInfo(path, path.stat().st_size, documents, chunks)


def write_copy(
    source: Connection,
    destination: Path,
    *,
    prepare: Callable[[Connection], None] | None = None,
    check: Callable[[Path], BackupInfo] = check_file,
) -> BackupInfo:
    """Copy `source`'s database to the new file `destination` while others keep using it.

    The copy is one consistent snapshot (SQLite's backup API), changed by `prepare`, written
    beside the destination and linked into place only after `check` accepted it: a copy that
    exists is a good copy, a failed one leaves no file behind, and an existing file is never
    replaced.
    """
    if destination.exists():
        raise BackupError(f"{destination} exists already; choose a new file name.")
    partial: Path | None = None
    try:
        partial = scratch(destination.parent, destination.name)
        copy = connect(partial, wal=False)
        try:
            source.backup(copy)
            if prepare is not None:
                prepare(copy)
            # One self-contained file: no -wal beside it to forget when it is moved or sent.
            copy.execute("PRAGMA journal_mode = DELETE")
        finally:
            copy.close()
        info = check(partial)
        try:
            os.link(partial, destination)  # never replaces a file that appeared meanwhile
        except FileExistsError:
            raise BackupError(f"{destination} exists already; choose a new file name.") from None
    except BaseException as exc:
        if (failure := storage_failure(exc, f"the backup {destination}")) is not None:
            raise failure from None
        raise
    finally:
        if partial is not None:
            remove(partial)
    return BackupInfo(destination, destination.stat().st_size, info.documents, info.chunks)


def copy_read_only(path: Path, copy_path: Path) -> None:
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


def match_page_size(candidate: Path, target: Connection) -> None:
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
