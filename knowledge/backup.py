"""Restoring the knowledge base from a checked backup; the backup entry points beside it.

A file offered for restore comes from elsewhere. It is read once, into a private copy; the copy
is checked against the exact schema this ragtune creates (knowledge/schema.py), never migrated
and never allowed to run its own SQL; only then does it replace the live database. The offered
file itself is opened read-only and never changes.

Taking a backup is `KnowledgeStore.backup`; the copying itself is knowledge/snapshot.py, below
the store and the migrations, so that neither imports this module.
"""

from __future__ import annotations

from pathlib import Path

from knowledge.connection import Connection, connect
from knowledge.locking import try_exclusive
from knowledge.snapshot import (
    BackupError,
    BackupInfo,
    check_header,
    copy_read_only,
    database_path,
    match_page_size,
    remove,
    scratch,
    storage_failure,
    timestamped,
    write_copy,
)
from knowledge.store import LOCK_WAIT_S, KnowledgeStore, reindex_lock_path

__all__ = [
    "BackupError",
    "BackupInfo",
    "backup",
    "database_path",
    "restore",
    "timestamped",
    "verify",
]


def backup(source: Connection, destination: Path, *, whole: bool = True) -> BackupInfo:
    """Copy the knowledge base behind `source` to the new file `destination` (see
    `KnowledgeStore.backup`); `whole=False` checks only the copy's integrity."""
    if not whole:
        return write_copy(source, destination)
    return KnowledgeStore(source, inspect_only=True).backup(destination)


def verify(path: Path, *, shown_as: Path | None = None) -> BackupInfo:
    """Check, read-only, that `path` is a whole knowledge base of ragtune's own schema (see
    `KnowledgeStore.verify_file`)."""
    return KnowledgeStore.verify_file(path, shown_as=shown_as)


def restore(backup_path: Path, destination: Path) -> BackupInfo:
    """Replace the knowledge base at `destination` with a checked backup, in one step.

    The backup API writes into the live file under SQLite's own locking, so the WAL of the old
    database is never replayed over the new one, and processes that have it open see the new
    content at their next read. The old content is kept as a backup beside it first.
    """
    check_header(backup_path)
    candidate = scratch(destination.parent, "restore")
    try:
        copy_read_only(backup_path, candidate)
        info = verify(candidate, shown_as=backup_path)
        with try_exclusive(reindex_lock_path(destination), LOCK_WAIT_S) as free:
            if not free:
                raise BackupError("A reindex of this knowledge base is running; restore after it.")
            target = connect(destination)
            try:
                match_page_size(candidate, target)
                if destination.stat().st_size > 0:
                    before = timestamped(destination.parent / "backups", "before-restore")
                    KnowledgeStore(target, inspect_only=True).backup(before)
                source = connect(candidate, wal=False)
                try:
                    source.backup(target)
                finally:
                    source.close()
            finally:
                target.close()
    except BaseException as exc:
        if (failure := storage_failure(exc, f"the knowledge base {destination}")) is not None:
            raise failure from None
        raise
    finally:
        remove(candidate)
    return BackupInfo(destination, destination.stat().st_size, info.documents, info.chunks)
