"""Admin handlers: /add, uploads, /docs (pages), /forget (confirmed), /reindex, /stats.

The admin check is in bot.core.admin; a refusal is audited and answered in one sentence.
"""

from __future__ import annotations

import asyncio
import html
import logging
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path, PurePath
from typing import Any, TypeVar

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
from telegram.constants import ChatType, ParseMode
from telegram.error import TelegramError
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bot.core.access import start_of_day
from bot.core.admin import AdminService, NotAdminError, Page, document_tag
from bot.core.compare import plot, table
from bot.llm.engine import ModelError
from bot.tg.handlers import SERVICES, BotServices
from knowledge.connection import is_storage_failure
from knowledge.errors import KnowledgeError
from knowledge.ingest import IngestReport, Outcome
from knowledge.parsers import SUPPORTED_SUFFIXES

log = logging.getLogger(__name__)
PROGRESS_INTERVAL_S = 3.0
T = TypeVar("T")


def _admin(context: ContextTypes.DEFAULT_TYPE) -> AdminService:
    services: BotServices = context.bot_data[SERVICES]
    assert services.admin is not None, "admin services are built with the bot"
    return services.admin


def _user_id(update: Update) -> int | None:
    return update.effective_user.id if update.effective_user else None


async def _refuse(update: Update, error: Exception) -> None:
    if update.effective_message is not None:
        await update.effective_message.reply_text(str(error))


