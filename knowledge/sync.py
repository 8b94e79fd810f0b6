"""`kb sync DIR`: make a collection hold exactly what a folder holds, and say what changed.

New files are added, changed ones replaced (only their changed chunks are embedded), unchanged
ones left alone, and documents whose file left the folder are forgotten. Each document is written
or forgotten in its own transaction, so a sync killed half-way leaves every document whole and
the next run finishes the job. A file that cannot be read is reported and its stored version
kept: a broken file must not make its document disappear.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

from knowledge.errors import DocumentNotFoundError
from knowledge.ingest import DocumentResult, Ingestor, IngestReport, Outcome
from knowledge.parsers import printable
from knowledge.store import DocumentInfo


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


def is_under(source: str, folder: str) -> bool:
    """True when a document's source is a file inside `folder` (both resolved paths)."""
    return source.startswith(folder.rstrip("/") + "/")


def sync_folder(
    ingestor: Ingestor,
    folder: Path,
    *,
    dry_run: bool = False,
    follow_links: bool = False,
    added_by: str = "sync",
    progress: Callable[[DocumentResult], object] | None = None,
) -> SyncReport:
    """Bring the ingestor's collection in line with `folder` (nothing written when `dry_run`)."""
    root = printable(str(folder.resolve()))
    if dry_run:
        report = ingestor.plan_paths([folder], follow_links=follow_links)
    else:
        report = ingestor.add_paths(
            [folder], added_by=added_by, progress=progress, follow_links=follow_links
        )
    present = {r.external_id for r in report.results}
    unreadable = {r.source for r in report.failures}
    store = ingestor.store
    gone = [
        d
        for d in store.list_documents(ingestor.collection)
        if is_under(d.source, root) and d.external_id not in present and d.source not in unreadable
    ]
    if not dry_run:
        for document in gone:
            # Another writer may have forgotten it first: just as well.
            with suppress(DocumentNotFoundError):
                store.delete_document(document.id)
    return SyncReport(root, report, gone, dry_run)
