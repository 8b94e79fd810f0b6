from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.config import Settings

ENV_EXAMPLE = Path(__file__).resolve().parents[2] / ".env.example"
# The variable each setting is read from: RAGTUNE_<NAME>, or its first alias.
ENV_NAMES = {
    name: (
        field.validation_alias.choices[0]  # type: ignore[union-attr]
        if field.validation_alias is not None
        else f"RAGTUNE_{name.upper()}"
    )
    for name, field in Settings.model_fields.items()
}


def _example_lines() -> list[str]:
    return ENV_EXAMPLE.read_text().splitlines()


def test_env_example_lists_every_setting_and_nothing_else() -> None:
    keys = {m.group(1) for line in _example_lines() if (m := re.match(r"^(\w+)=", line))}
    assert keys == set(ENV_NAMES.values())


def test_every_setting_is_documented_in_code_and_in_env_example() -> None:
    lines = _example_lines()
    for number, line in enumerate(lines):
        if re.match(r"^\w+=", line):
            assert lines[number - 1].startswith("# "), f"{line} needs a comment above it"
    for name, field in Settings.model_fields.items():
        assert field.description, f"Settings.{name} needs a description"


def test_env_example_values_are_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    pairs = [m.groups() for line in _example_lines() if (m := re.match(r"^(\w+)=(.*)$", line))]
    for key, value in pairs:
        monkeypatch.setenv(key, value)
    from_example = Settings(_env_file=None)
    for key, _ in pairs:
        monkeypatch.delenv(key)
    assert from_example == Settings(_env_file=None)  # the example documents the defaults


def test_environment_overrides_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RAGTUNE_DB", str(tmp_path / "other.db"))
    monkeypatch.setenv("RAGTUNE_CHUNK_CHARS", "800")
    settings = Settings(_env_file=None)
    assert settings.db == tmp_path / "other.db" and settings.chunk_chars == 800


def test_invalid_values_are_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAGTUNE_CHUNK_CHARS", "10")
    with pytest.raises(ValueError, match="chunk_chars"):
        Settings(_env_file=None)


def test_admin_ids_are_comma_separated_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAGTUNE_ADMIN_IDS", "1001, 42")
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123:abc")
    settings = Settings(_env_file=None)
    assert settings.admin_ids == (1001, 42)
    assert settings.telegram_bot_token is not None
    assert "123:abc" not in repr(settings)  # the token never shows in logs or reprs
