"""Admin handlers: /add, uploads, /docs (pages), /forget (confirmed), /reindex, /stats,
/adapter, /backup, /eval.

Each is a few lines inside `admin_command` (or `admin_button`), which does what they share:
find the message, run AdminService's methods in a thread (the admin check and its audit write
never block the event loop) and answer any RagtuneError with its one sentence. The admin check
itself is in bot.core.admin.
"""

from __future__ import annotations

import asyncio
import functools
import html
import logging
import re
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from telegram import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
from telegram.constants import ChatType, ParseMode
from telegram.error import TelegramError

from bot.core.admin import (
    AdminService,
    Page,
    document_tag,
    names_a_page,
    page_summary,
    upload_summary,
)
from bot.core.compare import plot, table
from bot.core.errors import KnowledgeWriteError, NotAdminError, RagtuneError
from bot.tg.context import BotContext

log = logging.getLogger(__name__)
PROGRESS_INTERVAL_S = 3.0
T = TypeVar("T")
P = ParamSpec("P")
Handler = Callable[[Update, BotContext], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class AdminRequest:
    """An admin command as the handlers see it: who sent it, where to answer, the service."""

    update: Update
    context: BotContext
    message: Message
    admin: AdminService

    @property
    def user_id(self) -> int | None:
        """The sender's id (None: a channel post)."""
        user = self.update.effective_user
        return user.id if user else None

    @property
    def chat_id(self) -> int:
        """The chat the command came from (its collection and adapter are the ones acted on)."""
        return self.message.chat_id

    @property
    def in_group(self) -> bool:
        """True in a group or channel, False in a private chat."""
        return self.message.chat.type != ChatType.PRIVATE

    @property
    def args(self) -> list[str]:
        """The words after the command."""
        return list(self.context.args or [])

    async def call(self, method: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run an AdminService method in a thread (it checks, audits and touches SQLite)."""
        return await asyncio.to_thread(method, *args, **kwargs)

    async def reply(self, text: str, **options: Any) -> Message:
        """Answer the command."""
        return await self.message.reply_text(text, **options)


def admin_command(handler: Callable[[AdminRequest], Awaitable[None]]) -> Handler:
    """The prologue every admin command shares; a RagtuneError is answered in its sentence."""

    @functools.wraps(handler)
    async def run(update: Update, context: BotContext) -> None:
        message = update.effective_message
        if message is None:
            return
        try:
            await handler(AdminRequest(update, context, message, context.services.admin))
        except RagtuneError as exc:
            await message.reply_text(str(exc))

    return run


def admin_button(handler: Callable[[CallbackQuery, str, AdminService], Awaitable[None]]) -> Handler:
    """The prologue of an admin button: a refusal is an alert to the presser only (the admin's
    message and its buttons stay as they were); any other RagtuneError replaces the message."""

    @functools.wraps(handler)
    async def run(update: Update, context: BotContext) -> None:
        query = update.callback_query
        if query is None or query.data is None:
            return
        if query.message is None:  # no chat to act for (an inline message): never guess one
            await query.answer("This button no longer works; send the command again.",
                               show_alert=True)  # fmt: skip
            return
        try:
            await handler(query, query.data, context.services.admin)
        except NotAdminError as exc:
            await query.answer(str(exc), show_alert=True)
        except RagtuneError as exc:
            await query.answer()
            await show(query, str(exc))

    return run


REPLACE = "replace"
_CAPTION_COMMAND = re.compile(r"^/add(?:@\w+)?(?:\s+(\S+))?\s*$", re.IGNORECASE)


@admin_command
async def add(request: AdminRequest) -> None:
    """/add <text>, or /add as a reply to a message (its text) or to a file (its contents)."""
    message, args = request.message, request.args
    replied = message.reply_to_message
    if replied is not None and replied.document is not None and args in ([], [REPLACE]):
        await _add_file(request, replied, replace=args == [REPLACE])
        return
    if len(args) == 1 and names_a_page(args[0]):
        await _add_url(request, args[0])
        return
    text = " ".join(args).strip() or (replied.text or "" if replied else "")
    if not text:
        await request.call(request.admin.check, request.user_id, "add")
        await request.reply(
            "Usage: /add <text>, or reply /add to a message or a file "
            "(/add replace to let a file replace documents it did not make)."
        )
        return
    source_id = replied.message_id if replied and not args else message.message_id
    result = await request.call(
        request.admin.add_text, request.user_id, text,
        title=text.split("\n", 1)[0][:60], key=f"tg:{message.chat_id}:{source_id}",
        chat_id=request.chat_id,
    )  # fmt: skip
    await request.reply(
        f"Added document {result.document_id}: {result.chunks_embedded} chunks added."
    )


async def _add_url(request: AdminRequest, url: str) -> None:
    """/add URL: fetch the page and add its main text; say what happened in one message (the
    admin check comes first, so a non-admin's URL is never fetched; the fetch itself runs on
    threads of its own, so a slow page never holds anyone's question)."""
    fetching = await request.call(
        request.admin.add_url, request.user_id, url, chat_id=request.chat_id
    )
    await request.reply(page_summary(await asyncio.wrap_future(fetching)))


@admin_command
async def upload(request: AdminRequest) -> None:
    """A file sent to the bot: in private, an admin's file is added; in groups, only a file
    sent with the caption /add (or answered with /add), so that sharing a file in a group never
    makes it searchable by everyone."""
    message, chat = request.message, request.update.effective_chat
    if message.document is None or chat is None:
        return
    caption = _CAPTION_COMMAND.match(message.caption or "")
    if chat.type != ChatType.PRIVATE and caption is None:
        return  # a file shared among people, not given to the bot
    replace = caption is not None and (caption.group(1) or "").lower() == REPLACE
    await _add_file(request, message, replace=replace)


async def _add_file(request: AdminRequest, carrier: Message, *, replace: bool) -> None:
    """Check, download and add the file `carrier` holds; say what was added."""
    document = carrier.document
    assert document is not None
    name = document.file_name or ""
    await request.call(
        request.admin.check_upload, request.user_id, name, document.file_size,
        chat_id=request.chat_id,
    )  # fmt: skip
    status = await request.reply("Downloading…")
    try:
        file = await request.context.bot.get_file(document.file_id)
        data = bytes(await file.download_as_bytearray())
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
        # The sender's file name only picks the parser and labels the source; what is stored
        # is named by Telegram's id.
        report = await request.call(
            request.admin.add_file, request.user_id, data,
            name=f"upload{Path(name).suffix.lower()}", key=f"tg-file:{document.file_unique_id}",
            replace=replace, label=name, chat_id=request.chat_id,
        )  # fmt: skip
    except KnowledgeWriteError as exc:
        log.warning("upload not written: %s", exc)
        await status.edit_text(str(exc))
        return
    except RagtuneError as exc:
        await status.edit_text(f"Nothing was added: {exc}")
        return
    await status.edit_text(upload_summary(report))


def _docs_page(page: Page) -> tuple[str, InlineKeyboardMarkup | None]:
    """The text of one /docs page and its ‹ › buttons."""
    lines = [
        f"<b>Documents of {html.escape(page.collection)}</b> (page {page.number}/{page.pages})"
    ]
    lines += [
        f"{d.id}. {html.escape(d.title[:60])} — {d.chunks} chunks" for d in page.documents
    ] or ["(none yet)"]
    buttons = []
    if page.number > 1:
        buttons.append(InlineKeyboardButton("‹ Previous", callback_data=f"docs:{page.number - 1}"))
    if page.number < page.pages:
        buttons.append(InlineKeyboardButton("Next ›", callback_data=f"docs:{page.number + 1}"))
    return "\n".join(lines), InlineKeyboardMarkup([buttons]) if buttons else None


@admin_command
async def docs(request: AdminRequest) -> None:
    """/docs [page]: the documents, ten a page, with buttons to turn pages."""
    wanted = request.args[0] if request.args else "1"
    page = await request.call(
        request.admin.documents, request.user_id, wanted, chat_id=request.chat_id
    )
    text, buttons = _docs_page(page)
    await request.reply(text, parse_mode=ParseMode.HTML, reply_markup=buttons)


@admin_button
async def docs_button(query: CallbackQuery, data: str, admin: AdminService) -> None:
    """A ‹ › button under /docs: show that page in the same message (admins only)."""
    page = await asyncio.to_thread(
        admin.documents, query.from_user.id, data.removeprefix("docs:"), chat_id=_chat_of(query)
    )
    await query.answer()
    text, buttons = _docs_page(page)
    await show(query, text, parse_mode=ParseMode.HTML, reply_markup=buttons)


async def show(query: CallbackQuery, text: str, **options: Any) -> None:
    """Put `text` in the message whose button was pressed; a message Telegram no longer shows
    (too old, deleted: it arrives with date 0) cannot be edited, so it goes in a new one."""
    if isinstance(query.message, Message) and query.message.is_accessible:
        await query.edit_message_text(text, **options)
    elif query.message is not None:
        await query.get_bot().send_message(query.message.chat.id, text, **options)


def _chat_of(query: CallbackQuery) -> int:
    """The chat whose message carried the pressed button (admin_button lets only those in)."""
    if query.message is None:  # admin_button answered these already; a new caller must too
        raise RagtuneError("This button no longer works; send the command again.")
    return query.message.chat.id


@admin_command
async def forget(request: AdminRequest) -> None:
    """/forget <id>: asks for confirmation with a button."""
    if not request.args:
        await request.reply("Usage: /forget <document id> (see /docs).")
        return
    found = await request.call(
        request.admin.find, request.user_id, request.args[0], chat_id=request.chat_id
    )
    confirm = f"forget:{found.id}:{document_tag(found)}"
    buttons = InlineKeyboardMarkup(
        [[InlineKeyboardButton("Forget it", callback_data=confirm),
          InlineKeyboardButton("Keep it", callback_data="forget:cancel")]]
    )  # fmt: skip
    await request.reply(
        f"Forget document {found.id} ({found.title[:60]}, {found.chunks} chunks)?",
        reply_markup=buttons,
    )


@admin_button
async def forget_button(query: CallbackQuery, data: str, admin: AdminService) -> None:
    """The confirm button of /forget (checked again: a button press is no proof of anything;
    its data is parsed only after the admin check, so a forged one is refused and audited)."""
    choice = data.removeprefix("forget:")
    if choice == "cancel":
        await asyncio.to_thread(admin.check, query.from_user.id, "forget-cancelled")
        said = "Kept."
    else:
        found = await asyncio.to_thread(
            admin.forget, query.from_user.id, choice, chat_id=_chat_of(query)
        )
        said = f"Forgot document {found.id}."
    await query.answer()
    await show(query, said)


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


@admin_command
async def reindex(request: AdminRequest) -> None:
    """/reindex [all]: re-embed this chat's collection, or every collection; a long run shows
    progress in one status message."""
    if request.args not in ([], ["all"]):
        await request.reply(
            "Send /reindex to re-embed this chat's collection, or /reindex all for every one."
        )
        return
    everything = request.args == ["all"]
    latest = {"done": 0, "total": 0}  # written by the reindex thread, read here

    def progress(done: int, total: int) -> None:
        latest.update(done=done, total=total)

    work, status = await with_status(
        request.message,
        lambda: request.admin.reindex(
            request.user_id, progress, chat_id=request.chat_id, everything=everything
        ),
        lambda: f"Reindexing: {latest['done']}/{latest['total']} chunks…",
    )
    try:
        result = work.result()
        scope = "every collection" if result.collection is None else result.collection
        final = f"Reindexed {result.chunks} chunks ({scope})."
    except NotAdminError as exc:
        final = str(exc)
    except RagtuneError as exc:
        final = f"Reindex stopped: {exc}"
    await reply_or_edit(request.message, status, final)


@admin_command
async def stats(request: AdminRequest) -> None:
    """/stats: documents, chunks, models, adapter, queue, users today."""
    numbers = await request.call(request.admin.stats, request.user_id, chat_id=request.chat_id)
    await request.reply(
        f"Collection: {numbers.collection}\n"
        f"Documents: {numbers.documents}\nChunks: {numbers.chunks}\n"
        f"Embedder: {numbers.embedder}\nChat model: {numbers.chat_model}\n"
        f"Adapter: {numbers.adapter}\nQueue: {numbers.queue} waiting or running\n"
        f"Users today: {numbers.users_today}"
    )


@admin_command
async def adapter(request: AdminRequest) -> None:
    """/adapter (list, active marked), /adapter use NAME, /adapter off. In a group, `use NAME`
    gives that chat its own adapter, and `off` (or `default`) makes it follow the rest again."""
    admin, args, user = request.admin, request.args, request.user_id
    if request.in_group and args and args[0] in ("use", "off", "default"):
        await _bind_adapter(request, args)
        return
    if not args:
        adapters, active, own = await request.call(
            admin.list_adapters, user, chat_id=request.chat_id
        )
        lines = ["Adapters (/adapter use NAME, /adapter off):"]
        if own is not None:
            lines[0] = (
                f"This chat answers with its own adapter, {own} (/adapter default: follow "
                f"the rest); everyone else gets {active or 'the base model'}."
            )
        lines += [
            f"{'▶' if a.name == active else '•'} {a.name} — rank {a.manifest.rank}, "
            f"{a.manifest.dataset_examples} examples, {a.manifest.created[:10]}"
            for a in adapters
        ] or ["(none yet: `ragtune tune train` makes one)"]
        lines.append(f"{'▶' if active is None else '•'} off — the base model alone")
        await request.reply("\n".join(lines))
    elif args == ["off"]:
        await request.call(admin.use_adapter, user, None)
        await request.reply("Adapter off: answering with the base model.")
    elif args[0] == "use" and len(args) == 2:
        started = time.perf_counter()
        await request.call(admin.use_adapter, user, args[1])
        took = (time.perf_counter() - started) * 1000
        await request.reply(f"Now answering with adapter {args[1]} ({took:.0f} ms).")
    else:
        await request.call(admin.check, user, "adapter")
        await request.reply("Usage: /adapter, /adapter use NAME or /adapter off.")


async def _bind_adapter(request: AdminRequest, args: list[str]) -> None:
    """/adapter use NAME, off or default in a group: this chat's own adapter."""
    if args[0] == "use" and len(args) == 2:
        name: str | None = args[1]
    elif args in (["off"], ["default"]):
        name = None
    else:
        await request.call(request.admin.check, request.user_id, "adapter")
        await request.reply("Usage: /adapter, /adapter use NAME, /adapter default.")
        return
    await request.call(request.admin.bind_adapter, request.user_id, request.chat_id, name)
    if name is None:
        await request.reply("This chat now follows the adapter everyone else gets.")
    else:
        await request.reply(
            f"This chat now answers with adapter {name}; other chats are as they were."
        )


@admin_command
async def kb(request: AdminRequest) -> None:
    """/kb: the collection this chat searches; /kb new NAME, /kb use NAME (admins): bind it."""
    admin, args, user = request.admin, request.args, request.user_id
    if not args:
        current = await request.call(admin.chat_collection, request.chat_id)
        await request.reply(
            f"This chat searches the collection {current.name} ({current.documents} "
            "documents). Admins: /kb new NAME or /kb use NAME to change it, /kb list to see all."
        )
    elif args == ["list"]:
        collections = await request.call(admin.collections, user)
        await request.reply(
            "\n".join(
                ["Collections:"] + [f"• {c.name} — {c.documents} documents" for c in collections]
            )
        )
    elif len(args) == 2 and args[0] in ("new", "use"):
        method = admin.new_collection if args[0] == "new" else admin.use_collection
        chosen = await request.call(method, user, request.chat_id, args[1])
        done = "Created the collection" if args[0] == "new" else "This chat now searches"
        await request.reply(
            f"{done} {chosen.name}: questions here search it, and documents admins add here go "
            "to it."
        )
    else:
        await request.call(admin.check, user, "kb")
        await request.reply("Usage: /kb, /kb list, /kb new NAME or /kb use NAME.")


# The Bot API takes uploads up to 50 MB; a bigger backup stays on disk and is named instead.
MAX_UPLOAD_BYTES = 50_000_000


@admin_command
async def backup_command(request: AdminRequest) -> None:
    """/backup: a checked copy of the knowledge base, sent as a file when it fits."""
    info = await request.call(request.admin.backup, request.user_id)
    summary = (
        f"Backup of {info.documents} documents, {info.chunks} chunks "
        f"({info.bytes / 1e6:.1f} MB, integrity ok), saved as {info.path.name}."
    )
    if request.in_group:  # the file holds every collection: never posted to a group
        await request.reply(f"{summary} It holds every collection, so it is not sent in a group.")
        return
    if info.bytes > MAX_UPLOAD_BYTES:
        await request.reply(f"{summary} Too big to send here; it is at {info.path}.")
        return
    data = await asyncio.to_thread(info.path.read_bytes)  # up to 50 MB: not on the event loop
    await request.message.reply_document(data, filename=info.path.name, caption=summary)


@admin_command
async def eval_command(request: AdminRequest) -> None:
    """/eval [NAME]: base, fine-tuned, RAG and RAG + fine-tuned on the configured questions."""
    message = request.message
    name = request.args[0] if request.args else None
    answered = {"count": 0}  # written by the comparison thread, read here

    def progress() -> None:
        answered["count"] += 1

    work, status = await with_status(
        message,
        lambda: request.admin.compare(request.user_id, name, progress, chat_id=request.chat_id),
        lambda: f"Comparing: {answered['count']} answers so far…",
    )
    try:
        done = work.result()
    except RagtuneError as exc:
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
