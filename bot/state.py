"""The bot's own SQLite state beside the knowledge base: turns, the audit log, questions asked.

State is best effort: answering needs only the knowledge base. When the state file cannot be
written or read for want of space or permission (a full disk), each method logs it, returns
what it would with no state (no memory, no counted questions), and `alert_due` says so once per
interval, so the bot goes on answering and an admin hears about it without a flood.

Facts that decide who may see what (which collection a chat is bound to) are the exception:
`read_fact` and `write_fact` raise StateUnavailableError instead, so that a failure can never be
read as "not bound" (and so `global`). A file that cannot be opened for writing is opened read
only, so its bindings still hold; when it cannot be read at all, `facts_known` is False.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import ParamSpec, TypeVar, cast

from bot.state_migrations import migrate_state
from knowledge.connection import (
    Connection,
    connect,
    connect_immutable,
    connect_read_only,
    database_file,
    is_storage_failure,
    transaction,
)
from knowledge.errors import RagtuneError

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")
ALERT_INTERVAL_S = 600.0
"""At most one admin alert per this many seconds while the state cannot be written."""


def _may_exist(file: Path) -> bool:
    """True unless `file` is known not to exist (a folder above it that cannot be searched
    leaves it unknown: it may hold facts)."""
    try:
        return file.exists()
    except OSError:
        return True


class StateUnavailableError(RagtuneError):
    """A fact the bot must not guess (a chat's binding) cannot be read or written now."""


@dataclass(frozen=True)
class Turn:
    """One remembered message of a conversation."""

    role: str
    content: str


def best_effort(default: Callable[[], object]) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """A StateStore method that, on a full disk or an unwritable file, returns `default()`."""

    def wrap(method: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(method)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return method(*args, **kwargs)
            except Exception as exc:
                if not is_storage_failure(exc):
                    raise
                store = args[0]
                assert isinstance(store, StateStore)
                store.failures.note(method.__name__, exc)
                return cast(R, default())

        return run

    return wrap


class WriteFailures:
    """Remembers that the state could not be used, and says so at most once per interval."""

    def __init__(
        self,
        where: str,
        interval_s: float = ALERT_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.where = where
        self.interval_s = interval_s
        self.clock = clock
        self.count = 0
        self.last_error: str | None = None
        self._alerted_at: float | None = None
        self._lock = threading.Lock()

    def note(self, action: str, error: BaseException) -> None:
        """Record (and log) a state operation that failed."""
        log.warning("state: %s failed (%s); answering goes on without it", action, error)
        with self._lock:
            self.count += 1
            self.last_error = str(error)

    def alert_due(self) -> str | None:
        """A sentence for the admins if something failed and they were not told recently."""
        with self._lock:
            recently = self._alerted_at is not None and (
                self.clock() - self._alerted_at < self.interval_s
            )
            if self.last_error is None or recently:
                return None
            self._alerted_at = self.clock()
            error, count = self.last_error, self.count
            self.last_error, self.count = None, 0
        return (
            f"The bot's state database ({self.where}) cannot be written: {error} "
            f"({count} operations failed). The bot still answers, but it does not remember "
            "conversations or count questions against limits until there is room again."
        )


class StateStore:
    """Conversation memory that survives restarts (one SQLite file, e.g. data/state.db)."""

    def __init__(self, conn: Connection, *, facts_known: bool = True, durable: bool = True) -> None:
        self.conn = conn
        # One connection shared by the bot's threads: each method holds the lock, so
        # transactions never interleave.
        self._lock = threading.RLock()
        path = database_file(conn)
        self.failures = WriteFailures(str(path) if path else "in memory")
        self.facts_known = facts_known
        """False when the state file exists but could not be read: its facts are unknown, and
        `read_fact` raises rather than answer "none"."""
        self.durable = durable
        """False for the in-memory stand-in: `write_facts` refuses, since what it would keep
        is gone at the next start."""
        migrate_state(conn)

    def alert_due(self) -> str | None:
        """What to tell the admins about failed state writes, at most once per interval."""
        return self.failures.alert_due()

    @classmethod
    def open(cls, path: Path | str) -> StateStore:
        """Open (creating if needed) the state database at `path`.

        If the file cannot be opened for want of space or permission, it is opened read only
        (its facts still hold; writes fail and are noted), else the state lives in memory until
        the next start with `facts_known` False if the file exists; `alert_due` says so, and the
        bot still starts and answers. A file from a newer ragtune is refused
        (NewerSchemaError), never set aside for memory.
        """
        try:
            return cls._opened(lambda: connect(path))
        except Exception as exc:
            if not is_storage_failure(exc):
                raise
            error = exc
        file = Path(path)
        for reader in (connect_read_only, connect_immutable):
            try:
                store = cls._opened(lambda reader=reader: reader(file))  # type: ignore[misc]
            except Exception as exc:
                if not is_storage_failure(exc):
                    raise
                continue
            store.failures.where = f"{path}, read only for now"
            store.failures.note("open", error)
            return store
        store = cls(connect(":memory:"), facts_known=not _may_exist(file), durable=False)
        store.failures.where = f"{path}, kept in memory for now"
        store.failures.note("open", error)
        return store

    @classmethod
    def _opened(cls, opener: Callable[[], Connection]) -> StateStore:
        conn = opener()
        try:
            return cls(conn)
        except BaseException:
            conn.close()  # a refused file is left as it was, not held open
            raise

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @best_effort(lambda: None)
    def add_turns(self, chat_key: str, turns: list[Turn]) -> None:
        """Remember a question and its answer together."""
        with self._lock:
            now = datetime.now(UTC).isoformat(timespec="seconds")
            with transaction(self.conn):
                self.conn.executemany(
                    "INSERT INTO turns(chat_key, role, content, created_at) VALUES (?, ?, ?, ?)",
                    [(chat_key, t.role, t.content, now) for t in turns],
                )

    @best_effort(list)
    def recent_turns(self, chat_key: str, limit: int) -> list[Turn]:
        """The last `limit` turns of a conversation, oldest first."""
        with self._lock:
            rows = self.conn.execute(
                "SELECT role, content FROM turns WHERE chat_key = ? ORDER BY id DESC LIMIT ?",
                (chat_key, limit),
            ).fetchall()
            return [Turn(role, content) for role, content in reversed(rows)]

    @best_effort(lambda: None)
    def audit(self, user_id: int, action: str, *, allowed: bool, detail: str = "") -> None:
        """Record an admin action or a refused attempt."""
        with self._lock:
            now = datetime.now(UTC).isoformat(timespec="seconds")
            with transaction(self.conn):
                self.conn.execute(
                    "INSERT INTO audit(user_id, action, allowed, detail, created_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (user_id, action, int(allowed), detail, now),
                )

    @best_effort(list)
    def audit_log(self, limit: int = 100) -> list[tuple[int, str, bool, str]]:
        """Latest audit entries, newest first: (user id, action, allowed, detail)."""
        with self._lock:
            rows = self.conn.execute(
                "SELECT user_id, action, allowed, detail FROM audit ORDER BY id DESC LIMIT ?",
                (limit,),
            )
            return [(int(u), str(a), bool(ok), str(d)) for u, a, ok, d in rows]

    @best_effort(lambda: 0)
    def reset(self, chat_key: str) -> int:
        """Forget a conversation; return how many turns were dropped."""
        with self._lock, transaction(self.conn):
            return self.conn.execute("DELETE FROM turns WHERE chat_key = ?", (chat_key,)).rowcount

    @best_effort(lambda: None)
    def record_question(self, user_id: int, chat_id: int, asked_at: float) -> None:
        """Count one question (unix time) against its user."""
        with self._lock, transaction(self.conn):
            self.conn.execute(
                "INSERT INTO questions(user_id, chat_id, asked_at) VALUES (?, ?, ?)",
                (user_id, chat_id, asked_at),
            )

    @best_effort(list)
    def questions_since(self, user_id: int, since: float) -> list[float]:
        """Times (unix, oldest first) of the user's questions at or after `since`."""
        with self._lock:
            rows = self.conn.execute(
                "SELECT asked_at FROM questions WHERE user_id = ? AND asked_at >= ? "
                "ORDER BY asked_at",
                (user_id, since),
            ).fetchall()
            return [float(at) for (at,) in rows]

    @best_effort(lambda: 0)
    def users_since(self, since: float) -> int:
        """How many different users asked at or after `since`."""
        with self._lock:
            (count,) = self.conn.execute(
                "SELECT COUNT(DISTINCT user_id) FROM questions WHERE asked_at >= ?", (since,)
            ).fetchone()
            return int(count)

    @best_effort(lambda: None)
    def get_fact(self, key: str) -> str | None:
        """A remembered value, or None (also when it cannot be read: best effort)."""
        return self._fact(key)

    @best_effort(lambda: None)
    def set_fact(self, key: str, value: str | None) -> None:
        """Remember a value (None forgets it); best effort."""
        self._set_facts({key: value})

    def read_fact(self, key: str) -> str | None:
        """A remembered value, or None when there is none; StateUnavailableError when the
        state cannot say (never None for "could not read")."""
        if not self.facts_known:
            raise StateUnavailableError(f"the bot's state database ({self.failures.where}) "
                                        "cannot be read")  # fmt: skip
        with self._strictly("read_fact", "read"):
            return self._fact(key)

    def write_fact(self, key: str, value: str | None) -> None:
        """`set_fact` that raises StateUnavailableError when it could not be stored."""
        self.write_facts({key: value})

    def write_facts(self, values: dict[str, str | None]) -> None:
        """Store several facts in one transaction (None forgets one), or raise
        StateUnavailableError and store none of them."""
        if not self.durable:
            raise StateUnavailableError(
                f"the bot's state database ({self.failures.where}) cannot be written"
            )
        with self._strictly("write_fact", "written"):
            self._set_facts(values)

    @contextmanager
    def _strictly(self, action: str, verb: str) -> Iterator[None]:
        """A storage failure in the block is noted and raised as StateUnavailableError."""
        try:
            yield
        except Exception as exc:
            if not is_storage_failure(exc):
                raise
            self.failures.note(action, exc)
            raise StateUnavailableError(
                f"the bot's state database cannot be {verb} ({exc})"
            ) from None

    def _fact(self, key: str) -> str | None:
        with self._lock:
            row = self.conn.execute("SELECT value FROM facts WHERE key = ?", (key,)).fetchone()
            return None if row is None else str(row[0])

    def _set_facts(self, values: dict[str, str | None]) -> None:
        with self._lock, transaction(self.conn):
            for key, value in values.items():
                if value is None:
                    self.conn.execute("DELETE FROM facts WHERE key = ?", (key,))
                else:
                    self.conn.execute(
                        "INSERT INTO facts(key, value) VALUES (?, ?) "
                        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                        (key, value),
                    )
