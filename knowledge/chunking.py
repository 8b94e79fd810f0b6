"""Deterministic chunking: whole sentences, overlap between neighbours, heading kept with each."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from knowledge.parsers import ParsedDocument

# A sentence ends at . ! ? (then spaces and a capital, digit or opening quote), at CJK full stops,
# or at a line break. Over-splitting (an abbreviation) moves a chunk boundary, never loses text.
_SENTENCE_END = re.compile(
    r"(?<=[.!?…])[\"'”’)\]]*\s+(?=[\"'“‘(\[]?[A-Z0-9À-Ý\u3040-\u30ff\u4e00-\u9fff])|(?<=[。！？])\s*|\s*\n+\s*"
)
# Titles and abbreviations whose full stop does not end a sentence.
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof st sr jr vs etc e.g i.e no fig approx dept est inc ltd co gen col lt".split()
)
HEADING_SEPARATOR = " › "
# A section with less text than a tenth of a chunk says too little to be retrieved alone; runs
# of such sections are merged into shared chunks, their headings kept in the text. (A file of
# 500 one-word sections made 500 chunks; real sections, a FAQ answer, are longer than this.)
TINY_SECTION_FRACTION = 10


def embedding_input(heading: str, text: str) -> str:
    """What gets embedded for a chunk: the heading gives the text its context."""
    return f"{heading}\n{text}" if heading else text


@dataclass(frozen=True)
class Chunk:
    """One retrievable piece of a document."""

    position: int
    heading: str
    text: str

    @property
    def embed_text(self) -> str:
        """What gets embedded (see `embedding_input`)."""
        return embedding_input(self.heading, self.text)

    @property
    def hash(self) -> str:
        """Content hash; an unchanged chunk keeps its vector when its document is replaced."""
        return hashlib.sha256(self.embed_text.encode("utf-8")).hexdigest()[:32]


def split_sentences(text: str) -> list[str]:
    """Split text into sentences (see `_SENTENCE_END`), dropping empty pieces."""
    sentences: list[str] = []
    for piece in _SENTENCE_END.split(text):
        piece = piece.strip()
        if not piece:
            continue
        last_word = sentences[-1].rsplit(" ", 1)[-1].rstrip(".").lower() if sentences else ""
        if last_word in _ABBREVIATIONS and sentences[-1].endswith("."):
            sentences[-1] = f"{sentences[-1]} {piece}"
        else:
            sentences.append(piece)
    return sentences


def sentence_bounds(text: str) -> list[tuple[int, int]]:
    """(start, end) character offsets in `text` of each of its `split_sentences`."""
    bounds: list[tuple[int, int]] = []
    position = 0
    for sentence in split_sentences(text):
        found = text.find(sentence, position)
        if found < 0:  # an abbreviation's join changed the spacing: fall back to its first word
            found = text.find(sentence.split(" ", 1)[0], position)
            if found < 0:
                continue
        position = found + len(sentence)
        bounds.append((found, min(position, len(text))))
    return bounds


def _hard_split(sentence: str, max_chars: int) -> list[str]:
    """Cut a sentence longer than `max_chars` at spaces (or anywhere, for unspaced scripts)."""
    pieces, current = [], ""
    for word in re.findall(r"\S+\s*", sentence):
        while len(word) > max_chars:  # a "word" with no spaces at all, e.g. Chinese
            if current:
                pieces.append(current.strip())
                current = ""
            pieces.append(word[:max_chars])
            word = word[max_chars:]
        if current and len(current) + len(word) > max_chars:
            pieces.append(current.strip())
            current = ""
        current += word
    if current.strip():
        pieces.append(current.strip())
    return pieces


def _whole_code_blocks(sentences: list[str]) -> list[str]:
    """Sentences with each fenced code block (one line per sentence) joined into one, so a
    block is cut only when it alone is over a chunk."""
    joined: list[str] = []
    block: list[str] | None = None
    for sentence in sentences:
        fence = sentence.startswith(("```", "~~~"))
        if block is None:
            if fence and not (len(sentence) > 3 and sentence.rstrip().endswith(("```", "~~~"))):
                block = [sentence]
            else:
                joined.append(sentence)
        else:
            block.append(sentence)
            if fence:
                joined.append(" ".join(block))
                block = None
    if block is not None:
        joined.append(" ".join(block))
    return joined


def _trailing_lead_ins(units: list[str], most: int) -> list[str]:
    """The units at the end of `units` that introduce what follows (they end with a colon),
    at most `most` of them."""
    count = 0
    while count < most and units[len(units) - 1 - count].rstrip().endswith(":"):
        count += 1
    return units[len(units) - count :] if count else []


def _pack(sentences: list[str], max_chars: int, overlap_chars: int) -> list[str]:
    """Greedily pack sentences into chunks; each chunk repeats the previous one's tail."""
    units = [piece for s in _whole_code_blocks(sentences) for piece in _hard_split(s, max_chars)]
    chunks: list[str] = []
    current: list[str] = []
    fresh = 0  # sentences in `current` that are not overlap from the previous chunk
    for unit in units:
        length = sum(len(u) + 1 for u in current) + len(unit)
        if current and length > max_chars and fresh:
            # A lead-in ("To unload it, use:") goes with the list or code it introduces.
            leads = _trailing_lead_ins(current, fresh - 1)
            if leads and sum(len(u) + 1 for u in leads) + len(unit) > max_chars:
                leads = []  # it would not fit beside what it introduces: leave it where it is
            done = current[: len(current) - len(leads)]
            chunks.append(" ".join(done))
            tail: list[str] = []
            for previous in reversed(done):
                if sum(len(t) + 1 for t in tail) + len(previous) > overlap_chars:
                    break
                tail.insert(0, previous)
            # Keep the overlap only while the lead-ins and the next unit still fit beside it.
            while tail and sum(len(t) + 1 for t in (*tail, *leads)) + len(unit) > max_chars:
                tail.pop(0)
            current, fresh = [*tail, *leads], len(leads)
        current.append(unit)
        fresh += 1
    if current and fresh:
        chunks.append(" ".join(current))
    return chunks


