"""`kb sync [DIR]`: make a collection hold what a folder holds and what its web pages say now.

New files are added, changed ones replaced (only their changed chunks are embedded), unchanged
ones left alone, and documents whose file left the folder are forgotten. Every web page in the
collection is fetched again: a changed text is replaced, a page the server says is gone (404,
410) is forgotten, one that cannot be fetched now keeps its stored version and is reported.
Each document is written or forgotten in its own transaction, so a sync killed half-way leaves
every document whole and the next run finishes the job. A file or folder that cannot be read
is reported and its stored documents kept, and a folder with no files at all forgets nothing:
a broken disk or an unmounted share must not make documents disappear.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from knowledge.errors import DocumentNotFoundError, KnowledgeError
from knowledge.ingest import DocumentResult, Ingestor, IngestReport, Outcome
from knowledge.locking import try_exclusive
from knowledge.parsers import path_text
from knowledge.store import DocumentInfo
from knowledge.web import PageError, PageGoneError, WebSettings, fetch_page, is_web_address


@dataclass
class SyncReport:
    """What a sync did (or, dry, would do): the ingest's results and the documents forgotten."""

    folder: str
    ingest: IngestReport
    forgotten: list[DocumentInfo] = field(default_factory=list)
    dry_run: bool = False

    def counts(self) -> dict[str, int]:
        """Documents added, replaced, unchanged, forgotten and failed, and chunks embedded."""
        return {
            **{o.value: self.ingest.count(o) for o in Outcome},
            "forgotten": len(self.forgotten),
            "chunks_embedded": self.ingest.chunks_embedded,
        }


class SyncRunningError(KnowledgeError):
    """Another sync of the same folder into the same collection is running."""


