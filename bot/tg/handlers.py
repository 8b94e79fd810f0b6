"""Telegram handlers for everyone: take ids and text from the Update, call the core, render.

A question goes to `ChatService.ask` (bot.core.chat); what comes back is said here: a refusal,
"busy", "one at a time", or an answer streamed as it is written and sent with its evidence and
sources.
"""

from __future__ import annotations

import asyncio
import html
import logging

from telegram import Message, Update
from telegram.constants import ChatAction, ChatType, ParseMode
from telegram.error import ChatMigrated, TelegramError

from bot.core.chat import AlreadyAnswering, AnswerHandle, Busy, Refused, Restarting, Stopped
from bot.core.errors import RagtuneError
from bot.tg.context import BotContext
from bot.tg.menus import WELCOME, help_text
from bot.tg.render import answer_html, sendable, sources_html, split_message
from bot.tg.streaming import LiveMessage

log = logging.getLogger(__name__)

ONE_AT_A_TIME = "I'm still answering your previous question; send /cancel to stop it."
STOPPED = "Stopped."
RESTARTING = "I'm restarting and could not finish this answer; please ask again in a minute."
BUSY = "I'm busy with other questions right now; please try again shortly."
APOLOGY = "Sorry, something went wrong while answering. Please try again."
QUEUED = "You are number {position} in the queue."


def chat_key(update: Update) -> str:
    """Memory per chat, and per user inside groups."""
    chat = update.effective_chat
    user = update.effective_user
    assert chat is not None
    if chat.type == ChatType.PRIVATE or user is None:
        return f"tg:{chat.id}"
    return f"tg:{chat.id}:{user.id}"


async def start(update: Update, context: BotContext) -> None:
    """/start: greet and say what the bot does."""
    if update.effective_message:
        await update.effective_message.reply_text(WELCOME)


def whoami_text(user_id: int | None, chat_id: int, private: bool) -> str:
    """/whoami's text: the ids an admin puts in RAGTUNE_ADMIN_IDS or RAGTUNE_ALLOWED_IDS."""
    if user_id is None:
        return f"This chat's id is {chat_id}."
    mine = f"Your Telegram id is {user_id}."
    return mine if private else f"{mine} This group's id is {chat_id}."


async def whoami(update: Update, context: BotContext) -> None:
    """/whoami: the sender's numeric id (and the group's), for the allowlist and admin list."""
    message, chat, user = update.effective_message, update.effective_chat, update.effective_user
    if message is None or chat is None:
        return
    private = chat.type == ChatType.PRIVATE
    await message.reply_text(whoami_text(user.id if user else None, chat.id, private))


async def help_command(update: Update, context: BotContext) -> None:
    """/help: the commands (admins also get theirs)."""
    if update.effective_message:
        user = update.effective_user
        is_admin = context.services.admin.is_admin(user.id if user else None)
        await update.effective_message.reply_text(help_text(is_admin))


async def reset(update: Update, context: BotContext) -> None:
    """/reset: forget this conversation."""
    dropped = await context.services.chat.reset(chat_key(update))
    if update.effective_message:
        await update.effective_message.reply_text(f"Done: I forgot {dropped} exchanges.")


async def sources(update: Update, context: BotContext) -> None:
    """/sources: the sources behind the last answer in this chat."""
    message = update.effective_message
    if message is None:
        return
    answer = context.services.chat.last_answer(chat_key(update))
    if answer is None or not answer.shown_sources:
        await message.reply_text("My last answer had no sources.")
        return
    lines = [sources_html(answer.shown_sources)]
    for source in answer.shown_sources:
        chunk = source.hit.chunk
        lines.append(f"\n[{source.number}] {html.escape(chunk.text[:300])}")
    for part in split_message("\n".join(lines)):
        await message.reply_text(part, parse_mode=ParseMode.HTML)


async def ask_command(update: Update, context: BotContext) -> None:
    """/ask <question>: ask explicitly (the way to ask in groups)."""
    question = " ".join(context.args or []).strip()
    if update.effective_message is None:
        return
    if not question:
        await update.effective_message.reply_text("Usage: /ask <question>")
        return
    await answer_question(update, context, question)


async def text_message(update: Update, context: BotContext) -> None:
    """A text message: a question in private chats; in groups only when mentioned or replied to."""
    message = update.effective_message
    chat = update.effective_chat
    if message is None or chat is None or not message.text:
        return
    text = message.text
    if chat.type != ChatType.PRIVATE:
        mention = f"@{context.bot.username}"
        replied = message.reply_to_message is not None and (
            message.reply_to_message.from_user is not None
            and message.reply_to_message.from_user.id == context.bot.id
        )
        if mention not in text and not replied:
            return  # never chatter in groups
        text = text.replace(mention, "").strip()
    await answer_question(update, context, text)


async def chat_migrated(update: Update, context: BotContext) -> None:
    """Telegram moved a group to a new id (it became a supergroup, by itself or by an admin's
    setting): the chat's collection and adapter go with it. Said in both chats; either will do."""
    message = update.effective_message
    if message is None:
        return
    if message.migrate_to_chat_id is not None:
        old_id, new_id = message.chat_id, message.migrate_to_chat_id
    elif message.migrate_from_chat_id is not None:
        old_id, new_id = message.migrate_from_chat_id, message.chat_id
    else:
        return
    await asyncio.to_thread(context.services.admin.move_chat, old_id, new_id)


