"""The bot's own SQLite state beside the knowledge base: turns, the audit log, questions asked.

State is best effort: answering needs only the knowledge base. When the state file cannot be
written or read for want of space or permission (a full disk), each method logs it, returns
what it would with no state (no memory, no counted questions), and `alert_due` says so once per
interval, so the bot goes on answering and an admin hears about it without a flood.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import ParamSpec, TypeVar, cast

from bot.state_migrations import migrate_state
from knowledge.connection import (
    Connection,
    connect,
    database_file,
    is_storage_failure,
    transaction,
)

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")
ALERT_INTERVAL_S = 600.0
"""At most one admin alert per this many seconds while the state cannot be written."""


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

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        # One connection shared by the bot's threads: each method holds the lock, so
        # transactions never interleave.
        self._lock = threading.RLock()
        path = database_file(conn)
        self.failures = WriteFailures(str(path) if path else "in memory")
        migrate_state(conn)

    def alert_due(self) -> str | None:
        """What to tell the admins about failed state writes, at most once per interval."""
        return self.failures.alert_due()

    @classmethod
    def open(cls, path: Path | str) -> StateStore:
        """Open (creating if needed) the state database at `path`.

        If the file cannot be opened for want of space or permission, the state lives in memory
        until the next start (and `alert_due` says so): the bot still starts and answers. A file
        from a newer ragtune is refused (NewerSchemaError), never set aside for memory.
        """
        try:
            conn = connect(path)
            try:
                return cls(conn)
            except BaseException:
                conn.close()  # a refused file is left as it was, not held open
                raise
        except Exception as exc:
            if not is_storage_failure(exc):
                raise
            store = cls(connect(":memory:"))
            store.failures.where = f"{path}, kept in memory for now"
            store.failures.note("open", exc)
            return store

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
        """A remembered value, or None."""
        with self._lock:
            row = self.conn.execute("SELECT value FROM facts WHERE key = ?", (key,)).fetchone()
            return None if row is None else str(row[0])

    @best_effort(lambda: None)
    def set_fact(self, key: str, value: str | None) -> None:
        """Remember a value (None forgets it)."""
        with self._lock, transaction(self.conn):
            if value is None:
                self.conn.execute("DELETE FROM facts WHERE key = ?", (key,))
            else:
                self.conn.execute(
                    "INSERT INTO facts(key, value) VALUES (?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (key, value),
                )
