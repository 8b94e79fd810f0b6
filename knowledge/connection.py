"""The one place that chooses the SQLite driver, loads sqlite-vec and sets durability pragmas."""

from __future__ import annotations

import importlib
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from types import ModuleType

import sqlite_vec

from knowledge.errors import SQLiteUnavailableError

# Type alias for annotations: every candidate driver implements the sqlite3 DB-API surface.
Connection = sqlite3.Connection

# Tried in order. Python's own sqlite3 comes last because many builds (pyenv, macOS) cannot load
# extensions. pysqlite3-binary bundles a recent SQLite with FTS5; sqlean.py does the same elsewhere.
DRIVER_CANDIDATES = ("pysqlite3.dbapi2", "sqlean", "sqlite3")
# FTS5 contentless-delete tables need 3.43.
MIN_SQLITE_VERSION = (3, 43, 0)

INSTALL_HINT = (
    "install pysqlite3-binary (Linux) or sqlean.py (macOS, Windows) into this environment, "
    "e.g. `pip install pysqlite3-binary`"
)


def _can_load_extensions(module: ModuleType) -> str | None:
    """Return None when `module` can load sqlite-vec, else the reason it cannot."""
    conn = module.connect(":memory:")
    try:
        if not hasattr(conn, "enable_load_extension"):
            return "it was built without extension loading"
        version = tuple(int(p) for p in module.sqlite_version.split("."))
        if version < MIN_SQLITE_VERSION:
            return f"its SQLite {module.sqlite_version} is older than 3.43"
        conn.enable_load_extension(True)
        sqlite_vec.load(conn)
        conn.execute("CREATE VIRTUAL TABLE temp.probe USING fts5(x)")
        return None
    except Exception as exc:  # any failure means "not this driver"; the reason is reported
        return str(exc)
    finally:
        conn.close()


@cache
def driver() -> ModuleType:
    """Return the first SQLite DB-API module that can load sqlite-vec, or raise one clear error."""
    reasons = []
    for name in DRIVER_CANDIDATES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            reasons.append(f"{name}: not installed")
            continue
        reason = _can_load_extensions(module)
        if reason is None:
            return module
        reasons.append(f"{name}: {reason}")
    raise SQLiteUnavailableError(
        "No SQLite binding here can load the sqlite-vec extension "
        f"({'; '.join(reasons)}): {INSTALL_HINT}."
    )


def connect(path: Path | str, *, busy_timeout_ms: int = 10_000) -> Connection:
    """Open `path` with sqlite-vec loaded, WAL journaling, full sync and autocommit mode."""
    module = driver()
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a transaction is exactly what
    # the code says it is. check_same_thread=False: the bot hands the connection to a worker
    # thread; callers serialise access themselves.
    conn: Connection = module.connect(str(path), isolation_level=None, check_same_thread=False)
    conn.enable_load_extension(True)
    sqlite_vec.load(conn)
    conn.enable_load_extension(False)
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    conn.execute("PRAGMA journal_mode = WAL")
    # FULL: a committed document survives power loss, not just a killed process.
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


@contextmanager
def transaction(conn: Connection) -> Iterator[Connection]:
    """Run the block in one write transaction: all of it commits, or none of it."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def versions() -> dict[str, str]:
    """Versions of the chosen driver, SQLite and sqlite-vec (for `ragtune doctor`)."""
    module = driver()
    conn = connect(":memory:")
    try:
        (vec_version,) = conn.execute("SELECT vec_version()").fetchone()
    finally:
        conn.close()
    return {
        "driver": module.__name__,
        "sqlite": str(module.sqlite_version),
        "sqlite_vec": str(vec_version),
    }