def _sections(document: ParsedDocument, max_chars: int) -> list[tuple[str, str]]:
    """(heading, text) to chunk: each section, with runs of tiny ones merged up to a chunk."""
    out: list[tuple[str, str]] = []
    run: list[tuple[str, str, str]] = []  # tiny sections waiting: (heading, text, inline text)

    def flush() -> None:
        if len(run) == 1:  # a tiny section alone keeps its own heading
            out.append(run[0][:2])
        elif run:
            out.append((document.title, "\n".join(inline for _, _, inline in run)))
        run.clear()

    for section in document.sections:
        heading = document.title
        inline = section.text
        if section.heading and section.heading != document.title:
            heading = f"{document.title}{HEADING_SEPARATOR}{section.heading}"
            inline = f"{section.heading}: {section.text}"
        if len(section.text) * TINY_SECTION_FRACTION >= max_chars:
            flush()
            out.append((heading, section.text))
            continue
        if run and sum(len(i) + 1 for _, _, i in run) + len(inline) > max_chars:
            flush()
        run.append((heading, section.text, inline))
    flush()
    return out


def chunk_document(
    document: ParsedDocument, *, max_chars: int = 500, overlap_chars: int = 100
) -> list[Chunk]:
    """Split every section into overlapping sentence-aligned chunks headed by title › section.

    Runs of tiny sections share chunks (see TINY_SECTION_FRACTION), so a file's chunk count
    grows with its text, not with its number of headings.
    """
    if max_chars < 50 or not 0 <= overlap_chars < max_chars:
        raise ValueError("chunk size must be >= 50 and overlap smaller than the chunk size")
    chunks: list[Chunk] = []
    for heading, text in _sections(document, max_chars):
        for packed in _pack(split_sentences(text), max_chars, overlap_chars):
            chunks.append(Chunk(position=len(chunks), heading=heading, text=packed))
    return chunks
