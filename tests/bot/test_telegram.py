"""The bot through python-telegram-bot's real HTTP stack against the local Bot API emulator."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bot.config import Settings
from bot.core.answer import Answerer, AnswerSettings
from bot.llm.engine import GenerationLimits
from bot.llm.worker import ModelWorker
from bot.state import StateStore
from bot.tg.emulator import BotAPIEmulator
from bot.tg.handlers import WELCOME, BotServices
from bot.tg.local import running_bot
from knowledge.ingest import Ingestor
from knowledge.search import HybridSearcher
from knowledge.store import KnowledgeStore
from tests.helpers import HashEmbedder, ScriptedEngine

FACTS = "The capital of Estonia is Tallinn. Tallinn has a medieval old town."


@pytest.fixture
def emulator() -> Iterator[BotAPIEmulator]:
    started = BotAPIEmulator()
    started.start()
    yield started
    started.stop()


@pytest.fixture
def settings(tmp_path: Path, emulator: BotAPIEmulator, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", emulator.token)
    monkeypatch.setenv("RAGTUNE_TELEGRAM_API_URL", emulator.base_url)
    monkeypatch.setenv("RAGTUNE_TELEGRAM_FILE_URL", emulator.base_file_url)
    monkeypatch.setenv("RAGTUNE_STATE_DB", str(tmp_path / "state.db"))
    return Settings(_env_file=None)


def scripted_services(
    tmp_path: Path, engine: ScriptedEngine
) -> Callable[[], tuple[BotServices, Callable[[], None]]]:
    """Real store, search and state with a scripted model (the model has tests of its own)."""

    def build() -> tuple[BotServices, Callable[[], None]]:
        store = KnowledgeStore.open(tmp_path / "kb.db")
        embedder = HashEmbedder()
        (tmp_path / "estonia.txt").write_text(FACTS)
        Ingestor(store, embedder).add_paths([tmp_path / "estonia.txt"])
        state = StateStore.open(tmp_path / "state.db")
        worker = ModelWorker(engine)
        answerer = Answerer(
            worker, HybridSearcher(store, embedder), state=state,
            settings=AnswerSettings(
                min_similarity=-1.0, limits=GenerationLimits(max_tokens=5000)
            ),
        )  # fmt: skip

        def close() -> None:
            worker.close()
            store.close()
            state.close()

        return BotServices(answerer, state), close

    return build


def run_bot(
    settings: Settings,
    services: Callable[[], tuple[BotServices, Callable[[], None]]],
    scenario: Callable[[], None],
) -> None:
    """Start the real Application (polling the emulator), run `scenario` in a thread, stop."""

    async def main() -> None:
        async with running_bot(settings, services):
            await asyncio.to_thread(scenario)

    asyncio.run(main())


def texts(emulator: BotAPIEmulator, chat_id: int) -> list[str]:
    return [str(c.params["text"]) for c in emulator.sent("sendMessage", chat_id)]


def test_start_greets(settings: Settings, emulator: BotAPIEmulator, tmp_path: Path) -> None:
    def scenario() -> None:
        emulator.send_text("/start", user_id=5)
        emulator.wait_for(lambda: bool(texts(emulator, 5)))

    run_bot(settings, scripted_services(tmp_path, ScriptedEngine()), scenario)
    assert texts(emulator, 5) == [WELCOME]


def test_a_private_question_is_answered_with_sources(
    settings: Settings, emulator: BotAPIEmulator, tmp_path: Path
) -> None:
    engine = ScriptedEngine(["Tallinn [1]"])

    def scenario() -> None:
        emulator.send_text("What is the capital of Estonia?", user_id=5)
        emulator.wait_for(lambda: bool(texts(emulator, 5)))

    run_bot(settings, scripted_services(tmp_path, engine), scenario)
    (reply,) = texts(emulator, 5)
    assert reply.startswith("Tallinn [1]\n\n<i>Sources:</i>\n[1] estonia")
    assert "What is the capital of Estonia?" in engine.history[0][-1]["content"]


def test_groups_hear_only_mentions(
    settings: Settings, emulator: BotAPIEmulator, tmp_path: Path
) -> None:
    engine = ScriptedEngine(["Tallinn [1]"])

    def scenario() -> None:
        emulator.send_text("chatting about Estonia", user_id=5, chat_id=-100, chat_type="group")
        emulator.send_text("@ragtune_bot capital of Estonia?", user_id=5, chat_id=-100,
                           chat_type="group")  # fmt: skip
        emulator.wait_for(lambda: bool(texts(emulator, -100)))

    run_bot(settings, scripted_services(tmp_path, engine), scenario)
    assert len(engine.history) == 1  # only the mention reached the model
    assert texts(emulator, -100)[0].startswith("Tallinn [1]")


def test_hostile_model_output_and_long_answers_are_sent_safely(
    settings: Settings, emulator: BotAPIEmulator, tmp_path: Path
) -> None:
    hostile = "<script>alert(1)</script> **bold** <b>unclosed & <i>tags [1]"
    long_answer = " ".join(["word"] * 2500)  # ~12,500 characters
    engine = ScriptedEngine([hostile, long_answer])

    def scenario() -> None:
        emulator.send_text("first?", user_id=5)
        emulator.wait_for(lambda: len(texts(emulator, 5)) >= 1)
        emulator.send_text("second?", user_id=5)
        emulator.wait_for(lambda: len(texts(emulator, 5)) >= 4)

    run_bot(settings, scripted_services(tmp_path, engine), scenario)
    sent = texts(emulator, 5)
    assert sent[0].startswith(
        "&lt;script&gt;alert(1)&lt;/script&gt; **bold** &lt;b&gt;unclosed &amp;"
    )
    assert all(len(part) <= 4096 for part in sent)
    assert sum(part.count("word") for part in sent[1:]) == 2500
