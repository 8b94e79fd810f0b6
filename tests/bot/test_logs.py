"""Secrets never reach a log line, tracebacks included."""

from __future__ import annotations

import io
import logging

from bot.logs import REDACTED, RedactingFormatter

TOKEN = "123456:AAE-secret_token"


def test_secrets_and_their_url_encoded_form_are_redacted_everywhere() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(RedactingFormatter("%(levelname)s %(message)s", [TOKEN, ""]))
    logger = logging.getLogger("test.redaction")
    logger.addHandler(handler)
    try:
        logger.warning("GET https://api.telegram.org/bot%s/getMe", TOKEN)
        logger.warning("GET /file/bot123456%3AAAE-secret_token/doc")
        try:
            raise RuntimeError(f"bad token {TOKEN}")
        except RuntimeError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert TOKEN not in text and "secret_token" not in text
    assert text.count(REDACTED) == 3  # both URLs and the exception line of the traceback