async def cancel(update: Update, context: BotContext) -> None:
    """/cancel: stop the answer being generated for this user."""
    user = update.effective_user
    if update.effective_message is None:
        return
    if user is None or not context.services.chat.cancel(user.id):
        await update.effective_message.reply_text("There is nothing to cancel.")


async def answer_question(update: Update, context: BotContext, question: str) -> None:
    """Ask the core; say its refusal or notice, or stream the answer and send it with sources."""
    message, chat, user = update.effective_message, update.effective_chat, update.effective_user
    assert message is not None and chat is not None
    user_id = user.id if user else message.chat_id

    async def typing() -> None:  # "typing…" goes out while the question is searched
        await _show_typing(context, chat.id)

    # Control characters help no search and no model.
    outcome = await context.services.chat.ask(
        user_id, chat.id, chat_key(update), sendable(question), on_search=typing
    )
    match outcome:
        case Refused(text=text):
            await message.reply_text(text)
        case AlreadyAnswering():
            await _notify(context, message, user_id, ONE_AT_A_TIME)
        case Busy():
            await _notify(context, message, user_id, BUSY)
        case Restarting():
            await message.reply_text(RESTARTING)
        case AnswerHandle():
            async with outcome as handle:
                await _deliver(context, message, handle, private=chat.type == ChatType.PRIVATE)


async def _deliver(
    context: BotContext, message: Message, handle: AnswerHandle, *, private: bool
) -> None:
    """Say where the answer is in the queue, stream it, send it with evidence and sources."""
    if handle.position > 0:
        await message.reply_text(QUEUED.format(position=handle.position))
    live = LiveMessage(context.bot, message, private=private)
    async for text in handle.drafts():
        await live.progress(text)
    result = await handle.finish()
    if isinstance(result, Stopped):
        await message.reply_text(RESTARTING if result.restarting else STOPPED)
        return
    await live.finish(answer_html(result))


async def _notify(context: BotContext, message: Message, user_id: int, notice: str) -> None:
    if context.services.notices.due(user_id, notice):
        await message.reply_text(notice)


async def _show_typing(context: BotContext, chat_id: int) -> None:
    """Best effort: a failed "typing…" must not cost the user their answer."""
    try:
        await context.bot.send_chat_action(chat_id, ChatAction.TYPING)
    except TelegramError as exc:
        log.warning("typing action failed in chat %s: %s", chat_id, type(exc).__name__)


async def on_error(update: object, context: BotContext) -> None:
    """Log with context (ids, never message text or the token), tell the admins, apologise."""
    error = context.error
    where = describe_update(update)
    services = context.services_if_ready
    if isinstance(error, ChatMigrated) and isinstance(update, Update) and services is not None:
        # A reply went to a group's old id: Telegram names the new one. Move the bindings,
        # which the migration message would have done had it arrived.
        old = update.effective_chat
        log.warning("chat %s is now %s; the reply to %s was lost", old.id if old else "-",
                    error.new_chat_id, where)  # fmt: skip
        if old is None:
            return
        try:
            await asyncio.to_thread(services.admin.move_chat, old.id, error.new_chat_id)
            return
        except RagtuneError as exc:  # not stored: held in memory; the admins must hear of it
            error = exc
    log.error("handling %s failed", where, exc_info=error)
    alert = f"Error while handling {where}: {type(error).__name__}: {error}"[:4000]
    for chat_id in services.alert_chats if services else ():
        try:
            await context.bot.send_message(chat_id, alert)
        except TelegramError as exc:  # the alert is best effort; the log has it all
            log.warning("could not alert chat %s: %s", chat_id, type(exc).__name__)
    if isinstance(update, Update) and update.effective_message is not None:
        try:
            await update.effective_message.reply_text(APOLOGY)
        except TelegramError as exc:
            log.warning("could not apologise in %s: %s", where, type(exc).__name__)


async def alert_degraded(update: object, context: BotContext) -> None:
    """After every update: tell the admins once per interval if the state could not be
    written (a full disk), while the bot goes on answering without it."""
    services = context.services_if_ready
    alert = services.chat.alert_due() if services else None
    if services is None or alert is None:
        return
    for chat_id in services.alert_chats:
        try:
            await context.bot.send_message(chat_id, alert)
        except TelegramError as exc:  # best effort; the log has it
            log.warning("could not alert chat %s: %s", chat_id, type(exc).__name__)


def describe_update(update: object) -> str:
    """Ids that locate an update in the logs (no text: messages are private)."""
    if not isinstance(update, Update):
        return "a job" if update is None else type(update).__name__
    chat = update.effective_chat
    user = update.effective_user
    return (
        f"update {update.update_id} (chat {chat.id if chat else '-'}, "
        f"user {user.id if user else '-'})"
    )


def in_progress(text: str) -> bool:
    """Whether a bot message will be followed by more: a status that ends with "…" until it
    is final, or the queue notice before an answer (the terminal chat waits on these)."""
    return text.endswith("…") or text.startswith(QUEUED.split("{", 1)[0])
