"""The Qwen model through the real bot (`ragtune run`, the Bot API emulator): grounded answers,
and a Chinese question answered in Chinese."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bot.local.emulator import BotAPIEmulator
from knowledge.embeddings import SentenceTransformerEmbedder
from knowledge.ingest import Ingestor
from knowledge.store import KnowledgeStore
from tests.helpers import KNOWN_TOKEN, QWEN, qwen_gguf_path

pytestmark = pytest.mark.slow
RAGTUNE = str(Path(sys.executable).parent / "ragtune")
EXAMPLES = Path(__file__).resolve().parents[2] / "knowledge" / "examples"
CJK = re.compile(r"[\u4e00-\u9fff]")


def final_text(emulator: BotAPIEmulator, chat: int) -> str:
    """The chat's last message once the answer is complete (its sources are listed last)."""
    emulator.wait_for(
        lambda: (
            bool(emulator.messages(chat))
            and "Sources:" in emulator.last_message(chat).get("text", "")
        ),
        timeout=240,
    )
    return str(emulator.last_message(chat)["text"])


def test_qwen_answers_from_the_knowledge_base_in_the_language_of_the_question(
    tmp_path: Path, emulator: BotAPIEmulator, real_embedder: SentenceTransformerEmbedder
) -> None:
    qwen_gguf_path()  # skips (or under CI fails) where it is not installed
    env = {
        **os.environ,
        "RAGTUNE_MODEL": QWEN,
        "RAGTUNE_DB": str(tmp_path / "kb.db"),
        "RAGTUNE_STATE_DB": str(tmp_path / "state.db"),
        "TELEGRAM_BOT_TOKEN": KNOWN_TOKEN,
        "RAGTUNE_TELEGRAM_API_URL": emulator.base_url,
        "RAGTUNE_TELEGRAM_FILE_URL": emulator.base_file_url,
    }
    env.pop("RAGTUNE_MODEL_PATH", None)
    with KnowledgeStore.open(tmp_path / "kb.db") as store:  # in this process: no second load
        added = Ingestor(store, real_embedder).add_paths(
            [EXAMPLES / "cafe_faq.md", EXAMPLES / "cafe_faq_zh.md"]
        )
        assert not added.failures
    proc = subprocess.Popen([RAGTUNE, "run"], env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)  # fmt: skip
    try:
        emulator.wait_for(lambda: bool(emulator.sent("setMyCommands")), timeout=120)
        emulator.send_text("How much does parking cost?", user_id=5)
        english = final_text(emulator, 5)
        emulator.send_text(
            "周六咖啡馆几点开门？", user_id=6
        )  # "When does the café open on Saturday?"
        chinese = final_text(emulator, 6)
    finally:
        proc.send_signal(signal.SIGINT)
        log, _ = proc.communicate(timeout=60)
        print(log)
    assert proc.returncode == 0, log[-3000:]
    answer, _, sources = english.partition("Sources:")
    assert "2 euros" in answer and "Is there parking?" in sources, english
    answer, _, sources = chinese.partition("Sources:")
    assert len(CJK.findall(answer)) >= 5, chinese  # answered in Chinese
    assert re.search(r"(9|九)\s*点", answer), chinese  # 9 am, the Saturday opening
    assert "港湾街咖啡馆" in sources, chinese  # the Chinese FAQ is the source
