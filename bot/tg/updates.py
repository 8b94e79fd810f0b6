"""The order updates are handled in: all at once, except around a chat's move.

Updates run concurrently (so /cancel is never stuck behind a running answer). The one exception
is Telegram's notice that a group has a new id: until its bindings have moved, no later update
starts, so the first question or `/add` in the new supergroup can never be looked up while the
new id is still unbound (and so served from, or written to, `global`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from telegram import Update
from telegram.ext import BaseUpdateProcessor


def is_chat_move(update: object) -> bool:
    """True for the service message that says a group moved to a new id."""
    message = update.effective_message if isinstance(update, Update) else None
    return message is not None and (
        message.migrate_to_chat_id is not None or message.migrate_from_chat_id is not None
    )


class MovesFirst(BaseUpdateProcessor):
    """Up to `max_concurrent_updates` at once; a chat move holds back the updates after it."""

    def __init__(self, max_concurrent_updates: int) -> None:
        super().__init__(max_concurrent_updates)
        self._moving = 0
        self._settled = asyncio.Event()
        self._settled.set()

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        """Handle one update. Updates start in the order they arrive, and a move is counted
        before its first await, so any update after it waits here until it is done."""
        if not is_chat_move(update):
            await self._settled.wait()
            await coroutine
            return
        self._moving += 1
        self._settled.clear()
        try:
            await coroutine
        finally:
            self._moving -= 1
            if self._moving == 0:
                self._settled.set()

    async def initialize(self) -> None:
        """Nothing to open."""

    async def shutdown(self) -> None:
        """Nothing to close."""
