"""Run the real bot against the local Bot API emulator: `ragtune chat` and the tests use this."""

from __future__ import annotations

import asyncio
import html
import re
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from pydantic import SecretStr

from bot.app import ServicesFactory, build_application
from bot.config import Settings
from bot.local.emulator import JSON, BotAPIEmulator
from bot.tg.handlers import in_progress
from bot.tg.serve import open_application

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
    application = build_application(settings, services)
    async with open_application(application):
        assert application.updater is not None
        await application.updater.start_polling(poll_interval=0.0, timeout=1)
        yield


def terminal_text(message_html: str) -> str:
    """A bot message as plain terminal text."""
    return html.unescape(_TAGS.sub("", message_html))


UPLOAD = "/upload"
PRESS = "/press"
SANDBOX_HELP = (
    "Talking to the real bot through a local Bot API emulator, as an admin.\n"
    "Type a question or a command (/help, /add <text>, /docs, /stats...); "
    "/upload PATH sends a file; /press N presses button N; /quit leaves."
)


def buttons(message: JSON) -> list[JSON]:
    """The inline buttons under a message, left to right, top to bottom."""
    markup = message.get("reply_markup") or {}
    return [button for row in markup.get("inline_keyboard", []) for button in row]


def shown(message: JSON) -> str:
    """A bot message as the terminal shows it: plain text, then its numbered buttons."""
    if "photo" in message or "document" in message:
        attached = message.get("document") or message["photo"][-1]
        return f"bot> [file, {attached.get('file_size', 0)} bytes] {message.get('caption', '')}"
    text = f"bot> {terminal_text(str(message.get('text', '')))}"
    labels = [f"[{n}: {b['text']}]" for n, b in enumerate(buttons(message), start=1)]
    return f"{text}\n     {' '.join(labels)}" if labels else text


def settled(emulator: BotAPIEmulator, chat_id: int, seen: int) -> bool:
    """The bot has replied since message `seen` and its latest message is not work in progress."""
    latest = [m for m in emulator.messages(chat_id) if int(m["message_id"]) > seen]
    if not latest:
        return False
    return not in_progress(str(latest[-1].get("text", "")))


async def _press(emulator: BotAPIEmulator, argument: str, user_id: int) -> str:
    """Press button N of the latest message that has buttons; return that message afterwards."""
    with_buttons = [m for m in emulator.messages(user_id) if buttons(m)]
    if not with_buttons or not argument.isdigit():
        return "Nothing to press: /press N presses button N under the bot's latest buttons."
    message = with_buttons[-1]
    choices = buttons(message)
    if not 1 <= int(argument) <= len(choices):
        return f"That message has buttons 1 to {len(choices)}."
    before = dict(message)
    emulator.press_button(
        message, str(choices[int(argument) - 1]["callback_data"]), user_id=user_id
    )
    key = int(message["message_id"])

    def changed() -> bool:
        return emulator.message(user_id, key) != before

    try:
        await asyncio.to_thread(emulator.wait_for, changed, 30)
    except TimeoutError:
        return "The bot did not react to that button."
    return shown(emulator.message(user_id, key))


def _send_line(emulator: BotAPIEmulator, line: str, user_id: int) -> str | None:
    """Send one terminal line as the user; return a problem to print instead, if any."""
    if line == UPLOAD or line.startswith(UPLOAD + " "):
        path = Path(line.removeprefix(UPLOAD).strip()).expanduser()
        if not path.is_file():
            return f"No file at {path or '(none given)'}: /upload PATH sends a file."
        emulator.send_document(path.read_bytes(), path.name, user_id=user_id)
        return None
    emulator.send_text(line, user_id=user_id)
    return None


async def _print_reply(
    emulator: BotAPIEmulator, user_id: int, seen: int, drafts_before: int, timeout: float = 600
) -> None:
    """Print the bot's drafts as they grow (what Telegram shows while an answer is written), then
    the messages it sent after message `seen`, without repeating what was streamed."""
    streamed = ""
    deadline = asyncio.get_running_loop().time() + timeout
    while not settled(emulator, user_id, seen):
        if asyncio.get_running_loop().time() > deadline:
            print("The bot did not answer in time.")
            return
        drafts = emulator.sent("sendMessageDraft", user_id)[drafts_before:]
        if drafts:
            text = str(drafts[-1].params.get("text", ""))  # drafts are plain text
            if text.startswith(streamed) and text != streamed:
                sys.stdout.write(("" if streamed else "bot> ") + text[len(streamed) :])
                sys.stdout.flush()
                streamed = text
        await asyncio.sleep(0.05)
    for message in emulator.messages(user_id):
        if int(message["message_id"]) <= seen:
            continue
        full = shown(message)
        if streamed and full.startswith(f"bot> {streamed}"):
            print(full[len(f"bot> {streamed}") :])  # the rest of the answer, its sources
        else:
            print(("\n" if streamed else "") + full)
        streamed = ""


async def chat(settings: Settings, *, user_id: int = 1) -> None:
    """Read lines from the terminal, send them to the bot as `user_id`, print its replies."""
    emulator = BotAPIEmulator()
    emulator.start()
    try:
        async with running_bot(emulator_settings(settings, emulator, user_id)):
            print(SANDBOX_HELP, file=sys.stderr)
            while True:
                try:
                    line = (await asyncio.to_thread(input, "you> ")).strip()
                except EOFError:
                    break
                if not sys.stdin.isatty():
                    print(line)  # piped input: echo it, so the output reads as a transcript
                if line in {"/quit", "/exit"}:
                    break
                if not line:
                    continue
                if line == PRESS or line.startswith(PRESS + " "):
                    print(await _press(emulator, line.removeprefix(PRESS).strip(), user_id))
                    continue
                seen = max((int(m["message_id"]) for m in emulator.messages(user_id)), default=0)
                drafts_before = len(emulator.sent("sendMessageDraft", user_id))
                problem = _send_line(emulator, line, user_id)
                if problem is not None:
                    print(problem)
                    continue
                await _print_reply(emulator, user_id, seen, drafts_before)
    finally:
        emulator.stop()
