"""1,000 adversarial texts: every part Telegram gets is within its limit and parses, none lost."""

from __future__ import annotations

import html
import os
import random
import re
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from bot.config import Settings
from bot.core.answer import Answer, Mode
from bot.local.emulator import BotAPIEmulator
from bot.tg.handlers import APOLOGY
from bot.tg.render import answer_html, sendable, utf16_length
from tests.bot.test_telegram import delivered, run_bot
from tests.helpers import KNOWN_TOKEN, ScriptedEngine, scripted_services

FRAGMENTS = [
    "<b>", "</b>", "<i>unclosed", "</i>", "<script>alert(1)</script>", "<a href='x'>", "**bold**",
    "__under__", "`code`", "```block```", "[link](http://x)", "&", "&amp;", "&#x27;", "&lt", "<",
    ">", "<<>>", "\x00", "\x07", "\x1b[31m", "\u202eRTL override", "שלום עולם", "مرحبا بالعالم",
    "你好，世界", "日本語のテキスト", "😀", "👨‍👩‍👧‍👦", "🇪🇪", "\ud83d", "\n", "\n\n", "\t", " ",
    "[1]", "[99]", "word", "Tallinn", "ok",
]  # fmt: skip
EMPTY = "(The model gave no answer; try asking another way.)"
LENGTHS = [0, 1, 50, 4095, 4096, 4097, 8192, 20_000]


def adversarial_texts(count: int, seed: int = 7) -> Iterator[str]:
    """Seeded mixes of hostile fragments at the lengths that matter (0 to 20,000)."""
    rng = random.Random(seed)
    for number in range(count):
        target = LENGTHS[number % len(LENGTHS)] if number % 3 else rng.randint(0, 300)
        if number % 10 == 0:  # one fragment repeated: all emoji, all '&', all '<'...
            piece = rng.choice(FRAGMENTS)
            yield piece * (target // max(1, len(piece)))
            continue
        text: list[str] = []
        while sum(map(len, text)) < target:
            text.append(rng.choice(FRAGMENTS))
        yield "".join(text)[:target]


def visible(parts: list[str]) -> str:
    """What a reader sees of HTML parts: tags dropped, entities decoded, whitespace ignored."""
    return re.sub(r"\s", "", html.unescape(re.sub(r"</?i>", "", "".join(parts))))


TEXTS = int(os.environ.get("RAGTUNE_ADVERSARIAL_TEXTS", "1000"))  # bench/soak.py sends more


def test_a_thousand_adversarial_answers_render_within_limits_and_lose_nothing() -> None:
    # Its Bot API side checks texts as Telegram does; no server is started.
    emulator = BotAPIEmulator(token=KNOWN_TOKEN)
    sent = 0
    for text in adversarial_texts(TEXTS):
        parts = answer_html(Answer(text, Mode.RAG, [], [], None))
        for part in parts:
            assert part.strip() and utf16_length(part) <= 4096
            status, body = emulator.call(
                "sendMessage", {"chat_id": 1, "text": part, "parse_mode": "HTML"}
            )
            assert status == 200, (body, part[:200])
            sent += 1
        expected = re.sub(r"\s", "", sendable(text)) or re.sub(r"\s", "", EMPTY)
        assert visible(parts) == expected
    assert sent >= TEXTS
    print(f"adversarial texts: {TEXTS} rendered as {sent} messages, all <= 4096 UTF-16 units, "
          "0 refused")  # fmt: skip


def test_hostile_model_output_and_user_text_through_the_bot(
    emulator: BotAPIEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", emulator.token)
    monkeypatch.setenv("RAGTUNE_TELEGRAM_API_URL", emulator.base_url)
    monkeypatch.setenv("RAGTUNE_TELEGRAM_FILE_URL", emulator.base_file_url)
    monkeypatch.setenv("RAGTUNE_STATE_DB", str(tmp_path / "state.db"))
    settings = Settings(_env_file=None)
    # llama.cpp decodes its output with errors ignored, so a model never emits a lone surrogate;
    # users' texts may carry anything.
    hostile = [t.replace(" ", "\u00a0").replace("\ud83d", "") for t in adversarial_texts(40, 11)]
    engine = ScriptedEngine([t or "x" for t in hostile])
    questions = [t for t in adversarial_texts(40, seed=12) if sendable(t).strip()][:20]

    def scenario() -> None:
        for number, question in enumerate([*questions, *["and?"] * (40 - len(questions))]):
            user = 1000 + number
            emulator.send_text(question, user_id=user)
            emulator.wait_for(partial(lambda u: bool(delivered(emulator, u)), user), timeout=30)

    run_bot(settings, scripted_services(tmp_path, engine, queue=64), scenario)
    replies = [text for number in range(40) for text in delivered(emulator, 1000 + number)]
    assert len(replies) >= 40 and APOLOGY not in replies
    assert all(utf16_length(text) <= 4096 for text in replies)
