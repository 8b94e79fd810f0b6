from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from knowledge import connection
from knowledge.errors import SQLiteUnavailableError


@pytest.fixture
def fresh_driver_choice() -> Iterator[None]:
    connection.driver.cache_clear()
    yield
    connection.driver.cache_clear()


def test_the_chosen_driver_loads_sqlite_vec_and_fts5(tmp_path: Path) -> None:
    conn = connection.connect(tmp_path / "x.db")
    assert conn.execute("SELECT vec_version()").fetchone()[0].startswith("v")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    conn.close()
    assert set(connection.versions()) == {"driver", "sqlite", "sqlite_vec"}


def test_no_usable_binding_is_one_clear_sentence(
    monkeypatch: pytest.MonkeyPatch, fresh_driver_choice: None
) -> None:
    if hasattr(sqlite3.connect(":memory:"), "enable_load_extension"):
        candidates: tuple[str, ...] = ("ragtune_no_such_driver",)
    else:  # this Python's own sqlite3 cannot load extensions: a real failing candidate
        candidates = ("ragtune_no_such_driver", "sqlite3")
    monkeypatch.setattr(connection, "DRIVER_CANDIDATES", candidates)
    with pytest.raises(SQLiteUnavailableError) as raised:
        connection.connect(":memory:")
    message = str(raised.value)
    assert message.startswith("No SQLite binding here can load the sqlite-vec extension")
    assert "ragtune_no_such_driver: not installed" in message
    assert "pip install pysqlite3-binary" in message
    assert "\n" not in message
