"""Fixtures of the bot tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.config import Settings
from bot.local.emulator import BotAPIEmulator
from tests.helpers import KNOWN_TOKEN


@pytest.fixture
def emulator() -> Iterator[BotAPIEmulator]:
    """A Bot API emulator on 127.0.0.1 that knows the suite's token (see tests/helpers.py)."""
    started = BotAPIEmulator(token=KNOWN_TOKEN)
    started.start()
    yield started
    started.stop()


@pytest.fixture
def settings(tmp_path: Path, emulator: BotAPIEmulator, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Default settings pointed at the emulator, with the state database in tmp_path."""
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", emulator.token)
    monkeypatch.setenv("RAGTUNE_TELEGRAM_API_URL", emulator.base_url)
    monkeypatch.setenv("RAGTUNE_TELEGRAM_FILE_URL", emulator.base_file_url)
    monkeypatch.setenv("RAGTUNE_STATE_DB", str(tmp_path / "state.db"))
    return Settings(_env_file=None)
