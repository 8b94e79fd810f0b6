"""Showing an answer while it is written: drafts in private chats, throttled edits in groups."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from telegram import Bot, Message
from telegram.constants import ParseMode
from telegram.error import BadRequest, TelegramError

from bot.tg.render import preview

log = logging.getLogger(__name__)
# Drafts in private chats at most every 1.5 s, edits in groups at most every 3 s (Telegram's
# limits are per chat), and only when the text grew by a few words. A Bot API server without
# drafts (an older self-hosted one) gets edits in private chats too, every 1.5 s.
DRAFT_INTERVAL_S = 1.5
GROUP_EDIT_INTERVAL_S = 3.0
PRIVATE_EDIT_INTERVAL_S = 1.5
MIN_GROWTH_CHARS = 20


class LiveMessage:
    """Shows an answer while it is written: drafts in private chats, throttled edits in groups."""

    def __init__(self, bot: Bot, question: Message, *, private: bool) -> None:
        self.bot = bot
        self.question = question
        self.drafts = private  # until the server refuses them
        self.edit_interval = PRIVATE_EDIT_INTERVAL_S if private else GROUP_EDIT_INTERVAL_S
        self.shown = ""
        self.last = 0.0
        self.placeholder: Message | None = None

    async def progress(self, text: str) -> None:
        """Show `text` if enough time passed and it grew meaningfully."""
        now = time.monotonic()
        grown = len(text.strip()) - len(self.shown) >= MIN_GROWTH_CHARS
        if self.drafts:
            if not grown or now - self.last < DRAFT_INTERVAL_S:
                return
            try:
                await self.bot.send_message_draft(
                    self.question.chat_id, self.question.message_id, preview(text)
                )
            except TelegramError as exc:
                log.info("drafts refused (%s); streaming by edits instead", type(exc).__name__)
                self.drafts = False
            else:
                self.shown, self.last = text.strip(), now
                return
        if grown and (self.placeholder is None or now - self.last >= self.edit_interval):
            self.shown, self.last = text.strip(), now
            if self.placeholder is None:
                self.placeholder = await self.question.reply_text(preview(self.shown))
            else:
                await self.placeholder.edit_text(preview(self.shown))

    async def finish(self, parts: list[str]) -> None:
        """Send the final HTML parts (the first replaces the group placeholder)."""
        for number, part in enumerate(parts):
            if number == 0 and self.placeholder is not None:
                # The final edit respects the interval too.
                await asyncio.sleep(max(0.0, self.last + self.edit_interval - time.monotonic()))
                await send_html(self.placeholder.edit_text, part)
            else:
                await send_html(self.question.reply_text, part)


async def send_html(send: Callable[..., Awaitable[object]], part: str) -> None:
    """Send `part` as HTML; if Telegram rejects its entities, the same text as plain text."""
    try:
        await send(part, parse_mode=ParseMode.HTML)
    except BadRequest as exc:  # Telegram rejected the entities: send the same text plain
        if "not modified" in exc.message:
            return
        log.warning("HTML rejected (%s); sending plain text", exc.message)
        await send(part, parse_mode=None)
