"""Admin actions. The admin check lives here, not in a menu."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import PurePath

from bot.core.access import start_of_day
from bot.core.adapters import AdapterSwitcher
from bot.core.bindings import ChatBindings
from bot.core.compare import Comparison, ComparisonRunner
from bot.core.errors import KnowledgeWriteError, NotAdminError
from bot.core.page_fetches import PageFetches
from bot.llm.adapters import Adapter
from bot.llm.worker import ModelWorker
from bot.state import StateStore
from knowledge.connection import is_storage_failure
from knowledge.errors import BadDocumentError, CollectionError, DocumentNotFoundError
from knowledge.ingest import DocumentResult, Ingestor, IngestReport, Outcome
from knowledge.parsers import SUPPORTED_SUFFIXES, printable
from knowledge.reindex import reindex, reindex_collection
from knowledge.snapshot import BackupInfo
from knowledge.store import Collection, DocumentInfo, KnowledgeStore
from knowledge.web import PageError, WebSettings, fetch_page, is_web_address

UPLOAD_SOURCE = "telegram:"
"""Sources of documents made from uploaded files begin with this."""


LABEL_CHARS = 100
"""Longest file name kept as an upload's label."""


def file_label(file_name: str) -> str:
    """A sender's file name fit to show: no folders, no control characters, at most LABEL_CHARS
    (it is only displayed: the parser is chosen by the stand-in name)."""
    base = PurePath(file_name.replace("\\", "/")).name
    shown = "".join(c for c in printable(base) if c.isprintable()).strip()
    return shown if len(shown) <= LABEL_CHARS else shown[: LABEL_CHARS - 1] + "…"


def document_tag(document: DocumentInfo) -> str:
    """A short tag of the document a confirm button names (its id alone may be reused)."""
    return hashlib.sha256(document.external_id.encode("utf-8")).hexdigest()[:12]


def _made_by_an_upload(existing: DocumentInfo) -> str | None:
    """None when an upload may replace `existing`, else why not (one sentence)."""
    if existing.source.startswith(UPLOAD_SOURCE):
        return None
    origin = "from the command line" if existing.added_by == "cli" else "with /add"
    return (
        f"{existing.external_id} exists already (added {origin}) and was left as it is; send "
        "the file again with the caption /add replace to replace it."
    )


@dataclass(frozen=True)
class Reindexed:
    """What a /reindex re-embedded: how many chunks, of which collection (None: all of them)."""

    chunks: int
    collection: str | None


@dataclass(frozen=True)
class BotStats:
    """What /stats shows: the knowledge base, the models, the queue and today's users."""

    documents: int
    chunks: int
    embedder: str
    """The embedding model's id ("none yet" before the first document)."""
    chat_model: str
    adapter: str
    """The adapter this chat's answers run with ("none": the base model)."""
    collection: str
    """The collection this chat searches (the counts above are its own)."""
    queue: int
    """Answers queued or being written."""
    users_today: int


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


def names_a_page(argument: str) -> bool:
    """True when an /add argument is a web address (the page is fetched, not the text added)."""
    return is_web_address(argument)


def page_summary(result: DocumentResult) -> str:
    """What `/add URL` did, in one sentence."""
    if result.error:
        return f"Nothing was added: {result.error}"
    if result.outcome is Outcome.UNCHANGED:
        return f"Document {result.document_id} already holds that page as it is now."
    return (
        f"{result.outcome.value.capitalize()} document {result.document_id}: "
        f"{result.title[:80]} ({result.chunks_embedded} chunks added)."
    )


@dataclass(frozen=True)
class Page:
    """One page of the document list."""

    documents: list[DocumentInfo]
    number: int
    pages: int
    collection: str = "global"