def sync_lock_path(database: Path, collection: str, folder: Path | None) -> Path:
    """The lock a sync of `folder` (None: the pages alone) into `collection` holds."""
    target = f"{collection}\0{folder.resolve() if folder is not None else ''}"
    digest = hashlib.sha256(target.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    real = database.resolve()
    return real.with_name(f"{real.name}.sync-{digest}.lock")


@contextmanager
def one_sync_at_a_time(database: Path, collection: str, folder: Path | None) -> Iterator[None]:
    """Hold the sync's lock for the block, or raise SyncRunningError at once: a cron sync that
    outlasts its interval must not have the next one stacked on it. The kernel drops the lock
    of a killed sync."""
    with try_exclusive(sync_lock_path(database, collection, folder)) as free:
        if not free:
            what = path_text(str(folder.resolve())) if folder is not None else "the web pages"
            raise SyncRunningError(
                f"Another `kb sync` of {what} into {collection} is running; this one did nothing."
            )
        yield


def is_under(source: str, folder: str) -> bool:
    """True when a document's source is a file inside `folder` (both resolved paths)."""
    return source.startswith(folder.rstrip("/") + "/")


def sync_folder(
    ingestor: Ingestor,
    folder: Path,
    *,
    dry_run: bool = False,
    follow_links: bool = False,
    forget_many: bool = False,
    added_by: str = "sync",
    progress: Callable[[DocumentResult], object] | None = None,
) -> SyncReport:
    """Bring the ingestor's collection in line with `folder` (nothing written when `dry_run`).

    A sync that would forget more than MOST_FORGOTTEN of the folder's documents (and more than
    FEW_FORGOTTEN) forgets none
    and says so, unless `forget_many`: one stray file in an unmounted share's mount point must
    not look like 49 files deleted on purpose.
    """
    root = path_text(str(folder.resolve()))
    if dry_run:
        report = ingestor.plan_paths([folder], follow_links=follow_links)
    else:
        report = ingestor.add_paths(
            [folder], added_by=added_by, progress=progress, follow_links=follow_links
        )
    present = {r.external_id for r in report.results}
    # A file, or a whole folder, that could not be read keeps its documents: a broken disk or
    # an unmounted share must not look like files that were deleted.
    unread = [r.source for r in report.failures]
    store = ingestor.store
    stored = [d for d in store.list_documents(ingestor.collection) if is_under(d.source, root)]
    gone = [
        d
        for d in stored
        if d.external_id not in present
        and not any(d.source == s or is_under(d.source, s) for s in unread)
    ]
    if gone and not report.results:
        # Nothing at all in the folder is far likelier an empty mount point than a wish to
        # forget everything; `kb forget` does that on purpose.
        report.results.append(_empty_folder(root, len(gone)))
        gone = []
    elif not forget_many:
        added = {r.external_id for r in report.results if r.outcome is Outcome.ADDED}
        before = [d for d in stored if d.external_id not in added]
        if len(gone) > max(MOST_FORGOTTEN * len(before), FEW_FORGOTTEN):
            report.results.append(_most_gone(root, len(gone), len(before)))
            gone = []
    if not dry_run:
        for document in gone:
            # Another writer may have forgotten it first: just as well.
            with suppress(DocumentNotFoundError):
                store.delete_document(document.id)
    return SyncReport(root, report, gone, dry_run)


MOST_FORGOTTEN = 0.5
"""A sync forgets at most this share of a folder's documents unless told to (--forget-many)..."""
FEW_FORGOTTEN = 5
"""...or this many, whatever share they are (a small folder's renames and deletions go on)."""


def _most_gone(root: str, gone: int, stored: int) -> DocumentResult:
    message = (
        f"{gone} of the {stored} documents from {root} are no longer there, more than half, so "
        "none were forgotten (is it mounted? a stray file in an empty mount point looks like "
        "this); if they should go, run the sync again with --forget-many."
    )
    return DocumentResult(root, root, Outcome.FAILED, error=message)


def _empty_folder(root: str, documents: int) -> DocumentResult:
    message = (
        f"{root} holds no files now, so its {documents} document(s) are kept "
        "(is it mounted?); if they should go, forget them with `kb forget ID` (ids in `kb "
        "list`, both with the sync's --collection)."
    )
    return DocumentResult(root, root, Outcome.FAILED, error=message)


def add_url(
    ingestor: Ingestor, url: str, web: WebSettings, *, added_by: str | None = None
) -> DocumentResult:
    """Fetch one page (within `web`'s limits) and add its main text as the document `url`."""
    try:
        page = fetch_page(url, web)
    except PageError as exc:
        return DocumentResult(url, url, Outcome.FAILED, error=str(exc))
    return ingestor.add_page(page, url=url, added_by=added_by)


def sync_pages(
    ingestor: Ingestor, web: WebSettings, *, dry_run: bool = False, added_by: str = "sync"
) -> SyncReport:
    """Fetch every web page of the ingestor's collection again; replace, keep or forget each."""
    report = IngestReport()
    gone: list[DocumentInfo] = []
    pages = [
        d for d in ingestor.store.list_documents(ingestor.collection) if is_web_address(d.source)
    ]
    for document in pages:
        try:
            page = fetch_page(document.source, web)
        except PageGoneError:
            gone.append(document)
            continue
        except PageError as exc:
            report.results.append(
                DocumentResult(
                    document.source,
                    document.external_id,
                    Outcome.FAILED,
                    document.id,
                    error=str(exc),
                    title=document.title,
                )
            )
            continue
        result = ingestor.add_page(page, url=document.external_id, added_by=added_by,
                                   dry_run=dry_run)  # fmt: skip
        report.results.append(result)
    if not dry_run:
        for document in gone:
            with suppress(DocumentNotFoundError):
                ingestor.store.delete_document(document.id)
    return SyncReport("(web pages)", report, gone, dry_run)


def merged(reports: list[SyncReport]) -> SyncReport:
    """One report of several syncs (a folder and the collection's pages)."""
    ingest = IngestReport([r for report in reports for r in report.ingest.results])
    forgotten = [d for report in reports for d in report.forgotten]
    return SyncReport(
        ", ".join(r.folder for r in reports), ingest, forgotten, any(r.dry_run for r in reports)
    )
