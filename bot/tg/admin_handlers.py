"""Admin handlers: /add, file uploads, /docs, /forget (with a confirm button), /stats.

The admin check is in bot.core.admin; a refusal is audited and answered in one sentence.
"""

from __future__ import annotations

import asyncio
import html
from pathlib import PurePath

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ParseMode
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bot.core.admin import AdminService, NotAdminError
from bot.tg.handlers import SERVICES, BotServices
from knowledge.errors import KnowledgeError
from knowledge.ingest import Outcome
from knowledge.parsers import SUPPORTED_SUFFIXES


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
    """/add <text>, or /add as a reply to a message: that text becomes a document."""
    message = update.effective_message
    if message is None:
        return
    replied = message.reply_to_message
    text = " ".join(context.args or []).strip() or (replied.text or "" if replied else "")
    admin = _admin(context)
    try:
        if not text:
            admin.check(_user_id(update), "add")
            await message.reply_text("Usage: /add <text>, or reply /add to a message.")
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


async def upload(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A document sent by an admin: size checked before download, then parsed and added."""
    message = update.effective_message
    document = message.document if message else None
    if message is None or document is None:
        return
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
    data = bytes(await (await context.bot.get_file(document.file_id)).download_as_bytearray())
    await status.edit_text("Reading and indexing…")
    try:
        report = await asyncio.to_thread(
            admin.add_file, _user_id(update), data,
            name=f"upload{suffix}", key=f"tg-file:{document.file_unique_id}",
        )  # fmt: skip
    except (NotAdminError, KnowledgeError) as exc:
        await status.edit_text(f"Nothing was added: {exc}")
        return
    counts = {o: report.count(o) for o in Outcome}
    await status.edit_text(
        f"Done: {report.chunks_embedded} chunks added, "
        f"{sum(r.chunks_reused for r in report.results)} unchanged, "
        f"{sum(r.chunks_removed for r in report.results)} replaced "
        f"({counts[Outcome.ADDED]} new, {counts[Outcome.REPLACED]} updated, "
        f"{counts[Outcome.UNCHANGED]} unchanged documents)."
    )


async def docs(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/docs [page]: the documents, ten a page."""
    message = update.effective_message
    if message is None:
        return
    wanted = int(context.args[0]) if context.args and context.args[0].isdigit() else 1
    try:
        page = await asyncio.to_thread(_admin(context).documents, _user_id(update), wanted)
    except NotAdminError as exc:
        await _refuse(update, exc)
        return
    lines = [f"<b>Documents</b> (page {page.number}/{page.pages})"]
    lines += [
        f"{d.id}. {html.escape(d.title[:60])} — {d.chunks} chunks" for d in page.documents
    ] or ["(none yet)"]
    await message.reply_text("\n".join(lines), parse_mode=ParseMode.HTML)


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
    buttons = InlineKeyboardMarkup(
        [[InlineKeyboardButton("Forget it", callback_data=f"forget:{found.id}"),
          InlineKeyboardButton("Keep it", callback_data="forget:cancel")]]
    )  # fmt: skip
    await message.reply_text(
        f"Forget document {found.id} ({found.title[:60]}, {found.chunks} chunks)?",
        reply_markup=buttons,
    )


async def forget_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """The confirm button of /forget (checked again: a button press is no proof of anything)."""
    query = update.callback_query
    if query is None or query.data is None:
        return
    await query.answer()
    choice = query.data.removeprefix("forget:")
    if choice == "cancel":
        await query.edit_message_text("Kept.")
        return
    try:
        await asyncio.to_thread(_admin(context).forget, query.from_user.id, int(choice))
    except (NotAdminError, KnowledgeError) as exc:
        await query.edit_message_text(str(exc))
        return
    await query.edit_message_text(f"Forgot document {choice}.")


async def stats(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/stats: documents, chunks, model, queue."""
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
    await message.reply_text(
        f"Documents: {numbers.documents}\nChunks: {numbers.chunks}\n"
        f"Embedder: {model}\nChat model: {worker.engine.model_id}\n"
        f"Queue: {worker.waiting} waiting or running"
    )


def add_admin_handlers(application: Application) -> None:  # type: ignore[type-arg]
    """Register the admin handlers (before the catch-all text handler)."""
    application.add_handler(CommandHandler("add", add))
    application.add_handler(CommandHandler("docs", docs))
    application.add_handler(CommandHandler("forget", forget))
    application.add_handler(CommandHandler("stats", stats))
    application.add_handler(CallbackQueryHandler(forget_button, pattern=r"^forget:"))
    application.add_handler(MessageHandler(filters.Document.ALL, upload))
