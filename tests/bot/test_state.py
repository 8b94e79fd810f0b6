"""The state database's schema versions: created, adopted from before versions, or refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.state import StateStore, Turn
from bot.state_migrations import MIGRATIONS
from knowledge.connection import connect, transaction
from knowledge.errors import KnowledgeError, NewerSchemaError
from knowledge.migrations import schema_version

# bot/state.py's SCHEMA before state migrations, run at every open and never versioned.
OLD_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS turns (
        id         INTEGER PRIMARY KEY,
        chat_key   TEXT NOT NULL,
        role       TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
        content    TEXT NOT NULL,
        created_at TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS turns_by_chat ON turns(chat_key, id)",
    """CREATE TABLE IF NOT EXISTS audit (
        id         INTEGER PRIMARY KEY,
        user_id    INTEGER NOT NULL,
        action     TEXT NOT NULL,
        allowed    INTEGER NOT NULL,
        detail     TEXT NOT NULL,
        created_at TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS questions (
        id       INTEGER PRIMARY KEY,
        user_id  INTEGER NOT NULL,
        chat_id  INTEGER NOT NULL,
        asked_at REAL NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS questions_by_user ON questions(user_id, asked_at)",
    "CREATE INDEX IF NOT EXISTS questions_by_time ON questions(asked_at)",
    "CREATE TABLE IF NOT EXISTS facts (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)
NOW = "2026-11-25T12:00:00+00:00"


def version_of(path: Path) -> int:
    conn = connect(path)
    try:
        return schema_version(conn)
    finally:
        conn.close()


def old_state_file(path: Path, statements: tuple[str, ...] = OLD_SCHEMA) -> None:
    """A state file as the code before migrations left it: its tables, version 0."""
    conn = connect(path)
    try:
        with transaction(conn):
            for statement in statements:
                conn.execute(statement)
    finally:
        conn.close()


def schema_of(path: Path) -> set[tuple[str, str, str]]:
    conn = connect(path)
    try:
        return set(conn.execute("SELECT type, name, sql FROM sqlite_master"))
    finally:
        conn.close()


def test_a_new_state_file_gets_every_migration(tmp_path: Path) -> None:
    StateStore.open(tmp_path / "state.db").close()
    assert version_of(tmp_path / "state.db") == len(MIGRATIONS) >= 1
    old_state_file(tmp_path / "old.db")
    assert schema_of(tmp_path / "state.db") == schema_of(tmp_path / "old.db")  # m001, to the byte


def test_a_state_file_from_before_versions_is_adopted_with_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    old_state_file(path)
    conn = connect(path)
    with transaction(conn):
        conn.execute(
            "INSERT INTO turns(chat_key, role, content, created_at) "
            "VALUES ('tg:5', 'user', 'Hi', ?)",
            (NOW,),
        )
        conn.execute(
            "INSERT INTO audit(user_id, action, allowed, detail, created_at) "
            "VALUES (1, 'add', 1, 'menu.txt', ?)",
            (NOW,),
        )
        conn.execute("INSERT INTO questions(user_id, chat_id, asked_at) VALUES (5, 5, 100.0)")
        conn.execute("INSERT INTO facts(key, value) VALUES ('adapter', 'cafe-v2')")
    conn.close()
    assert version_of(path) == 0

    with StateStore.open(path) as state:
        assert state.recent_turns("tg:5", 4) == [Turn("user", "Hi")]
        assert state.audit_log() == [(1, "add", True, "menu.txt")]
        assert state.questions_since(5, 0.0) == [100.0]
        assert state.get_fact("adapter") == "cafe-v2"
        state.add_turns("tg:5", [Turn("assistant", "Hello")])  # and it is still written to
    assert version_of(path) == 1


def test_a_state_file_from_before_facts_gains_the_missing_tables(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    old_state_file(path, OLD_SCHEMA[:3])  # turns and audit only: questions, facts came later
    with StateStore.open(path) as state:
        state.set_fact("adapter", "cafe-v2")
        state.record_question(5, 5, 100.0)
        assert state.get_fact("adapter") == "cafe-v2"
        assert state.questions_since(5, 0.0) == [100.0]
        assert not state.failures.count
    assert version_of(path) == 1


def test_a_state_file_from_a_newer_ragtune_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with StateStore.open(path) as state:
        state.add_turns("tg:5", [Turn("user", "Hi")])
    conn = connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    before = path.read_bytes()

    # Refused, not swapped for a state in memory: the CLI prints a KnowledgeError as one line.
    with pytest.raises(NewerSchemaError) as refused:
        StateStore.open(path)
    assert isinstance(refused.value, KnowledgeError)
    assert str(refused.value) == (
        f"The bot's state database {path.resolve()} has schema version 99, newer than this "
        f"ragtune understands ({len(MIGRATIONS)}): upgrade ragtune to open it."
    )
    assert path.read_bytes() == before


def test_reopening_a_current_state_file_runs_no_migration(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    StateStore.open(path).close()
    conn = connect(path)
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    with StateStore(conn) as state:
        assert state.get_fact("adapter") is None
        assert conn.total_changes == 0
    assert "PRAGMA user_version" in statements  # the version is read, and nothing written
    assert not [s for s in statements if s.startswith(("BEGIN", "CREATE", "PRAGMA user_version ="))]
    assert version_of(path) == len(MIGRATIONS)
