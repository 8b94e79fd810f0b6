"""Telegram handlers: take ids and text from the Update, call the core, render the result."""

from __future__ import annotations

import asyncio
import html
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from telegram import BotCommand, Message, Update
from telegram.constants import ChatAction, ChatType, ParseMode
from telegram.error import BadRequest, TelegramError
from telegram.ext import (
    Application,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    TypeHandler,
    filters,
)

from bot.core.access import AccessPolicy
from bot.core.admin import AdminService
from bot.core.answer import Answer, Answerer, Mode, PreparedAnswer
from bot.llm.model_info import ModelInfo
from bot.llm.worker import Job, QueueFullError
from bot.state import StateStore
from bot.tg.render import answer_html, preview, sendable, sources_html, split_message

log = logging.getLogger(__name__)

SERVICES = "services"
LAST_ANSWER = "last_answer"
# Streaming: drafts in private chats at most every 1.5 s, edits in groups at most every 3 s
# (Telegram's limits are per chat), and only when the text grew by a few words. A Bot API server
# without drafts (an older self-hosted one) gets edits in private chats too, every 1.5 s.
DRAFT_INTERVAL_S = 1.5
GROUP_EDIT_INTERVAL_S = 3.0
PRIVATE_EDIT_INTERVAL_S = 1.5
MIN_GROWTH_CHARS = 20

WELCOME = (
    "Hello! Ask me anything about the knowledge base and I will answer from it, "
    "with the sources I used.\n\n"
    "/help what I can do\n/reset forget our conversation\n/sources the sources of my last answer\n"
    "/whoami your Telegram id (an admin needs it to let you in or make you an admin)"
)
HELP = (
    "Send a question as a message. In groups, mention me, reply to me or write /ask and your "
    "question.\n\n"
    "/ask ask in a group\n/reset forget our conversation\n"
    "/sources the sources behind my last answer\n/cancel stop the answer being written\n"
    "/whoami your Telegram id"
)
USER_COMMANDS = [
    BotCommand("ask", "ask a question (in groups)"),
    BotCommand("reset", "forget our conversation"),
    BotCommand("sources", "the sources of my last answer"),
    BotCommand("cancel", "stop the answer being written"),
    BotCommand("help", "what I can do"),
    BotCommand("whoami", "your Telegram id"),
]
ADMIN_COMMANDS = [
    BotCommand("add", "add text to the knowledge base"),
    BotCommand("docs", "list documents"),
    BotCommand("forget", "remove a document"),
    BotCommand("reindex", "re-embed every chunk"),
    BotCommand("adapter", "list or switch LoRA adapters"),
    BotCommand("eval", "compare base, fine-tuned, RAG and both"),
    BotCommand("backup", "a checked copy of the knowledge base"),
    BotCommand("stats", "knowledge base, model, queue, users today"),
]
ONE_AT_A_TIME = "I'm still answering your previous question; send /cancel to stop it."
STOPPED = "Stopped."
ACTIVE_JOBS = "active_jobs"
STOPPING = "stopping"
RESTARTING = "I'm restarting and could not finish this answer; please ask again in a minute."
BUSY = "I'm busy with other questions right now; please try again shortly."
APOLOGY = "Sorry, something went wrong while answering. Please try again."
NOTICES = "notices"
NOTICE_INTERVAL_S = 10.0


@dataclass
class BotServices:
    """What the handlers need, built once and kept in `bot_data`."""

    answerer: Answerer
    state: StateStore
    admin: AdminService | None = None
    access: AccessPolicy | None = None
    """None: everyone may ask, without limits."""
    alert_chats: tuple[int, ...] = ()
    """Chats told when a handler fails."""
    model: ModelInfo | None = None
    """The served GGUF, for /stats (None: a remote model or a test's engine)."""


def _services(context: ContextTypes.DEFAULT_TYPE) -> BotServices:
    services: BotServices = context.bot_data[SERVICES]
    return services


def chat_key(update: Update) -> str:
    """Memory per chat, and per user inside groups."""
    chat = update.effective_chat
    user = update.effective_user
    assert chat is not None
    if chat.type == ChatType.PRIVATE or user is None:
        return f"tg:{chat.id}"
    return f"tg:{chat.id}:{user.id}"


async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/start: greet and say what the bot does."""
    if update.effective_message:
        await update.effective_message.reply_text(WELCOME)


def whoami_text(user_id: int | None, chat_id: int, private: bool) -> str:
    """/whoami's text: the ids an admin puts in RAGTUNE_ADMIN_IDS or RAGTUNE_ALLOWED_IDS."""
    if user_id is None:
        return f"This chat's id is {chat_id}."
    mine = f"Your Telegram id is {user_id}."
    return mine if private else f"{mine} This group's id is {chat_id}."


