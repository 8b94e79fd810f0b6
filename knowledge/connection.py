"""The one place that chooses the SQLite driver, loads sqlite-vec and sets durability pragmas."""

from __future__ import annotations

import importlib
import sqlite3
import urllib.parse
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


def _open(target: str, *, uri: bool = False) -> Connection:
    """A driver connection with sqlite-vec loaded and the database's own SQL distrusted."""
    # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a transaction is exactly what
    # the code says it is. check_same_thread=False: the bot hands the connection to a worker
    # thread; callers serialise access themselves.
    conn: Connection = driver().connect(
        target, isolation_level=None, check_same_thread=False, uri=uri
    )
    conn.enable_load_extension(True)
    sqlite_vec.load(conn)
    conn.enable_load_extension(False)
    # Views and triggers stored in a file may not call functions with side effects: a database
    # is data, and one that came from elsewhere (a backup) must not run code in ours.
    conn.execute("PRAGMA trusted_schema = OFF")
    return conn


def connect(path: Path | str, *, busy_timeout_ms: int = 10_000, wal: bool = True) -> Connection:
    """Open `path` with sqlite-vec loaded, WAL journaling, full sync and autocommit mode.

    `wal=False` keeps the file's journal mode: for private copies (backups), whose page size
    SQLite can only change outside WAL mode.
    """
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = _open(str(path))
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    if wal:
        conn.execute("PRAGMA journal_mode = WAL")
    # FULL: a committed document survives power loss, not just a killed process.
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def database_file(conn: Connection) -> Path | None:
    """The file behind a connection's main database (None for an in-memory one)."""
    for _, name, file in conn.execute("PRAGMA database_list"):
        if name == "main" and file:
            return Path(file)
    return None


def connect_read_only(path: Path) -> Connection:
    """Open an existing file for reading only: nothing, not even the journal mode, changes."""
    quoted = urllib.parse.quote(str(path.resolve()))
    conn = _open(f"file:{quoted}?mode=ro", uri=True)
    conn.execute("PRAGMA query_only = ON")
    return conn


def connect_immutable(path: Path) -> Connection:
    """Read a file that cannot even be opened read only (a WAL file on a read-only mount: its
    `-shm` cannot be made). SQLite then trusts the main file alone, so a `-wal` beside it that
    still holds changes is refused: what it would read could be out of date."""
    wal = path.with_name(path.name + "-wal")
    try:
        pending = wal.exists() and wal.stat().st_size > 0
    except OSError:
        pending = True  # cannot tell: as good as holding changes
    if pending:
        raise driver().OperationalError(
            f"unable to open {path} read only: {wal.name} beside it may hold changes not in it"
        )
    quoted = urllib.parse.quote(str(path.resolve()))
    conn = _open(f"file:{quoted}?mode=ro&immutable=1", uri=True)
    conn.execute("PRAGMA query_only = ON")
    return conn


@contextmanager
def transaction(conn: Connection) -> Iterator[Connection]:
    """Run the block in one write transaction: all of it commits, or none of it."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        # Also when COMMIT itself failed (a full disk): a transaction left open would make
        # every later BEGIN fail, long after the disk has room again.
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def is_storage_failure(error: BaseException) -> bool:
    """True when `error` is the driver saying the disk is full or the file cannot be written."""
    if not isinstance(error, driver().DatabaseError):
        return False
    message = str(error).lower()
    return any(
        phrase in message
        for phrase in ("disk is full", "disk i/o error", "readonly database", "unable to open")
    )


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
