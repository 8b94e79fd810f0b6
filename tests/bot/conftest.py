"""Fixtures of the bot tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bot.tg.emulator import BotAPIEmulator
from tests.helpers import KNOWN_TOKEN


@pytest.fixture
def emulator() -> Iterator[BotAPIEmulator]:
    """A Bot API emulator on 127.0.0.1 that knows the suite's token (see tests/helpers.py)."""
    started = BotAPIEmulator(token=KNOWN_TOKEN)
    started.start()
    yield started
    started.stop()
