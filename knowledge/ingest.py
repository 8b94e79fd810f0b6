"""Ingest: parse, chunk, skip the unchanged, embed in large batches, one transaction each."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import numpy as np

from knowledge.chunking import Chunk, chunk_document
from knowledge.embeddings import Embedder
from knowledge.errors import BadDocumentError
from knowledge.parsers import SUPPORTED_SUFFIXES, ParsedDocument, parse_bytes, parse_file
from knowledge.sandbox import ParseLimits, parse_isolated
from knowledge.store import DocumentWrite, KnowledgeStore


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
    chunks: list[Chunk]
    keep: list[tuple[int, int]]
    remove: list[int]
    new: list[Chunk]
    replacing: bool


def content_hash(document: ParsedDocument) -> str:
    """Hash of a document's text: equal hashes mean nothing to re-embed."""
    return hashlib.sha256(document.text.encode("utf-8")).hexdigest()


def iter_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Expand folders (recursively, sorted, supported types only, hidden files skipped)."""
    for path in paths:
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                hidden = any(part.startswith(".") for part in child.relative_to(path).parts)
                if child.is_file() and not hidden and child.suffix.lower() in SUPPORTED_SUFFIXES:
                    yield child
        else:
            yield path


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
        parse_limits: ParseLimits | None = None,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.chunk_chars = chunk_chars
        self.overlap_chars = overlap_chars
        self.max_bytes = max_bytes
        # Chunks gathered across documents before one embed call: many small documents then
        # embed as fast as one big batch would (sentence-transformers sorts a call's texts by
        # length, so bigger calls pad less; 256 ran at 0.83x raw encode here, 2048 at ~0.95x).
        self.embed_batch = embed_batch
        self.parse_limits = parse_limits or ParseLimits()
        store.bind_embedder(embedder.model_id, embedder.dimension)

    def add_paths(
        self,
        paths: Iterable[Path],
        *,
        added_by: str | None = None,
        progress: Progress | None = None,
    ) -> IngestReport:
        """Ingest files and folders; a bad file is reported and skipped, never half-written."""
        return self._ingest(self._read_files(paths), added_by, progress)

    def add_text(
        self, text: str, *, title: str, external_id: str, source: str, added_by: str | None = None
    ) -> DocumentResult:
        """Ingest one plain-text document (e.g. an admin's chat message)."""
        parsed = parse_bytes(text.encode("utf-8"), f"{title}.txt")[0]
        parsed = ParsedDocument(title, parsed.sections)
        document = SourceDocument(source, external_id, parsed, len(text.encode("utf-8")))
        return self._ingest([document], added_by, None).results[0]

    def add_bytes(
        self, data: bytes, *, name: str, external_id: str, source: str, added_by: str | None = None
    ) -> IngestReport:
        """Ingest an uploaded file's bytes (`name` picks the parser)."""
        if len(data) > self.max_bytes:
            raise BadDocumentError(f"{name} is over the {self.max_bytes / 1e6:.1f} MB limit.")
        docs = self._parse(data, name)
        sources = [SourceDocument(source, d.external_id or external_id, d, len(data)) for d in docs]
        return self._ingest(sources, added_by, None)

    def _parse(self, data: bytes, name: str) -> list[ParsedDocument]:
        """Files are untrusted: parsed in a child process with memory, CPU and output limits."""
        return parse_isolated(data, name, self.parse_limits)

    def _read_files(self, paths: Iterable[Path]) -> Iterator[SourceDocument | DocumentResult]:
        for path in iter_files(paths):
            source = str(path.resolve())
            try:
                docs = parse_file(path, self.max_bytes, self._parse)
            except (BadDocumentError, OSError) as exc:
                message = str(exc) if isinstance(exc, BadDocumentError) else f"{path}: {exc}"
                yield DocumentResult(source, source, Outcome.FAILED, error=message)
                continue
            for doc in docs:
                size = len(doc.text.encode("utf-8")) if doc.external_id else path.stat().st_size
                yield SourceDocument(source, doc.external_id or source, doc, size)

    def _plan(self, document: SourceDocument) -> _Pending | DocumentResult:
        digest = content_hash(document.parsed)
        existing = self.store.find_document(document.external_id)
        if existing is not None and existing.content_hash == digest:
            return DocumentResult(
                document.source, document.external_id, Outcome.UNCHANGED, existing.id,
                chunks_reused=existing.chunks,
            )  # fmt: skip
        chunks = chunk_document(
            document.parsed, max_chars=self.chunk_chars, overlap_chars=self.overlap_chars
        )
        reusable: dict[str, list[int]] = defaultdict(list)
        if existing is not None:
            for old in self.store.document_chunks(existing.id):
                reusable[old.hash].append(old.id)
        keep, new = [], []
        for chunk in chunks:
            if reusable[chunk.hash]:
                keep.append((reusable[chunk.hash].pop(0), chunk.position))
            else:
                new.append(chunk)
        remove = [chunk_id for ids in reusable.values() for chunk_id in ids]
        return _Pending(document, digest, chunks, keep, remove, new, existing is not None)

    def _ingest(
        self,
        documents: Iterable[SourceDocument | DocumentResult],
        added_by: str | None,
        progress: Progress | None,
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
                    item = self._write(item, batch, added_by)
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
            planned = document if isinstance(document, DocumentResult) else self._plan(document)
            pending.append(planned)
            if isinstance(planned, _Pending):
                waiting_chunks += len(planned.new)
            if waiting_chunks >= self.embed_batch:
                flush()
                waiting_chunks = 0
        flush()
        return report

    def _write(self, p: _Pending, vectors: np.ndarray, added_by: str | None) -> DocumentResult:
        doc = p.document
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
            )
        )
        return DocumentResult(
            doc.source,
            doc.external_id,
            Outcome.REPLACED if p.replacing else Outcome.ADDED,
            document_id,
            chunks_embedded=len(p.new),
            chunks_reused=len(p.keep),
            chunks_removed=len(p.remove),
        )
