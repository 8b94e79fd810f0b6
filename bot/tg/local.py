"""Run the real bot against the local Bot API emulator: `ragtune chat` and the tests use this."""

from __future__ import annotations

import asyncio
import html
import re
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from pydantic import SecretStr

from bot.config import Settings
from bot.tg.emulator import BotAPIEmulator
from bot.tg.handlers import BotServices

ServicesFactory = Callable[[], tuple[BotServices, Callable[[], None]]]
_TAGS = re.compile(r"</?[a-z][^>]*>")


def emulator_settings(settings: Settings, emulator: BotAPIEmulator, admin_id: int) -> Settings:
    """`settings` pointed at the emulator, with `admin_id` among the admins."""
    return settings.model_copy(
        update={
            "telegram_bot_token": SecretStr(emulator.token),
            "telegram_api_url": emulator.base_url,
            "telegram_file_url": emulator.base_file_url,
            "admin_ids": (*settings.admin_ids, admin_id),
        }
    )


@asynccontextmanager
async def running_bot(
    settings: Settings, services: ServicesFactory | None = None
) -> AsyncIterator[None]:
    """The real PTB Application, polling, for the duration of the block (post_init included)."""
    from bot.app import build_application

    application = build_application(settings, services)
    await application.initialize()
    if application.post_init is not None:
        await application.post_init(application)
    await application.start()
    assert application.updater is not None
    await application.updater.start_polling(poll_interval=0.0, timeout=1)
    try:
        yield
    finally:
        await application.updater.stop()
        await application.stop()
        await application.shutdown()
        if application.post_shutdown is not None:
            await application.post_shutdown(application)


def terminal_text(message_html: str) -> str:
    """A bot message as plain terminal text."""
    return html.unescape(_TAGS.sub("", message_html))


async def chat(settings: Settings, *, user_id: int = 1) -> None:
    """Read lines from the terminal, send them to the bot as `user_id`, print its replies."""
    emulator = BotAPIEmulator()
    emulator.start()
    try:
        async with running_bot(emulator_settings(settings, emulator, user_id)):
            print("Talking to the bot through the local emulator. /quit to leave.", file=sys.stderr)
            while True:
                try:
                    line = (await asyncio.to_thread(input, "you> ")).strip()
                except EOFError:
                    break
                if line in {"/quit", "/exit"}:
                    break
                if not line:
                    continue
                seen = len(emulator.sent("sendMessage", user_id))
                emulator.send_text(line, user_id=user_id)
                await asyncio.to_thread(
                    emulator.wait_for,
                    lambda seen=seen: len(emulator.sent("sendMessage", user_id)) > seen,  # type: ignore[misc]
                    300,
                )
                await asyncio.sleep(0.3)  # a queue notice may come before the answer
                for call in emulator.sent("sendMessage", user_id)[seen:]:
                    print(f"bot> {terminal_text(str(call.params['text']))}")
    finally:
        emulator.stop()
