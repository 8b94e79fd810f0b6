"""Logging that can never print a secret: every handler's output passes through redaction."""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Iterable

REDACTED = "[redacted]"


class RedactingFormatter(logging.Formatter):
    """A formatter that blanks the given secrets (and their URL-encoded forms) in every line."""

    def __init__(self, fmt: str | None, secrets: Iterable[str]) -> None:
        super().__init__(fmt)
        variants = {form for s in secrets if s for form in (s, urllib.parse.quote(s, safe=""))}
        self.secrets = sorted(variants, key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        """The usual line, tracebacks included, with secrets replaced."""
        text = super().format(record)
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return text


def redact_secrets(secrets: Iterable[str]) -> None:
    """Make every root log handler redact `secrets` from what it writes."""
    kept = list(secrets)
    for handler in logging.getLogger().handlers:
        fmt = handler.formatter._fmt if handler.formatter else None
        handler.setFormatter(RedactingFormatter(fmt, kept))
