"""The model worker: queue, cancellation and limits, with a scripted engine."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from bot.llm.engine import GenerationLimits, Message
from bot.llm.worker import ModelWorker, QueueFullError
from tests.helpers import ScriptedEngine

LIMITS = GenerationLimits(max_tokens=50, timeout_s=10)
HELLO: list[Message] = [{"role": "user", "content": "hello"}]


def test_jobs_run_in_order_and_report_their_queue_position() -> None:
    engine = ScriptedEngine(["one two", "three four"], delay_s=0.01)
    worker = ModelWorker(engine, max_queue=4)
    first, second = worker.submit(HELLO, LIMITS), worker.submit(HELLO, LIMITS)
    assert (first.position, second.position) == (0, 1)
    assert list(first.pieces()) == ["one", " two"]
    assert second.result().text == "three four"
    assert first.result().finish_reason == "stop" and first.result().tokens == 2
    worker.close()


def test_a_full_queue_refuses_at_once() -> None:
    engine = ScriptedEngine(["slow " * 100], delay_s=0.05)
    worker = ModelWorker(engine, max_queue=2)
    running = worker.submit(HELLO, LIMITS)
    assert engine.started.wait(5)
    queued = [worker.submit(HELLO, LIMITS) for _ in range(2)]
    started = time.perf_counter()
    with pytest.raises(QueueFullError, match="try again shortly"):
        worker.submit(HELLO, LIMITS)
    assert time.perf_counter() - started < 0.1
    for job in (running, *queued):
        job.cancel()
    worker.close()


def test_cancel_stops_between_tokens_and_skips_queued_jobs() -> None:
    engine = ScriptedEngine(["word " * 200, "never"], delay_s=0.01)
    worker = ModelWorker(engine, max_queue=4)
    running, waiting = worker.submit(HELLO, LIMITS), worker.submit(HELLO, LIMITS)
    assert engine.started.wait(5)
    waiting.cancel()
    # A queued job is finished by the cancel itself, not when its turn comes (~2 s from now).
    assert waiting.result(timeout=0.05).finish_reason == "cancelled"
    assert list(waiting.pieces()) == []
    time.sleep(0.05)
    running.cancel()
    done = running.result(timeout=2)
    assert done.finish_reason == "cancelled" and 0 < done.tokens < 50
    assert waiting.result(timeout=2).finish_reason == "cancelled"
    assert len(engine.history) == 1  # the cancelled waiting job never reached the engine
    worker.close()


def test_token_and_time_limits() -> None:
    engine = ScriptedEngine(["w " * 100, "w " * 100], delay_s=0.02)
    worker = ModelWorker(engine)
    assert worker.generate(HELLO, GenerationLimits(max_tokens=5)).finish_reason == "length"
    timed = worker.generate(HELLO, GenerationLimits(max_tokens=100, timeout_s=0.1))
    assert timed.finish_reason == "timeout" and timed.tokens < 100
    worker.close()


def test_engine_errors_reach_the_caller_and_the_worker_survives() -> None:
    class Broken(ScriptedEngine):
        def stream(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            raise RuntimeError("boom")

    worker = ModelWorker(Broken())
    with pytest.raises(RuntimeError, match="boom"):
        worker.generate(HELLO, LIMITS)
    worker.engine = ScriptedEngine(["fine"])
    assert worker.generate(HELLO, LIMITS).text == "fine"
    worker.close()


def test_async_streaming_never_blocks_the_event_loop() -> None:
    engine = ScriptedEngine(["a b c d e"], delay_s=0.05)
    worker = ModelWorker(engine)

    async def main() -> tuple[list[str], int]:
        ticks = 0
        stop = threading.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0.01)

        task = asyncio.create_task(ticker())
        pieces = [p async for p in worker.submit(HELLO, LIMITS).apieces()]
        stop.set()
        await task
        return pieces, ticks

    pieces, ticks = asyncio.run(main())
    assert "".join(pieces) == "a b c d e"
    assert ticks >= 10  # the loop kept running while ~0.25 s of generation went on
    worker.close()


def test_each_job_runs_with_its_adapter_and_the_default_stays_for_everyone_else(
    tmp_path: Path,
) -> None:
    engine = ScriptedEngine()
    worker = ModelWorker(engine)
    tuned = tmp_path / "tuned.gguf"
    try:
        worker.generate(HELLO, LIMITS)
        worker.submit(HELLO, LIMITS, adapter=tuned).result()  # an evaluation's job, say
        worker.generate(HELLO, LIMITS)  # a user's: back on the default
        worker.set_default_adapter(tuned)
        worker.generate(HELLO, LIMITS)
        worker.submit(HELLO, LIMITS, adapter=None).result()
        worker.generate(HELLO, LIMITS)
    finally:
        worker.close()
    assert engine.adapters_used == [None, tuned, None, tuned, None, tuned]
    assert engine.switches == 5  # switched only when the adapter changed
