"""Ingest: parse, chunk, skip the unchanged, embed in large batches, one transaction each."""

from __future__ import annotations

import copy
import hashlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path, PurePath

import numpy as np

from knowledge.chunking import Chunk, chunk_document
from knowledge.embeddings import Embedder
from knowledge.errors import BadDocumentError, ConcurrentWriteError, EmbedderMismatchError
from knowledge.migrations import GLOBAL_COLLECTION
from knowledge.parsers import (
    SUPPORTED_SUFFIXES,
    ParsedDocument,
    parse_bytes,
    path_text,
    printable,
    titled_from_text,
)
from knowledge.sandbox import (
    BATCH_BYTES,
    BATCH_FILES,
    ParseKind,
    ParseLimits,
    parse_batch_isolated,
    parse_isolated,
)
from knowledge.store import DocumentInfo, DocumentWrite, EmbeddingModel, KnowledgeStore
from knowledge.walk import Skipped, iter_files, link_loop, read_entry, resolved
from knowledge.web import Page

SMALL_FILE_BYTES = 256_000
"""Files up to this size are parsed in batches, many to a limited child; bigger ones alone."""
# A write planned on a document that another writer changed meanwhile is planned again; only
# a document rewritten this often in a row, while this one is being written, is given up on.
WRITE_ATTEMPTS = 5


class Outcome(StrEnum):
    """What happened to one document."""

    ADDED = "added"
    REPLACED = "replaced"
    UNCHANGED = "unchanged"
    FAILED = "failed"


@dataclass(frozen=True)
class DocumentResult:
    """The outcome for one document, with chunk counts (or the error)."""

    source: str
    external_id: str
    outcome: Outcome
    document_id: int | None = None
    chunks_embedded: int = 0
    chunks_reused: int = 0
    chunks_removed: int = 0
    error: str | None = None
    title: str = ""


@dataclass
class IngestReport:
    """Every document's result, in input order."""

    results: list[DocumentResult] = field(default_factory=list)

    def count(self, outcome: Outcome) -> int:
        """Documents with this outcome."""
        return sum(r.outcome is outcome for r in self.results)

    @property
    def chunks_embedded(self) -> int:
        """Chunks that had to be embedded (new or changed)."""
        return sum(r.chunks_embedded for r in self.results)

    @property
    def failures(self) -> list[DocumentResult]:
        """Documents that could not be ingested."""
        return [r for r in self.results if r.outcome is Outcome.FAILED]


@dataclass(frozen=True)
class SourceDocument:
    """A parsed document and where it came from."""

    source: str
    external_id: str
    parsed: ParsedDocument
    size: int


@dataclass
class _Pending:
    document: SourceDocument
    content_hash: str
    planned_on: frozenset[tuple[int, str]]
    keep: list[tuple[int, int]]
    remove: list[int]
    new: list[Chunk]
    replacing: bool


MayReplace = Callable[[DocumentInfo], str | None]
"""Given a stored document an ingest would replace: None to allow it, or why not (a sentence)."""


def content_hash(document: ParsedDocument) -> str:
    """Hash of a document's text: equal hashes mean nothing to re-embed."""
    return hashlib.sha256(document.text.encode("utf-8")).hexdigest()


Progress = Callable[[DocumentResult], object]


