"""Telegram rendering: HTML built by escaping (never raw model Markdown), split at 4096 chars."""

from __future__ import annotations

import html
import re
from collections.abc import Sequence

from bot.core.admin import UPLOAD_SOURCE
from bot.core.answer import Answer, Source
from bot.core.guard import untappable_commands

TELEGRAM_LIMIT = 4096
EMPTY_ANSWER = "(The model gave no answer; try asking another way.)"
# C0 controls other than tab and newline, DEL, and lone surrogates: Telegram refuses or mangles
# them, and a model can emit any of them.
_UNSENDABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\ud800-\udfff]")


def utf16_length(text: str) -> int:
    """Length as Telegram counts it: UTF-16 code units (an emoji can be two)."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def sendable(text: str) -> str:
    """`text` without characters Telegram cannot take."""
    return _UNSENDABLE.sub("", text)


def _fit(text: str, limit: int) -> int:
    """The longest prefix length (in code points) of `text` within `limit` UTF-16 units."""
    end = min(len(text), limit)
    while utf16_length(text[:end]) > limit:
        end -= max(1, (utf16_length(text[:end]) - limit) // 2)
    return end


def preview(text: str, limit: int = TELEGRAM_LIMIT) -> str:
    """A streamed draft or edit: plain text Telegram accepts, cut to the limit."""
    clean = untappable_commands(sendable(text).strip())
    return clean[: _fit(clean, limit)]


def split_message(text: str, limit: int = TELEGRAM_LIMIT) -> list[str]:
    """Split text into parts of at most `limit` UTF-16 units, on paragraph, line or word breaks."""
    parts: list[str] = []
    rest = text
    while utf16_length(rest) > limit:
        window = rest[: _fit(rest, limit)]
        limit_here = len(window)
        cut = max(window.rfind("\n\n"), window.rfind("\n"), window.rfind(" "))
        if cut <= limit_here // 2:  # no break in the second half: cut hard,
            cut = limit_here
            entity = window.rfind("&")
            if entity > 0 and entity > window.rfind(";"):  # never inside an entity like &amp;
                cut = entity
        part = rest[:cut].rstrip()
        if part:
            parts.append(part)
        rest = rest[cut:].lstrip()
    if rest or not parts:
        parts.append(rest)
    return parts


def source_name(source: Source) -> str:
    """A source as a reader sees it: its heading (or title), and an upload's file name (a
    server path of a document added on the command line is not shown)."""
    chunk = source.hit.chunk
    name = chunk.heading or chunk.title
    if chunk.source.startswith(UPLOAD_SOURCE):
        return f"{name} — {chunk.source.removeprefix(UPLOAD_SOURCE)}"
    return name


def sources_html(sources: Sequence[Source]) -> str:
    """A compact numbered list of sources, escaped."""
    lines = [f"[{s.number}] {html.escape(source_name(s))}" for s in sources]
    return "<i>Sources:</i>\n" + "\n".join(lines) if lines else ""


EVIDENCE_CHARS = 400
"""A quoted sentence longer than this is cut (a chunk size set very large can make one)."""


def _short(sentence: str) -> str:
    return sentence if len(sentence) <= EVIDENCE_CHARS else sentence[: EVIDENCE_CHARS - 1] + "…"


def evidence_html(evidence: Sequence[str]) -> str:
    """The quoted source sentences an answer rests on, as one escaped blockquote."""
    quoted = [f"“{html.escape(untappable_commands(sendable(_short(s))))}”" for s in evidence]
    return f"<blockquote>{chr(10).join(quoted)}</blockquote>" if quoted else ""


def answer_html(answer: Answer) -> list[str]:
    """The final answer as HTML parts within Telegram's limit: answer, evidence, sources."""
    text = untappable_commands(sendable(answer.text).strip()) or EMPTY_ANSWER
    body = html.escape(text)
    sources = "\n\n".join(
        part
        # A quoted reply is the evidence already (bot.core.support): not quoted twice.
        for part in (
            evidence_html([] if answer.quoted else answer.evidence),
            sources_html(answer.shown_sources),
        )
        if part
    )
    parts = split_message(body, TELEGRAM_LIMIT)
    if sources:
        if utf16_length(parts[-1]) + 2 + utf16_length(sources) <= TELEGRAM_LIMIT:
            parts[-1] = f"{parts[-1]}\n\n{sources}"
        else:
            parts.extend(split_message(sources))
    return parts
