"""The bot's own cost: a question through Telegram's HTTP stack versus the core answering it.

Through the local Bot API emulator (real HTTP, python-telegram-bot's real stack, the real model
and embedder): time from the update being available to the final answer message arriving, and to
the first visible text (a draft, or the answer itself), versus `Answerer` answering the same
question directly in the same process. Both sides start from an empty prompt cache; the order
alternates per question.

Run: `make bench` or `python -m bench.bot_latency [QUESTIONS] [ROUNDS]`; the overhead is the median
of the rounds' ratios of medians.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import DEV_EVAL_DIR, median, percentiles_ms, report
from bot import app
from bot.config import Settings
from bot.core.answer import Answerer
from bot.llm.llama import LlamaCppEngine
from bot.local.chat import emulator_settings, running_bot
from bot.local.emulator import BotAPIEmulator
from bot.tg.context import BotServices
from knowledge.evaluation import load_questions

QUESTIONS = 20
ROUNDS = 3


def through_bot(emulator: BotAPIEmulator, question: str, user_id: int) -> tuple[float, float]:
    """(seconds to first visible text, seconds to the final message) for one question."""
    asked = time.monotonic()
    emulator.send_text(question, user_id=user_id)
    emulator.wait_for(lambda: bool(emulator.sent("sendMessage", user_id)), timeout=120)
    final = emulator.sent("sendMessage", user_id)[-1].at
    drafts = emulator.sent("sendMessageDraft", user_id)
    first = min([final] + [d.at for d in drafts])
    return first - asked, final - asked


def direct(answerer: Answerer, question: str) -> tuple[float, float]:
    """(seconds to first token, seconds to the finished Answer) through the core."""
    started = time.perf_counter()
    run = answerer.begin(question)
    first = None
    for _ in run.pieces():
        first = first or time.perf_counter() - started
    run.answer()
    total = time.perf_counter() - started
    return first or total, total


def main() -> None:
    """Measure and report."""
    count = int(sys.argv[1]) if len(sys.argv) > 1 else QUESTIONS
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else ROUNDS
    questions = [q.question for q in load_questions(DEV_EVAL_DIR / "questions.jsonl")[::11][:count]]
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(_env_file=None).model_copy(
            update={"db": Path(tmp) / "kb.db", "state_db": Path(tmp) / "state.db"}
        )
        store = app.open_store(settings)
        embedder = app.build_embedder(settings)
        app.build_ingestor(settings, store, embedder).add_paths([DEV_EVAL_DIR / "corpus.jsonl"])
        store.close()
        services, close = app.build_bot_services(settings)
        engine = services.chat.answerer.worker.engine
        assert isinstance(engine, LlamaCppEngine)
        llama: Any = engine._llama  # reset between questions while the worker is idle
        bot_first: list[float] = []
        bot_final: list[float] = []
        core_first: list[float] = []
        core_final: list[float] = []

        ratios: list[float] = []

        def scenario() -> None:
            for _ in range(rounds):
                seen = len(bot_final)
                ask_all()
                ratios.append(median(bot_final[seen:]) / median(core_final[seen:]))

        def ask_all() -> None:
            for number, question in enumerate(questions):
                for side in ("bot", "core") if number % 2 == 0 else ("core", "bot"):
                    llama.reset()
                    if side == "bot":
                        first, final = through_bot(emulator, question, 10_000 + len(bot_final))
                        bot_first.append(first)
                        bot_final.append(final)
                    else:
                        first, final = direct(answerer, question)
                        core_first.append(first)
                        core_final.append(final)

        # The core side answers with no chat memory, like each new user on the bot side.
        answerer = services.chat.answerer
        emulator = BotAPIEmulator()
        emulator.start()

        def prebuilt() -> tuple[BotServices, Callable[[], None]]:
            return services, close

        async def run() -> None:
            async with running_bot(emulator_settings(settings, emulator, 1), prebuilt):
                await asyncio.to_thread(scenario)

        try:
            asyncio.run(run())
        finally:
            emulator.stop()
    first_p50, first_p95 = percentiles_ms(bot_first)
    report(
        "bot_latency",
        {
            "questions": len(questions),
            "rounds": rounds,
            "bot_update_to_final_p50_s": round(median(bot_final), 3),
            "core_answer_p50_s": round(median(core_final), 3),
            "overhead_ratio": round(median(ratios), 3),
            "overhead_ratio_per_round": [round(r, 3) for r in ratios],
            "bot_first_visible_text_p50_ms": round(first_p50),
            "bot_first_visible_text_p95_ms": round(first_p95),
            "core_first_token_p50_ms": round(percentiles_ms(core_first)[0]),
        },
    )


if __name__ == "__main__":
    main()