async def add(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/add <text>, or /add as a reply to a message (its text) or to a file (its contents)."""
    message = update.effective_message
    if message is None:
        return
    replied = message.reply_to_message
    if (
        replied is not None
        and replied.document is not None
        and (not context.args or context.args == [REPLACE])
    ):
        await _add_file(update, context, replied, replace=context.args == [REPLACE])
        return
    text = " ".join(context.args or []).strip() or (replied.text or "" if replied else "")
    admin = _admin(context)
    try:
        if not text:
            admin.check(_user_id(update), "add")
            await message.reply_text(
                "Usage: /add <text>, or reply /add to a message or a file "
                "(/add replace to let a file replace documents it did not make)."
            )
            return
        source_id = replied.message_id if replied and not context.args else message.message_id
        key = f"tg:{message.chat_id}:{source_id}"
        title = text.split("\n", 1)[0][:60]
        result = await asyncio.to_thread(
            admin.add_text, _user_id(update), text, title=title, key=key
        )
    except (NotAdminError, KnowledgeError) as exc:
        await _refuse(update, exc)
        return
    await message.reply_text(
        f"Added document {result.document_id}: {result.chunks_embedded} chunks added."
    )


REPLACE = "replace"
_CAPTION_COMMAND = re.compile(r"^/add(?:@\w+)?(?:\s+(\S+))?\s*$", re.IGNORECASE)


async def upload(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A file sent to the bot: in private, an admin's file is added; in groups, only a file
    sent with the caption /add (or answered with /add), so that sharing a file in a group never
    makes it searchable by everyone."""
    message = update.effective_message
    chat = update.effective_chat
    if message is None or message.document is None or chat is None:
        return
    caption = _CAPTION_COMMAND.match(message.caption or "")
    if chat.type != ChatType.PRIVATE and caption is None:
        return  # a file shared among people, not given to the bot
    replace = caption is not None and (caption.group(1) or "").lower() == REPLACE
    await _add_file(update, context, message, replace=replace)


async def _add_file(
    update: Update, context: ContextTypes.DEFAULT_TYPE, carrier: Message, *, replace: bool
) -> None:
    """Check, download and add the file `carrier` holds; say what was added."""
    message = update.effective_message
    document = carrier.document
    assert message is not None and document is not None
    admin = _admin(context)
    # The sender's file name only picks the parser; what is stored is named by Telegram's id.
    suffix = PurePath(document.file_name or "").suffix.lower()
    try:
        admin.check(_user_id(update), "upload-request", suffix)
    except NotAdminError as exc:
        await _refuse(update, exc)
        return
    if suffix not in SUPPORTED_SUFFIXES:
        await message.reply_text(
            f"I can read {', '.join(SUPPORTED_SUFFIXES)} files, not {suffix or 'this'}."
        )
        return
    if document.file_size is not None and document.file_size > admin.max_bytes:
        await message.reply_text(
            f"That file is {document.file_size / 1e6:.1f} MB, over the "
            f"{admin.max_bytes / 1e6:.1f} MB limit; nothing was added."
        )
        return
    status = await message.reply_text("Downloading…")
    try:
        data = bytes(await (await context.bot.get_file(document.file_id)).download_as_bytearray())
    except TelegramError as exc:
        # PTB calls a 404 on a download "InvalidToken"; it is the file that is gone.
        log.warning("download of an upload failed: %s: %s", type(exc).__name__, exc)
        await status.edit_text(
            "I could not download that file from Telegram (it may have expired); nothing was "
            "added. Please send it again."
        )
        return
    await status.edit_text("Reading and indexing…")
    try:
        report = await asyncio.to_thread(
            admin.add_file, _user_id(update), data, name=f"upload{suffix}",
            key=f"tg-file:{document.file_unique_id}", replace=replace,
            label=document.file_name or "",
        )  # fmt: skip
    except (NotAdminError, KnowledgeError) as exc:
        await status.edit_text(f"Nothing was added: {exc}")
        return
    except Exception as exc:
        if not is_storage_failure(exc):
            raise
        log.warning("upload not written: %s", exc)
        await status.edit_text(
            f"The knowledge base cannot be written ({exc}): the file was not added, or not all "
            "of it; free some space and send it again."
        )
        return
    await status.edit_text(upload_summary(report))


def upload_summary(report: IngestReport, listed: int = 5) -> str:
    """What an upload added, replaced, kept and skipped, naming the documents."""
    counts = {o: report.count(o) for o in Outcome}
    lines = [
        f"Done: {report.chunks_embedded} chunks added, "
        f"{sum(r.chunks_reused for r in report.results)} unchanged, "
        f"{sum(r.chunks_removed for r in report.results)} replaced "
        f"({counts[Outcome.ADDED]} new, {counts[Outcome.REPLACED]} updated, "
        f"{counts[Outcome.UNCHANGED]} unchanged documents)."
    ]
    changed = [r for r in report.results if r.outcome in (Outcome.ADDED, Outcome.REPLACED)]
    lines += [
        f"{r.outcome.value.capitalize()}: {r.document_id}. {r.title[:60]}" for r in changed[:listed]
    ]
    if len(changed) > listed:
        lines.append(f"… and {len(changed) - listed} more (see /docs).")
    for failure in report.failures[:listed]:
        lines.append(f"Skipped: {failure.error}")
    if len(report.failures) > listed:
        lines.append(f"… and {len(report.failures) - listed} more skipped.")
    return "\n".join(lines)


def _docs_page(page: Page) -> tuple[str, InlineKeyboardMarkup | None]:
    """The text of one /docs page and its ‹ › buttons."""
    lines = [f"<b>Documents</b> (page {page.number}/{page.pages})"]
    lines += [
        f"{d.id}. {html.escape(d.title[:60])} — {d.chunks} chunks" for d in page.documents
    ] or ["(none yet)"]
    buttons = []
    if page.number > 1:
        buttons.append(InlineKeyboardButton("‹ Previous", callback_data=f"docs:{page.number - 1}"))
    if page.number < page.pages:
        buttons.append(InlineKeyboardButton("Next ›", callback_data=f"docs:{page.number + 1}"))
    return "\n".join(lines), InlineKeyboardMarkup([buttons]) if buttons else None


async def docs(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/docs [page]: the documents, ten a page, with buttons to turn pages."""
    message = update.effective_message
    if message is None:
        return
    wanted = context.args[0] if context.args else "1"
    try:
        page = await asyncio.to_thread(_admin(context).documents, _user_id(update), wanted)
    except NotAdminError as exc:
        await _refuse(update, exc)
        return
    text, buttons = _docs_page(page)
    await message.reply_text(text, parse_mode=ParseMode.HTML, reply_markup=buttons)


async def docs_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A ‹ › button under /docs: show that page in the same message (admins only)."""
    query = update.callback_query
    if query is None or query.data is None:
        return
    try:
        page = await asyncio.to_thread(
            _admin(context).documents, query.from_user.id, query.data.removeprefix("docs:")
        )
    except NotAdminError as exc:
        # An alert to the presser only: the admin's message and its buttons stay as they were.
        await query.answer(str(exc), show_alert=True)
        return
    await query.answer()
    text, buttons = _docs_page(page)
    await query.edit_message_text(text, parse_mode=ParseMode.HTML, reply_markup=buttons)


async def forget(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/forget <id>: asks for confirmation with a button."""
    message = update.effective_message
    if message is None:
        return
    if not context.args:
        await message.reply_text("Usage: /forget <document id> (see /docs).")
        return
    try:
        found = await asyncio.to_thread(_admin(context).find, _user_id(update), context.args[0])
    except (NotAdminError, KnowledgeError) as exc:
        await _refuse(update, exc)
        return
    confirm = f"forget:{found.id}:{document_tag(found)}"
    buttons = InlineKeyboardMarkup(
        [[InlineKeyboardButton("Forget it", callback_data=confirm),
          InlineKeyboardButton("Keep it", callback_data="forget:cancel")]]
    )  # fmt: skip
    await message.reply_text(
        f"Forget document {found.id} ({found.title[:60]}, {found.chunks} chunks)?",
        reply_markup=buttons,
    )


async def forget_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """The confirm button of /forget (checked again: a button press is no proof of anything;
    its data is parsed only after the admin check, so a forged one is refused and audited)."""
    query = update.callback_query
    if query is None or query.data is None:
        return
    choice = query.data.removeprefix("forget:")
    admin = _admin(context)
    try:
        if choice == "cancel":
            admin.check(query.from_user.id, "forget-cancelled")
        else:
            found = await asyncio.to_thread(admin.forget, query.from_user.id, choice)
    except NotAdminError as exc:
        # An alert to the presser only: the admin's message and its buttons stay as they were.
        await query.answer(str(exc), show_alert=True)
        return
    except KnowledgeError as exc:
        await query.answer()
        await query.edit_message_text(str(exc))
        return
    await query.answer()
    await query.edit_message_text("Kept." if choice == "cancel" else f"Forgot document {found.id}.")


async def with_status(
    message: Message, work: Callable[[], T], describe: Callable[[], str]
) -> tuple[asyncio.Task[T], Message | None]:
    """Run `work` in a thread; while it runs, show `describe()` in one status message, sent at
    the first report and edited at most every 3 s, only when it changed (per-chat limits)."""
    task = asyncio.create_task(asyncio.to_thread(work))
    status: Message | None = None
    shown = ""
    while not task.done():
        await asyncio.wait({task}, timeout=PROGRESS_INTERVAL_S)
        text = describe()
        if task.done() or text == shown:
            continue
        if status is None:
            status = await message.reply_text(text)
        else:
            await status.edit_text(text)
        shown = text
    return task, status


async def reply_or_edit(
    message: Message, status: Message | None, text: str, **options: Any
) -> None:
    """The final word: edit the status message if there was one, else reply."""
    if status is None:
        await message.reply_text(text, **options)
    else:
        await status.edit_text(text, **options)


async def reindex(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/reindex: re-embed every chunk; a long run shows progress in one status message."""
    message = update.effective_message
    if message is None:
        return
    latest = {"done": 0, "total": 0}  # written by the reindex thread, read here

    def progress(done: int, total: int) -> None:
        latest.update(done=done, total=total)

    work, status = await with_status(
        message,
        lambda: _admin(context).reindex(_user_id(update), progress),
        lambda: f"Reindexing: {latest['done']}/{latest['total']} chunks…",
    )
    try:
        final = f"Reindexed {work.result()} chunks."
    except NotAdminError as exc:
        final = str(exc)
    except KnowledgeError as exc:
        final = f"Reindex stopped: {exc}"
    await reply_or_edit(message, status, final)


async def stats(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/stats: documents, chunks, models, adapter, queue, users today."""
    message = update.effective_message
    if message is None:
        return
    try:
        numbers = await asyncio.to_thread(_admin(context).stats, _user_id(update))
    except NotAdminError as exc:
        await _refuse(update, exc)
        return
    services: BotServices = context.bot_data[SERVICES]
    worker = services.answerer.worker
    model = numbers.model.model_id if numbers.model else "none yet"
    users = await asyncio.to_thread(services.state.users_since, start_of_day(time.time()))
    switcher = services.admin.adapters if services.admin else None
    active = (switcher.active if switcher else None) or "none"
    chat_model = services.model.summary() if services.model else worker.engine.model_id
    await message.reply_text(
        f"Documents: {numbers.documents}\nChunks: {numbers.chunks}\n"
        f"Embedder: {model}\nChat model: {chat_model}\nAdapter: {active}\n"
        f"Queue: {worker.waiting} waiting or running\nUsers today: {users}"
    )


async def adapter(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/adapter (list, active marked), /adapter use NAME, /adapter off."""
    message = update.effective_message
    if message is None:
        return
    admin = _admin(context)
    args = context.args or []
    user = _user_id(update)
    try:
        if not args:
            adapters, active = await asyncio.to_thread(admin.list_adapters, user)
            lines = ["Adapters (/adapter use NAME, /adapter off):"]
            lines += [
                f"{'▶' if a.name == active else '•'} {a.name} — rank {a.manifest.rank}, "
                f"{a.manifest.dataset_examples} examples, {a.manifest.created[:10]}"
                for a in adapters
            ] or ["(none yet: `ragtune tune train` makes one)"]
            lines.append(f"{'▶' if active is None else '•'} off — the base model alone")
            await message.reply_text("\n".join(lines))
            return
        if args[0] == "off" and len(args) == 1:
            await asyncio.to_thread(admin.use_adapter, user, None)
            await message.reply_text("Adapter off: answering with the base model.")
            return
        if args[0] == "use" and len(args) == 2:
            started = time.perf_counter()
            await asyncio.to_thread(admin.use_adapter, user, args[1])
            took = (time.perf_counter() - started) * 1000
            await message.reply_text(f"Now answering with adapter {args[1]} ({took:.0f} ms).")
            return
        admin.check(user, "adapter")
        await message.reply_text("Usage: /adapter, /adapter use NAME or /adapter off.")
    except (NotAdminError, ModelError) as exc:
        await _refuse(update, exc)


# The Bot API takes uploads up to 50 MB; a bigger backup stays on disk and is named instead.
MAX_UPLOAD_BYTES = 50_000_000


async def backup_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/backup: a checked copy of the knowledge base, sent as a file when it fits."""
    message = update.effective_message
    if message is None:
        return
    try:
        info = await asyncio.to_thread(_admin(context).backup, _user_id(update))
    except (NotAdminError, KnowledgeError) as exc:
        await _refuse(update, exc)
        return
    summary = (
        f"Backup of {info.documents} documents, {info.chunks} chunks "
        f"({info.bytes / 1e6:.1f} MB, integrity ok), saved as {info.path.name}."
    )
    if info.bytes > MAX_UPLOAD_BYTES:
        await message.reply_text(f"{summary} Too big to send here; it is at {info.path}.")
        return
    await message.reply_document(info.path.read_bytes(), filename=info.path.name, caption=summary)


async def eval_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/eval [NAME]: base, fine-tuned, RAG and RAG + fine-tuned on the configured questions."""
    message = update.effective_message
    if message is None:
        return
    name = context.args[0] if context.args else None
    answered = {"count": 0}  # written by the comparison thread, read here

    def progress() -> None:
        answered["count"] += 1

    work, status = await with_status(
        message,
        lambda: _admin(context).compare(_user_id(update), name, progress),
        lambda: f"Comparing: {answered['count']} answers so far…",
    )
    try:
        done = work.result()
    except (NotAdminError, ModelError) as exc:
        await reply_or_edit(message, status, str(exc))
        return
    # The chart goes first, so the finished table is the last thing to arrive.
    with tempfile.TemporaryDirectory() as scratch:
        chart = Path(scratch) / "compare.png"
        await asyncio.to_thread(plot, done.results, chart, f"adapter {done.adapter}")
        await message.reply_photo(chart.read_bytes(), caption="EM, F1 and answer-contains")
    report = (
        f"<b>Adapter {html.escape(done.adapter)}</b>, {done.questions} questions per mode\n"
        f"<pre>{html.escape(table(done.results, done.general))}</pre>"
    )
    await reply_or_edit(message, status, report, parse_mode=ParseMode.HTML)


def add_admin_handlers(application: Application) -> None:  # type: ignore[type-arg]
    """Register the admin handlers (before the catch-all text handler)."""
    application.add_handler(CommandHandler("add", add))
    application.add_handler(CommandHandler("docs", docs))
    application.add_handler(CommandHandler("forget", forget))
    application.add_handler(CommandHandler("reindex", reindex))
    application.add_handler(CommandHandler("adapter", adapter))
    application.add_handler(CommandHandler("eval", eval_command))
    application.add_handler(CommandHandler("backup", backup_command))
    application.add_handler(CommandHandler("stats", stats))
    application.add_handler(CallbackQueryHandler(docs_button, pattern=r"^docs:"))
    application.add_handler(CallbackQueryHandler(forget_button, pattern=r"^forget:"))
    application.add_handler(MessageHandler(filters.Document.ALL, upload))
