"""Run the ragtune CLI as if Python's SQLite bindings were built without extension loading.

The fault is injected in this child process only: the optional bundled drivers are hidden and
the standard library's connections lose `enable_load_extension`, as on such builds.
"""

from __future__ import annotations

import sqlite3
import sys
from typing import Any

_connect = sqlite3.connect


class _WithoutExtensions:
    """A connection of a Python built without `--enable-loadable-sqlite-extensions`."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __getattr__(self, name: str) -> Any:
        if name == "enable_load_extension":
            raise AttributeError(name)
        return getattr(self._conn, name)


def _connect_without_extensions(*args: Any, **kwargs: Any) -> _WithoutExtensions:
    return _WithoutExtensions(_connect(*args, **kwargs))


if __name__ == "__main__":
    for hidden in ("pysqlite3", "pysqlite3.dbapi2", "sqlean"):
        sys.modules[hidden] = None  # type: ignore[assignment]  # import now raises ImportError
    sqlite3.connect = _connect_without_extensions  # type: ignore[assignment]
    from bot.cli import main

    sys.argv = ["ragtune", *sys.argv[1:]]
    main()
