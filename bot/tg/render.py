"""Telegram rendering: HTML built by escaping (never raw model Markdown), split at 4096 chars."""

from __future__ import annotations

import html
from collections.abc import Sequence

from bot.core.answer import Answer, Source

TELEGRAM_LIMIT = 4096


def split_message(text: str, limit: int = TELEGRAM_LIMIT) -> list[str]:
    """Split text into parts of at most `limit` characters, on paragraph, line or word breaks."""
    parts: list[str] = []
    rest = text
    while len(rest) > limit:
        window = rest[:limit]
        cut = max(window.rfind("\n\n"), window.rfind("\n"), window.rfind(" "))
        if cut <= limit // 2:  # no break in the second half: cut hard,
            cut = limit
            entity = window.rfind("&")
            if entity > window.rfind(";"):  # but never inside an HTML entity such as &amp;
                cut = entity
        parts.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest or not parts:
        parts.append(rest)
    return parts


def sources_html(sources: Sequence[Source]) -> str:
    """A compact numbered list of sources, escaped."""
    lines = [
        f"[{s.number}] {html.escape(s.hit.chunk.heading or s.hit.chunk.title)}" for s in sources
    ]
    return "<i>Sources:</i>\n" + "\n".join(lines) if lines else ""


def answer_html(answer: Answer) -> list[str]:
    """The final answer as HTML parts, each at most 4096 characters, sources at the end."""
    body = html.escape(answer.text)
    sources = sources_html(answer.shown_sources)
    parts = split_message(body, TELEGRAM_LIMIT)
    if sources:
        if len(parts[-1]) + 2 + len(sources) <= TELEGRAM_LIMIT:
            parts[-1] = f"{parts[-1]}\n\n{sources}"
        else:
            parts.extend(split_message(sources))
    return parts