async def whoami(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/whoami: the sender's numeric id (and the group's), for the allowlist and admin list."""
    message, chat, user = update.effective_message, update.effective_chat, update.effective_user
    if message is None or chat is None:
        return
    private = chat.type == ChatType.PRIVATE
    await message.reply_text(whoami_text(user.id if user else None, chat.id, private))


def help_text(admin: bool) -> str:
    """/help's text: the user commands, and for admins their own commands too."""
    if not admin:
        return HELP
    lines = "\n".join(f"/{c.command} {c.description}" for c in ADMIN_COMMANDS)
    return f"{HELP}\n\nAs an admin you can also use:\n{lines}"


async def help_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/help: the commands (admins also get theirs)."""
    if update.effective_message:
        admin = _services(context).admin
        user = update.effective_user
        is_admin = admin is not None and admin.is_admin(user.id if user else None)
        await update.effective_message.reply_text(help_text(is_admin))


async def reset(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/reset: forget this conversation."""
    state = _services(context).state
    dropped = await asyncio.to_thread(state.reset, chat_key(update))
    if update.effective_message:
        await update.effective_message.reply_text(f"Done: I forgot {dropped // 2} exchanges.")


async def sources(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/sources: the sources behind the last answer in this chat."""
    message = update.effective_message
    answer = last_answer(update, context)
    if message is None:
        return
    if answer is None or not answer.shown_sources:
        await message.reply_text("My last answer had no sources.")
        return
    lines = [sources_html(answer.shown_sources)]
    for source in answer.shown_sources:
        chunk = source.hit.chunk
        lines.append(f"\n[{source.number}] {html.escape(chunk.text[:300])}")
    for part in split_message("\n".join(lines)):
        await message.reply_text(part, parse_mode=ParseMode.HTML)


def remember_answer(update: Update, context: ContextTypes.DEFAULT_TYPE, answer: Answer) -> None:
    """Keep the answer for /sources, scoped like memory: per chat, and per user in groups."""
    if context.chat_data is not None:
        context.chat_data.setdefault(LAST_ANSWER, {})[chat_key(update)] = answer


def last_answer(update: Update, context: ContextTypes.DEFAULT_TYPE) -> Answer | None:
    """The answer this user last got in this chat (never another group member's)."""
    answers: dict[str, Answer] = (context.chat_data or {}).get(LAST_ANSWER, {})
    return answers.get(chat_key(update))


async def ask_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/ask <question>: ask explicitly (the way to ask in groups)."""
    question = " ".join(context.args or []).strip()
    if update.effective_message is None:
        return
    if not question:
        await update.effective_message.reply_text("Usage: /ask <question>")
        return
    await answer_question(update, context, question)


async def text_message(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
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


def _active_jobs(context: ContextTypes.DEFAULT_TYPE) -> dict[int, Job | None]:
    """user id -> the job answering them (None while their question is being retrieved)."""
    jobs: dict[int, Job | None] = context.bot_data.setdefault(ACTIVE_JOBS, {})
    return jobs


def cancel_for_shutdown(application: Application) -> int:  # type: ignore[type-arg]
    """Stop every answer being written (each user is told to ask again); return how many."""
    application.bot_data[STOPPING] = True
    jobs = [job for job in application.bot_data.get(ACTIVE_JOBS, {}).values() if job is not None]
    for job in jobs:
        job.cancel()
    return len(jobs)


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


async def _notify(
    context: ContextTypes.DEFAULT_TYPE, message: Message, user_id: int, notice: str
) -> None:
    throttle: NoticeThrottle = context.bot_data.setdefault(NOTICES, NoticeThrottle())
    if throttle.due(user_id, notice):
        await message.reply_text(notice)


async def cancel(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/cancel: stop the answer being generated for this user."""
    user = update.effective_user
    job = _active_jobs(context).get(user.id) if user else None
    if update.effective_message is None:
        return
    if job is None:
        await update.effective_message.reply_text("There is nothing to cancel.")
        return
    job.cancel()


async def answer_question(
    update: Update, context: ContextTypes.DEFAULT_TYPE, question: str
) -> None:
    """One job per user: retrieve, stream (drafts in private chats), send with sources."""
    message = update.effective_message
    user = update.effective_user
    assert message is not None
    question = sendable(question).strip()  # control characters help no search and no model
    if not question:
        await message.reply_text("Please ask your question in words.")
        return
    active = _active_jobs(context)
    user_id = user.id if user else message.chat_id
    # Cheap refusals first: under a flood most messages end here, before any database read.
    if user_id in active:
        await _notify(context, message, user_id, ONE_AT_A_TIME)
        return
    services = _services(context)
    if len(active) >= services.answerer.worker.capacity:
        # Every place is taken by questions being checked, retrieved or answered: say so at
        # once rather than spend a search on a question the queue could not take.
        await _notify(context, message, user_id, BUSY)
        return
    active[user_id] = None  # one question at a time per user, from the access check on
    try:
        if services.access is not None:
            refusal = await asyncio.to_thread(services.access.refusal, user_id, message.chat_id)
            if refusal is not None:
                await message.reply_text(refusal)
                return
        await _answer(update, context, question, active, user_id)
    finally:
        active.pop(user_id, None)


async def _answer(
    update: Update,
    context: ContextTypes.DEFAULT_TYPE,
    question: str,
    active: dict[int, Job | None],
    user_id: int,
) -> None:
    message = update.effective_message
    chat = update.effective_chat
    assert message is not None and chat is not None
    answerer = _services(context).answerer
    key = chat_key(update)
    # "typing…" goes out while the question is embedded and searched, not before.
    typing = asyncio.create_task(_show_typing(context, chat.id))
    # Embedding and SQLite work run in a thread: the event loop is never blocked.
    prepared = await asyncio.to_thread(answerer.prepare, question, mode=Mode.RAG, chat_key=key)
    await typing
    if context.bot_data.get(STOPPING):
        await message.reply_text(RESTARTING)
        return
    try:
        job = answerer.start(prepared)
    except QueueFullError:  # taken by other work (an /eval); not counted against the user
        await _notify(context, message, user_id, BUSY)
        return
    if job is not None:
        active[user_id] = job  # from here on /cancel and a shutdown can stop it
    access = _services(context).access
    try:
        if access is not None:
            await asyncio.to_thread(access.record, user_id, chat.id)
        await _deliver(update, context, prepared, job)
    finally:
        if job is not None:  # whatever failed on the way, the model's place is given back
            job.cancel()


async def _deliver(
    update: Update, context: ContextTypes.DEFAULT_TYPE, prepared: PreparedAnswer, job: Job | None
) -> None:
    """Say where the job is in the queue, stream it, send the final answer with its sources."""
    message = update.effective_message
    chat = update.effective_chat
    assert message is not None and chat is not None
    answerer = _services(context).answerer
    if job is not None and job.position > 0:
        await message.reply_text(f"You are number {job.position} in the queue.")
    completion = None
    live = LiveMessage(context, message, private=chat.type == ChatType.PRIVATE)
    if job is not None:
        streamed = ""
        async for piece in job.apieces():
            streamed += piece
            await live.progress(streamed)
        completion = await asyncio.to_thread(job.result)
        if completion.finish_reason == "cancelled":
            await message.reply_text(RESTARTING if context.bot_data.get(STOPPING) else STOPPED)
            return
    answer = await asyncio.to_thread(
        answerer.finish, prepared, completion, chat_key=chat_key(update)
    )
    remember_answer(update, context, answer)
    await live.finish(answer_html(answer))


async def _show_typing(context: ContextTypes.DEFAULT_TYPE, chat_id: int) -> None:
    """Best effort: a failed "typing…" must not cost the user their answer."""
    try:
        await context.bot.send_chat_action(chat_id, ChatAction.TYPING)
    except TelegramError as exc:
        log.warning("typing action failed in chat %s: %s", chat_id, type(exc).__name__)


class LiveMessage:
    """Shows an answer while it is written: drafts in private chats, throttled edits in groups."""

    def __init__(self, context: ContextTypes.DEFAULT_TYPE, question: Message, *, private: bool):
        self.bot = context.bot
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
                await _send(self.placeholder.edit_text, part)
            else:
                await _send(self.question.reply_text, part)


async def _send(send: Callable[..., Awaitable[object]], part: str) -> None:
    try:
        await send(part, parse_mode=ParseMode.HTML)
    except BadRequest as exc:  # Telegram rejected the entities: send the same text plain
        if "not modified" in exc.message:
            return
        log.warning("HTML rejected (%s); sending plain text", exc.message)
        await send(part, parse_mode=None)


async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Log with context (ids, never message text or the token), tell the admins, apologise."""
    error = context.error
    where = describe_update(update)
    log.error("handling %s failed", where, exc_info=error)
    services: BotServices | None = context.bot_data.get(SERVICES)
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


async def alert_degraded(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """After every update: tell the admins once per interval if the state could not be
    written (a full disk), while the bot goes on answering without it."""
    services: BotServices | None = context.bot_data.get(SERVICES)
    alert = services.state.alert_due() if services else None
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


def add_handlers(application: Application) -> None:  # type: ignore[type-arg]
    """Register every handler on the application."""
    application.add_handler(CommandHandler("start", start))
    application.add_handler(CommandHandler("help", help_command))
    application.add_handler(CommandHandler("whoami", whoami))
    application.add_handler(CommandHandler("reset", reset))
    application.add_handler(CommandHandler("sources", sources))
    application.add_handler(CommandHandler("cancel", cancel))
    application.add_handler(CommandHandler("ask", ask_command))
    from bot.tg.admin_handlers import add_admin_handlers

    add_admin_handlers(application)
    application.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, text_message))
    # Group 1 runs after the handler above, for every update.
    application.add_handler(TypeHandler(object, alert_degraded), group=1)
    application.add_error_handler(on_error)
