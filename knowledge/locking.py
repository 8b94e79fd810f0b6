"""Advisory file locks: held while a process lives, released by the kernel when it dies.

A kill -9 never leaves a lock behind, so "the lock is free" proves that whoever took it is gone.
`flock` locks belong to an open file, so two connections in one process exclude each other too.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def try_exclusive(path: Path) -> Iterator[bool]:
    """Hold an exclusive lock on `path` for the block if it is free; yield whether it was."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
