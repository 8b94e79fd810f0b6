"""The suite-wide secrets check (conftest) finds the known token however it is written."""

from __future__ import annotations

from tests.helpers import KNOWN_TOKEN, WEBHOOK_SECRET, secrets_in


def test_the_known_secrets_are_found_plain_and_percent_encoded() -> None:
    assert secrets_in(f"GET /bot{KNOWN_TOKEN}/getMe") == [KNOWN_TOKEN]
    assert secrets_in(f"GET /file/bot{KNOWN_TOKEN.replace(':', '%3A')}/x") == [KNOWN_TOKEN]
    assert secrets_in(f"secret_token={WEBHOOK_SECRET}") == [WEBHOOK_SECRET]
    assert secrets_in("GET /bot[REDACTED]/getMe") == []
