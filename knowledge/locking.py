"""Advisory file locks: held while a process lives, released by the kernel when it dies.

A kill -9 never leaves a lock behind, so "the lock is free" proves that whoever took it is gone.
`flock` locks belong to an open file, so two connections in one process exclude each other too.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def try_exclusive(path: Path, wait_s: float = 0.0) -> Iterator[bool]:
    """Hold an exclusive lock on `path` for the block if it is free (or frees up within
    `wait_s`); yield whether it was taken."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + wait_s
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    yield False
                    return
                time.sleep(0.05)
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
