"""What every handler is handed: the bot's services, built once by bot.app, and a typed context.

Handlers take `context: BotContext` and reach the core through `context.services`, never
through string keys of `bot_data`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from telegram.ext import CallbackContext, ContextTypes, ExtBot

from bot.core.admin import AdminService
from bot.core.chat import ChatService

SERVICES = "services"
"""The one key of `bot_data`: the BotServices (set in post_init)."""
NOTICE_INTERVAL_S = 10.0


class NoticeThrottle:
    """Says the same notice ("busy", "one at a time") to a user at most once per interval.

    Under a flood every reply counts against Telegram's ~30 messages/s for the whole bot; a user
    who sends five messages in a row learns nothing from five identical notices.
    """

    def __init__(self, interval_s: float = NOTICE_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self._last: dict[tuple[int, str], float] = {}

    def due(self, user_id: int, notice: str) -> bool:
        """True (and remembered) when `notice` was not given to `user_id` within the interval."""
        now = time.monotonic()
        if len(self._last) > 10_000:  # forget the old ones; the dict stays small
            self._last = {k: t for k, t in self._last.items() if now - t < self.interval_s}
        if now - self._last.get((user_id, notice), -self.interval_s) < self.interval_s:
            return False
        self._last[(user_id, notice)] = now
        return True


@dataclass
class BotServices:
    """What the handlers need, built once by bot.app and kept in `bot_data`."""

    chat: ChatService
    admin: AdminService
    alert_chats: tuple[int, ...] = ()
    """Chats told when a handler fails."""
    notices: NoticeThrottle = field(default_factory=NoticeThrottle)


class BotContext(CallbackContext[ExtBot[None], dict[Any, Any], dict[Any, Any], dict[Any, Any]]):
    """The context every handler gets: PTB's, plus the bot's services."""

    @property
    def services(self) -> BotServices:
        """The services bot.app built (post_init puts them in place before any update)."""
        services: BotServices = self.bot_data[SERVICES]
        return services

    @property
    def services_if_ready(self) -> BotServices | None:
        """The services, or None while the bot is still starting (error handlers use this)."""
        services: BotServices | None = self.bot_data.get(SERVICES)
        return services


CONTEXT_TYPES = ContextTypes(context=BotContext)
"""Given to the Application builder, so handlers receive a BotContext."""