class Ingestor:
    """Adds documents to a store, embedding only chunks it has not embedded before."""

    def __init__(
        self,
        store: KnowledgeStore,
        embedder: Embedder,
        *,
        chunk_chars: int = 500,
        overlap_chars: int = 100,
        max_bytes: int = 20_000_000,
        embed_batch: int = 2048,
        max_chunks: int = 5_000,
        parse_limits: ParseLimits | None = None,
        collection: int = GLOBAL_COLLECTION,
    ) -> None:
        self.store = store
        self.collection = collection
        """The collection every document this ingestor writes goes to (and is replaced in)."""
        self.embedder = embedder
        self.chunk_chars = chunk_chars
        self.overlap_chars = overlap_chars
        self.max_bytes = max_bytes
        # Chunks gathered across documents before one embed call: many small documents then
        # embed as fast as one big batch would (sentence-transformers sorts a call's texts by
        # length, so bigger calls pad less; 256 ran at 0.83x raw encode here, 2048 at ~0.95x).
        self.embed_batch = embed_batch
        self.max_chunks = max_chunks
        """A document that would make more chunks than this is refused before any embedding."""
        self.parse_limits = parse_limits or ParseLimits()
        self.model = EmbeddingModel(embedder.model_id, embedder.dimension)
        store.bind_embedder(embedder.model_id, embedder.dimension)

    def for_collection(self, collection: int) -> Ingestor:
        """This ingestor's settings, writing to `collection` instead."""
        other = copy.copy(self)
        other.collection = collection
        return other

    def add_paths(
        self,
        paths: Iterable[Path],
        *,
        added_by: str | None = None,
        progress: Progress | None = None,
        follow_links: bool = False,
    ) -> IngestReport:
        """Ingest files and folders; a bad file is reported and skipped, never half-written."""
        return self._ingest(self._read_files(paths, follow_links), added_by, progress)

    def plan_paths(self, paths: Iterable[Path], *, follow_links: bool = False) -> IngestReport:
        """What `add_paths` would do, document by document, with nothing embedded or written
        (files are still parsed, in the limited child, to compare their text)."""
        report = IngestReport()
        for document in self._read_files(paths, follow_links):
            report.results.append(
                document if isinstance(document, DocumentResult) else self._dry(document)
            )
        return report

    def _dry(self, document: SourceDocument) -> DocumentResult:
        """What ingesting `document` would do, done to nothing."""
        planned = self._plan(document)
        if isinstance(planned, DocumentResult):
            return planned
        return DocumentResult(
            document.source, document.external_id,
            Outcome.REPLACED if planned.replacing else Outcome.ADDED,
            chunks_embedded=len(planned.new), chunks_reused=len(planned.keep),
            chunks_removed=len(planned.remove), title=document.parsed.title,
        )  # fmt: skip

    def add_page(
        self, page: Page, *, url: str, added_by: str | None = None, dry_run: bool = False
    ) -> DocumentResult:
        """Add (or, with `dry_run`, plan) a fetched web page's main text as the document named
        `url` (the address asked for, which citations link to), parsed in the limited child."""
        kind: ParseKind = "text" if page.content_type == "text/plain" else "page"
        try:
            parsed = parse_isolated(page.body, url, self.parse_limits, kind)
        except BadDocumentError as exc:
            return DocumentResult(url, url, Outcome.FAILED, error=str(exc))
        document = SourceDocument(url, url, parsed[0], len(page.body))
        if dry_run:
            return self._dry(document)
        return self._ingest([document], added_by, None).results[0]

    def add_text(
        self, text: str, *, title: str, external_id: str, source: str, added_by: str | None = None
    ) -> DocumentResult:
        """Ingest one plain-text document (e.g. an admin's chat message)."""
        parsed = parse_bytes(text.encode("utf-8"), f"{title}.txt")[0]
        parsed = ParsedDocument(title, parsed.sections)
        document = SourceDocument(source, external_id, parsed, len(text.encode("utf-8")))
        return self._ingest([document], added_by, None).results[0]

    def add_bytes(
        self,
        data: bytes,
        *,
        name: str,
        external_id: str,
        source: str,
        added_by: str | None = None,
        may_replace: MayReplace | None = None,
        title_from_text: bool = False,
    ) -> IngestReport:
        """Ingest an uploaded file's bytes (`name` picks the parser).

        `may_replace` guards documents stored already under an id the file names (a .jsonl
        carries its own ids): those it refuses are reported and left as they are. With
        `title_from_text`, `name` is a stand-in: a document it would title is titled by its
        first heading or line instead.
        """
        if len(data) > self.max_bytes:
            raise BadDocumentError(f"{name} is over the {self.max_bytes / 1e6:.1f} MB limit.")
        docs = self._parse(data, name)
        if title_from_text:
            docs = [titled_from_text(d, PurePath(name).stem) for d in docs]
        sources = [SourceDocument(source, d.external_id or external_id, d, len(data)) for d in docs]
        return self._ingest(sources, added_by, None, may_replace)

    def _parse(self, data: bytes, name: str) -> list[ParsedDocument]:
        """Files are untrusted: parsed in a child process with memory, CPU and output limits."""
        return parse_isolated(data, name, self.parse_limits)

    def _read_files(
        self, paths: Iterable[Path], follow_links: bool
    ) -> Iterator[SourceDocument | DocumentResult]:
        """Each file's documents (or why it was skipped), in order. Small files are parsed many
        to a child (`parse_batch_isolated`): a child per file cost ~70-130 ms each."""
        batch: list[tuple[Path, str, bytes]] = []  # (path, source, bytes) of small files

        def flush() -> Iterator[SourceDocument | DocumentResult]:
            parsed = parse_batch_isolated(
                [(data, path_text(path.name)) for path, _, data in batch], self.parse_limits
            )
            for (_, source, data), result in zip(batch, parsed, strict=True):
                yield from self._documents_of(source, len(data), result)
            batch.clear()

        for entry in iter_files(paths, follow_links=follow_links):
            if isinstance(entry, Skipped):  # a link not followed, a folder not listed
                yield from flush()
                yield DocumentResult(entry.source, entry.source, Outcome.FAILED,
                                     error=entry.reason)  # fmt: skip
                continue
            path = entry.path
            if resolved(path) is None:
                yield from flush()
                loop = link_loop(path)
                yield DocumentResult(loop.source, loop.source, Outcome.FAILED, error=loop.reason)
                continue
            source = entry.source
            result: list[ParsedDocument] | BadDocumentError
            try:
                if path.suffix.lower() not in SUPPORTED_SUFFIXES:  # a file named directly
                    parse_bytes(b"", path_text(path.name))  # raises the unsupported-type error
                data = read_entry(entry, self.max_bytes, follow_links=follow_links)
                if len(data) <= SMALL_FILE_BYTES:
                    batch.append((path, source, data))
                    if len(batch) >= BATCH_FILES or sum(len(d) for *_, d in batch) > BATCH_BYTES:
                        yield from flush()
                    continue
                yield from flush()
                result = self._parse(data, path_text(path.name))
                size: int | None = len(data)
            except BadDocumentError as exc:
                result, size = exc, None
            except OSError as exc:
                yield from flush()
                message = path_text(f"{source}: {exc}")
                yield DocumentResult(source, source, Outcome.FAILED, error=message)
                continue
            yield from self._documents_of(source, size, result)
        yield from flush()

    def _documents_of(
        self, source: str, size: int | None, result: list[ParsedDocument] | BadDocumentError
    ) -> Iterator[SourceDocument | DocumentResult]:
        """A parsed file's documents, or the one result that says why it was skipped."""
        if isinstance(result, BadDocumentError):
            yield DocumentResult(source, source, Outcome.FAILED, error=printable(str(result)))
            return
        for doc in result:
            own = len(doc.text.encode("utf-8")) if doc.external_id else None
            yield SourceDocument(source, doc.external_id or source, doc, own or size or 0)

    def _plan(
        self, document: SourceDocument, may_replace: MayReplace | None = None
    ) -> _Pending | DocumentResult:
        digest = content_hash(document.parsed)
        existing = self.store.find_document(document.external_id, self.collection)
        if existing is not None and existing.content_hash == digest:
            return DocumentResult(
                document.source, document.external_id, Outcome.UNCHANGED, existing.id,
                chunks_reused=existing.chunks, title=document.parsed.title,
            )  # fmt: skip
        refusal = may_replace(existing) if existing is not None and may_replace else None
        if refusal is not None:
            return DocumentResult(
                document.source, document.external_id, Outcome.FAILED, error=refusal,
                title=document.parsed.title,
            )  # fmt: skip
        chunks = chunk_document(
            document.parsed, max_chars=self.chunk_chars, overlap_chars=self.overlap_chars
        )
        if len(chunks) > self.max_chunks:
            return DocumentResult(
                document.source, document.external_id, Outcome.FAILED,
                error=f"{document.parsed.title} would make {len(chunks):,} chunks, over the limit "
                f"of {self.max_chunks:,} per document (RAGTUNE_MAX_CHUNKS_PER_DOCUMENT); split "
                "it into smaller files or raise the limit.", title=document.parsed.title,
            )  # fmt: skip
        reusable: dict[str, list[int]] = defaultdict(list)
        old_chunks = self.store.document_chunks(existing.id) if existing is not None else []
        for old in old_chunks:
            reusable[old.hash].append(old.id)
        keep, new = [], []
        for chunk in chunks:
            if reusable[chunk.hash]:
                keep.append((reusable[chunk.hash].pop(0), chunk.position))
            else:
                new.append(chunk)
        remove = [chunk_id for ids in reusable.values() for chunk_id in ids]
        planned_on = frozenset((c.id, c.hash) for c in old_chunks)
        return _Pending(document, digest, planned_on, keep, remove, new, existing is not None)

    def _ingest(
        self,
        documents: Iterable[SourceDocument | DocumentResult],
        added_by: str | None,
        progress: Progress | None,
        may_replace: MayReplace | None = None,
    ) -> IngestReport:
        report = IngestReport()
        # Results wait here with the documents still to embed, so the report keeps input order.
        pending: list[_Pending | DocumentResult] = []
        waiting_chunks = 0

        def flush() -> None:
            to_embed = [p for p in pending if isinstance(p, _Pending)]
            texts = [c.embed_text for p in to_embed for c in p.new]
            vectors = self.embedder.embed(texts) if texts else np.zeros((0, 0), np.float32)
            offset = 0
            for item in pending:
                if isinstance(item, _Pending):
                    batch = vectors[offset : offset + len(item.new)]
                    offset += len(item.new)
                    item = self._write(item, batch, added_by, may_replace)
                report.results.append(item)
                if progress is not None:
                    progress(item)
            pending.clear()

        for document in documents:
            if isinstance(document, SourceDocument) and any(
                isinstance(p, _Pending) and p.document.external_id == document.external_id
                for p in pending
            ):
                flush()  # the same id twice: plan the second against the first, once written
                waiting_chunks = 0
            planned = (
                document
                if isinstance(document, DocumentResult)
                else self._plan(document, may_replace)
            )
            pending.append(planned)
            if isinstance(planned, _Pending):
                waiting_chunks += len(planned.new)
            if waiting_chunks >= self.embed_batch:
                flush()
                waiting_chunks = 0
        flush()
        return report

    def _write(
        self,
        p: _Pending,
        vectors: np.ndarray,
        added_by: str | None,
        may_replace: MayReplace | None,
    ) -> DocumentResult:
        """Write a planned document; if another writer got there first, plan it again."""
        doc = p.document
        for _ in range(WRITE_ATTEMPTS):
            try:
                document_id = self.store.save_document(
                    DocumentWrite(
                        external_id=doc.external_id,
                        source=doc.source,
                        title=doc.parsed.title,
                        content_hash=p.content_hash,
                        size=doc.size,
                        added_by=added_by,
                        keep=p.keep,
                        remove=p.remove,
                        new=p.new,
                        vectors=vectors,
                        model=self.model,
                        planned_on=p.planned_on,
                        collection=self.collection,
                    )
                )
            except EmbedderMismatchError as exc:  # a reindex switched models meanwhile
                return DocumentResult(
                    doc.source, doc.external_id, Outcome.FAILED, error=str(exc),
                    title=doc.parsed.title,
                )  # fmt: skip
            except ConcurrentWriteError:
                replanned = self._plan(doc, may_replace)
                if isinstance(replanned, DocumentResult):  # e.g. the other writer stored it
                    return replanned
                vectors = self._vectors_for(replanned.new, p.new, vectors)
                p = replanned
                continue
            return DocumentResult(
                doc.source,
                doc.external_id,
                Outcome.REPLACED if p.replacing else Outcome.ADDED,
                document_id,
                chunks_embedded=len(p.new),
                chunks_reused=len(p.keep),
                chunks_removed=len(p.remove),
                title=doc.parsed.title,
            )
        return DocumentResult(
            doc.source, doc.external_id, Outcome.FAILED,
            error=f"{doc.external_id} kept being changed by another writer; try again.",
        )  # fmt: skip

    def _vectors_for(
        self, chunks: list[Chunk], embedded: list[Chunk], vectors: np.ndarray
    ) -> np.ndarray:
        """Vectors for `chunks`, reusing those already made for `embedded`."""
        known = {c.hash: vectors[n] for n, c in enumerate(embedded)}
        missing = [c for c in chunks if c.hash not in known]
        if missing:
            fresh = self.embedder.embed([c.embed_text for c in missing])
            known.update((c.hash, fresh[n]) for n, c in enumerate(missing))
        if not chunks:
            return np.zeros((0, self.model.dimension), np.float32)
        return np.stack([known[c.hash] for c in chunks])