class AdminService:
    """Every admin action (knowledge, backups, adapters, comparisons): checked, then audited."""

    def __init__(
        self,
        admin_ids: tuple[int, ...],
        store: KnowledgeStore,
        ingestor: Ingestor,
        state: StateStore,
        *,
        max_bytes: int,
        adapters: AdapterSwitcher,
        comparisons: ComparisonRunner,
        worker: ModelWorker,
        bindings: ChatBindings,
        web: WebSettings | None = None,
        chat_model: str | None = None,
        page_fetches: PageFetches | None = None,
    ) -> None:
        self.admin_ids = frozenset(admin_ids)
        self.store = store  # a writer connection of its own; searches use another one
        self.ingestor = ingestor
        self.state = state
        self.max_bytes = max_bytes
        self.adapters = adapters
        self.comparisons = comparisons
        self.worker = worker
        """The model's worker, for /stats' queue."""
        self.bindings = bindings
        self.web = web or WebSettings()
        """Limits of `/add URL` page fetches."""
        self.page_fetches = page_fetches or PageFetches()
        """Where `/add URL` fetches run (never the threads questions use)."""
        self.chat_model = chat_model or worker.model_id
        """How /stats names the chat model (default: the engine's model id)."""
        self._lock = threading.Lock()  # handlers run in threads; one write at a time

    def is_admin(self, user_id: int | None) -> bool:
        """Numeric ids only: usernames never count."""
        return user_id is not None and user_id in self.admin_ids

    def check(self, user_id: int | None, action: str, detail: str = "") -> int:
        """Return the admin's id, or log the refusal and raise NotAdminError."""
        allowed = self.is_admin(user_id)
        self.state.audit(user_id or 0, action, allowed=allowed, detail=detail)
        if not allowed or user_id is None:
            raise NotAdminError(f"/{action} is for admins only.")
        return user_id

    def _ingestor(self, chat_id: int | None) -> Ingestor:
        """The ingestor writing to the chat's collection."""
        return self.ingestor.for_collection(self.bindings.collection(chat_id).id)

    def add_text(
        self,
        user_id: int | None,
        text: str,
        *,
        title: str,
        key: str,
        chat_id: int | None = None,
    ) -> DocumentResult:
        """Add a chat message as a document of the chat's collection."""
        admin = self.check(user_id, "add", key)
        with self._lock:
            return self._ingestor(chat_id).add_text(
                text, title=title, external_id=key, source="telegram", added_by=f"tg:{admin}"
            )

    def add_url(
        self, user_id: int | None, url: str, *, chat_id: int | None = None
    ) -> Future[DocumentResult]:
        """Start fetching a web page into the chat's collection, on the fetch threads (a page
        added again is replaced only if its text changed; `kb sync` re-checks pages). The admin
        check and the chat's collection come first, here: a non-admin's URL is never fetched."""
        admin = self.check(user_id, "add", url[:200])
        ingestor = self._ingestor(chat_id)
        return self.page_fetches.submit(self._fetch_and_add, ingestor, url, f"tg:{admin}")

    def _fetch_and_add(self, ingestor: Ingestor, url: str, added_by: str) -> DocumentResult:
        # Fetching can take up to the whole-fetch deadline: only the write holds the lock.
        try:
            page = fetch_page(url, self.web)
        except PageError as exc:
            return DocumentResult(url, url, Outcome.FAILED, error=str(exc))
        with self._lock:
            return ingestor.add_page(page, url=url, added_by=added_by)

    def check_upload(
        self, user_id: int | None, file_name: str, size: int | None, *, chat_id: int | None = None
    ) -> None:
        """Before a file is downloaded: the sender is an admin, the chat's collection is known,
        and the file is of a kind and size that can be added (else one sentence, and nothing
        was added)."""
        suffix = PurePath(file_name).suffix.lower()
        self.check(user_id, "upload-request", suffix)
        self.bindings.collection(chat_id)  # CollectionError: where it would go is not known
        if suffix not in SUPPORTED_SUFFIXES:
            raise BadDocumentError(
                f"I can read {', '.join(SUPPORTED_SUFFIXES)} files, not {suffix or 'this'}."
            )
        if size is not None and size > self.max_bytes:
            raise BadDocumentError(
                f"That file is {size / 1e6:.1f} MB, over the {self.max_bytes / 1e6:.1f} MB "
                "limit; nothing was added."
            )

    def add_file(
        self,
        user_id: int | None,
        data: bytes,
        *,
        name: str,
        key: str,
        replace: bool = False,
        label: str = "",
        chat_id: int | None = None,
    ) -> IngestReport:
        """Add an uploaded file (the parser is chosen by `name`'s extension).

        `name` is a stand-in ("upload.md"): a document that would be titled by it is titled by
        its first heading or line. `label`, the sender's file name, only labels the source.
        An upload replaces only documents that uploads made, unless `replace`: a .jsonl names
        its own ids, and one an admin added from the command line must not be overwritten by
        accident.
        """
        shown = file_label(label) or name
        admin = self.check(user_id, "upload", f"{shown}{' replace' if replace else ''}")
        try:
            with self._lock:
                return self._ingestor(chat_id).add_bytes(
                    data, name=name, external_id=key, source=f"{UPLOAD_SOURCE}{shown}",
                    added_by=f"tg:{admin}", may_replace=None if replace else _made_by_an_upload,
                    title_from_text=True,
                )  # fmt: skip
        except Exception as exc:
            if not is_storage_failure(exc):
                raise
            raise KnowledgeWriteError(
                f"The knowledge base cannot be written ({exc}): the file was not added, or not "
                "all of it; free some space and send it again."
            ) from None

    def documents(
        self, user_id: int | None, page: str, *, chat_id: int | None = None, per_page: int = 10
    ) -> Page:
        """One page of the chat collection's documents (`page` as typed: anything but a number
        means the first)."""
        self.check(user_id, "docs", page[:40])
        wanted = int(page) if page.isascii() and page.isdigit() else 1
        collection = self.bindings.collection(chat_id)
        with self._lock:
            everything = self.store.list_documents(collection.id)
        pages = max(1, -(-len(everything) // per_page))
        number = min(max(wanted, 1), pages)
        start = (number - 1) * per_page
        return Page(everything[start : start + per_page], number, pages, collection.name)

    def find(self, user_id: int | None, ref: str, *, chat_id: int | None = None) -> DocumentInfo:
        """The document of the chat's collection a /forget names (before confirmation)."""
        self.check(user_id, "forget", ref)
        collection = self.bindings.collection(chat_id).id
        with self._lock:
            return self.store.resolve_document(ref, collection)

    def forget(
        self, user_id: int | None, choice: str, *, chat_id: int | None = None
    ) -> DocumentInfo:
        """Remove a document after confirmation. `choice` is a button's "id:tag" as it came,
        parsed only after the admin check; the tag (`document_tag`) must still match, since
        the id of a document removed meanwhile may have gone to another one."""
        self.check(user_id, "forget-confirmed", choice[:40])
        ref, _, tag = choice.partition(":")
        collection = self.bindings.collection(chat_id).id
        with self._lock:
            found = self.store.resolve_document(ref, collection)
            if tag != document_tag(found):
                raise DocumentNotFoundError(
                    f"Document {ref} is not the one you were asked about any more; nothing was "
                    "removed. Send /forget again."
                )
            self.store.delete_document(found.id)
        return found

    def stats(self, user_id: int | None, *, chat_id: int | None = None) -> BotStats:
        """Sizes of the chat's collection, the models, the queue and how many asked today."""
        self.check(user_id, "stats")
        collection = self.bindings.collection(chat_id)
        with self._lock:
            numbers = self.store.stats(collection.id)
        active = self.bindings.adapter_name(chat_id) or self.adapters.active
        return BotStats(
            documents=numbers.documents,
            chunks=numbers.chunks,
            embedder=numbers.model.model_id if numbers.model else "none yet",
            chat_model=self.chat_model,
            adapter=active or "none",
            collection=collection.name,
            queue=self.worker.waiting,
            users_today=self.state.users_since(start_of_day(time.time())),
        )

    def reindex(
        self,
        user_id: int | None,
        progress: Callable[[int, int], object] | None = None,
        *,
        chat_id: int | None = None,
        everything: bool = False,
    ) -> Reindexed:
        """Re-embed the chat's collection in place, or (`everything`) every chunk into a new
        vector table, reporting (done, total) as it goes; search goes on meanwhile."""
        self.check(user_id, "reindex-all" if everything else "reindex")
        collection = None if everything else self.bindings.collection(chat_id)
        with self._lock:
            total = self.store.stats(None if collection is None else collection.id).chunks
            done = 0

            def step(chunks: int) -> None:
                nonlocal done
                done += chunks
                if progress is not None:
                    progress(done, total)

            embedder = self.ingestor.embedder
            if collection is None:
                return Reindexed(reindex(self.store, embedder, progress=step), None)
            count = reindex_collection(self.store, embedder, collection.id, progress=step)
            return Reindexed(count, collection.name)

    def backup(self, user_id: int | None) -> BackupInfo:
        """A checked copy of the knowledge base in `backups/` beside it."""
        self.check(user_id, "backup")
        with self._lock:
            return self.store.backup()

    def list_adapters(
        self, user_id: int | None, *, chat_id: int | None = None
    ) -> tuple[list[Adapter], str | None, str | None]:
        """The adapters there are, the global default's name and the chat's own (if any)."""
        self.check(user_id, "adapter")
        own = self.bindings.adapter_name(chat_id)
        return self.adapters.registry.list(), self.adapters.active, own

    def use_adapter(self, user_id: int | None, name: str | None) -> Adapter | None:
        """Switch what everyone gets to adapter `name` (None: none), between two answers."""
        self.check(user_id, "adapter", f"use {name}" if name else "off")
        return self.adapters.use(name)

    def bind_adapter(self, user_id: int | None, chat_id: int, name: str | None) -> None:
        """Give one chat its own adapter (None: it follows the global default again)."""
        self.check(user_id, "adapter", f"chat {chat_id} {'use ' + name if name else 'default'}")
        self.bindings.bind_adapter(chat_id, name)

    def chat_collection(self, chat_id: int) -> Collection:
        """The collection a chat uses (anyone may ask which)."""
        return self.bindings.collection(chat_id)

    def collections(self, user_id: int | None) -> list[Collection]:
        """Every collection, with its document count."""
        self.check(user_id, "kb")
        with self._lock:
            return self.store.collections()

    def new_collection(self, user_id: int | None, chat_id: int, name: str) -> Collection:
        """Create a collection and bind the chat to it."""
        self.check(user_id, "kb", f"new {name[:40]}")
        created = self.bindings.create_collection(printable(name))
        try:
            self.bindings.bind_collection(chat_id, created)
        except CollectionError as exc:
            raise CollectionError(
                f"The collection {created.name} was created. {exc} Send /kb use "
                f"{created.name} once there is room again."
            ) from None
        return created

    def move_chat(self, old_id: int, new_id: int) -> bool:
        """Telegram moved a group to a new id (it became a supergroup): its bindings follow,
        audited (CollectionError when that could not be stored; it then holds until restart)."""
        moved = self.bindings.move_chat(old_id, new_id)
        if moved:
            self.state.audit(0, "chat-moved", allowed=True, detail=f"{old_id} -> {new_id}")
        return moved

    def use_collection(self, user_id: int | None, chat_id: int, name: str) -> Collection:
        """Bind the chat to an existing collection."""
        self.check(user_id, "kb", f"use {name[:40]}")
        found = self.bindings.find_collection(printable(name))
        self.bindings.bind_collection(chat_id, found)
        return found

    def compare(
        self,
        user_id: int | None,
        adapter: str | None,
        progress: Callable[[], object],
        *,
        chat_id: int | None = None,
    ) -> Comparison:
        """Base, fine-tuned, RAG and RAG + fine-tuned on the configured questions, the RAG
        modes searching the chat's collection."""
        self.check(user_id, "eval", adapter or "")
        collection = self.bindings.collection(chat_id).id
        return self.comparisons.run(adapter, progress, (collection,))
