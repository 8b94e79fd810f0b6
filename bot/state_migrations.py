"""Numbered migrations of the bot's state database, run by the knowledge base's migrator."""

from __future__ import annotations

from knowledge.connection import Connection, database_file
from knowledge.migrations import Migration, migrate

# The schema as created at every open before there were versions, to the byte: IF NOT EXISTS
# stays, because a state file from then has version 0 and some or all of these tables (ragtune
# only ever added tables to it, never changed one). m001 completes such a file and marks it
# version 1 without touching a row.
M001_SCHEMA = (
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
    # One row per question admitted, for rate limits, daily budgets and "users today".
    """CREATE TABLE IF NOT EXISTS questions (
        id       INTEGER PRIMARY KEY,
        user_id  INTEGER NOT NULL,
        chat_id  INTEGER NOT NULL,
        asked_at REAL NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS questions_by_user ON questions(user_id, asked_at)",
    "CREATE INDEX IF NOT EXISTS questions_by_time ON questions(asked_at)",
    # Small facts that survive a restart, e.g. the active adapter.
    "CREATE TABLE IF NOT EXISTS facts (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)


def m001_initial(conn: Connection) -> None:
    """Conversation turns, the audit log, questions asked and small facts."""
    for statement in M001_SCHEMA:
        conn.execute(statement)


# In order of application: append new steps, never change one that has shipped.
MIGRATIONS: list[Migration] = [m001_initial]


def migrate_state(conn: Connection) -> int:
    """Bring a state database up to date; a file from a newer ragtune raises NewerSchemaError."""
    path = database_file(conn)
    return migrate(conn, MIGRATIONS, what=f"The bot's state database {path or '(in memory)'}")
