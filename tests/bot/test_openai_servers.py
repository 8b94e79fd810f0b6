"""The OpenAI-compatible engine against small local stand-ins of vLLM and of a failing server.

The stand-in checks each request as vLLM documents it (docs.vllm.ai: "LoRA Adapters", dynamic
serving with /v1/load_lora_adapter; the /tokenize endpoint): an adapter is loaded from its
peft folder by name, then asked for as the request's "model". vLLM itself was not run here; the
real llama-server has tests of its own (tests/bot/test_llama_server.py).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.llm.engine import GenerationLimits, Message, ModelError
from bot.llm.openai_http import OpenAIEngine
from bot.llm.worker import ModelWorker

LIMITS = GenerationLimits(max_tokens=3)
HELLO: list[Message] = [{"role": "user", "content": "Hello"}]


@dataclass
class StandIn:
    """What the stand-in server was asked, and what it should do next."""

    kind: str  # "vllm" or "plain"
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    loaded: dict[str, str] = field(default_factory=dict)
    failures: list[int] = field(default_factory=list)
    """Status codes the next chat completions answer with, in turn (then 200)."""
    break_after_first_piece: bool = False
    ending: str = "done"
    """How a whole answer ends: "done" ([DONE]), "finish" (a finish_reason only), "none"."""
    word_delay_s: float = 0.0
    """Pause before each word: a slow server (or one that stalls before the first word)."""
    hung_up: list[str] = field(default_factory=list)
    """Models of the answers whose client went away before the end."""


def serve(stand_in: StandIn) -> ThreadingHTTPServer:
    """A local server speaking the stand-in's dialect on 127.0.0.1."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _json(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            stand_in.requests.append((f"GET {self.path}", {}))
            if self.path == "/v1/models":
                owner = "vllm" if stand_in.kind == "vllm" else "someone"
                models = [{"id": "base", "owned_by": owner}]
                models += [{"id": n, "owned_by": owner} for n in stand_in.loaded]
                self._json(200, {"object": "list", "data": models})
            else:
                self._json(404, {"error": "not found"})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            stand_in.requests.append((f"POST {self.path}", body))
            if self.path == "/tokenize" and stand_in.kind == "vllm":
                assert set(body) >= {"model", "prompt"}, body  # vLLM's shape
                self._json(200, {"count": len(body["prompt"].split()), "max_model_len": 2048,
                                 "tokens": list(range(len(body["prompt"].split())))})  # fmt: skip
            elif self.path == "/v1/load_lora_adapter" and stand_in.kind == "vllm":
                assert set(body) == {"lora_name", "lora_path"}, body
                if not (Path(body["lora_path"]) / "adapter_config.json").is_file():
                    self._json(400, {"message": f"No adapter found for {body['lora_path']}"})
                    return
                stand_in.loaded[body["lora_name"]] = body["lora_path"]
                self._json(200, {"message": f"Success: LoRA adapter {body['lora_name']}"})
            elif self.path == "/v1/chat/completions":
                self._chat(body)
            else:
                self._json(404, {"error": "not found"})

        def _chat(self, body: dict[str, Any]) -> None:
            if stand_in.failures:
                self._json(stand_in.failures.pop(0), {"error": "overloaded"})
                return
            if body["model"] not in {"base", *stand_in.loaded}:
                self._json(404, {"message": f"The model `{body['model']}` does not exist."})
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            if stand_in.break_after_first_piece:  # promises more than it will send
                self.send_header("Content-Length", "100000")
            self.end_headers()
            try:
                words = ("answered", "by", body["model"], *["and", "so", "on"] * 10)
                for word in words[: body["max_tokens"]]:
                    time.sleep(stand_in.word_delay_s)
                    chunk = {"choices": [{"index": 0, "delta": {"content": f"{word} "}}]}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.flush()
                    if stand_in.break_after_first_piece:
                        self.connection.close()  # the server dies mid-answer
                        return
                if stand_in.ending == "finish":
                    last = {"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]}
                    self.wfile.write(f"data: {json.dumps(last)}\n\n".encode())
                elif stand_in.ending == "done":
                    self.wfile.write(b"data: [DONE]\n\n")
            except (BrokenPipeError, ConnectionResetError):
                stand_in.hung_up.append(body["model"])

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def vllm() -> Iterator[tuple[StandIn, str]]:
    stand_in = StandIn("vllm")
    server = serve(stand_in)
    yield stand_in, f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def peft_adapter(tmp_path: Path, name: str) -> Path:
    """An adapters-directory entry with its peft folder, as `ragtune tune train` leaves it."""
    folder = tmp_path / "adapters" / name
    (folder / "peft").mkdir(parents=True)
    (folder / "peft" / "adapter_config.json").write_text('{"peft_type": "LORA"}')
    (folder / "adapter.gguf").write_bytes(b"GGUF")
    return folder / "adapter.gguf"


def test_vllm_gets_adapters_by_name_loaded_from_their_peft_folder(
    vllm: tuple[StandIn, str], tmp_path: Path
) -> None:
    stand_in, url = vllm
    engine = OpenAIEngine(url, "base")
    faq = peft_adapter(tmp_path, "faq")
    assert engine.flavor == "vllm" and engine.supports_lora and engine.concurrency == 8
    engine.use_adapter(faq)
    engine.use_adapter(faq)  # loaded once
    with_adapter = "".join(engine.stream(HELLO, LIMITS, lambda: False, faq))
    without = "".join(engine.stream(HELLO, LIMITS, lambda: False, None))
    assert with_adapter.strip() == "answered by faq" and without.strip() == "answered by base"
    loads = [body for what, body in stand_in.requests if what == "POST /v1/load_lora_adapter"]
    assert loads == [{"lora_name": "faq", "lora_path": str(faq.parent / "peft")}]
    chats = [body for what, body in stand_in.requests if what == "POST /v1/chat/completions"]
    assert [c["model"] for c in chats] == ["faq", "base"] and all(c["stream"] for c in chats)


def test_vllm_counts_tokens_with_its_tokenizer_once_per_text(vllm: tuple[StandIn, str]) -> None:
    stand_in, url = vllm
    engine = OpenAIEngine(url, "base")
    assert engine.count_tokens("one two three") == 3
    assert engine.count_tokens("one two three") == 3
    asked = [body for what, body in stand_in.requests if what == "POST /tokenize"]
    assert asked == [{"model": "base", "prompt": "one two three", "add_special_tokens": False}]


def test_an_adapter_the_server_cannot_load_is_one_sentence(
    vllm: tuple[StandIn, str], tmp_path: Path
) -> None:
    _, url = vllm
    engine = OpenAIEngine(url, "base")
    broken = tmp_path / "adapters" / "broken" / "adapter.gguf"  # no peft folder beside it
    with pytest.raises(ModelError, match=r"^vLLM at .* could not load the adapter broken \(400"):
        engine.use_adapter(broken)


def test_a_plain_server_estimates_tokens_and_refuses_adapters_in_one_sentence(
    tmp_path: Path,
) -> None:
    stand_in = StandIn("plain")
    server = serve(stand_in)
    try:
        engine = OpenAIEngine(f"http://127.0.0.1:{server.server_address[1]}/v1", "base")
        assert engine.flavor == "openai" and not engine.supports_lora
        assert engine.count_tokens("x" * 40) == 11  # about 4 characters a token
        with pytest.raises(ModelError, match="cannot apply them per request"):
            engine.use_adapter(peft_adapter(tmp_path, "faq"))
    finally:
        server.shutdown()


def test_5xx_before_the_first_token_is_retried_and_a_break_after_it_fails_the_answer(
    vllm: tuple[StandIn, str],
) -> None:
    stand_in, url = vllm
    engine = OpenAIEngine(url, "base", client=httpx.Client(timeout=5))
    stand_in.failures = [503, 502]
    assert "".join(engine.stream(HELLO, LIMITS, lambda: False)).strip() == "answered by base"
    stand_in.failures = [503, 503, 503]  # more than the retries
    with pytest.raises(ModelError, match="answered 503"):
        list(engine.stream(HELLO, LIMITS, lambda: False))
    stand_in.break_after_first_piece = True
    pieces: list[str] = []
    with pytest.raises(ModelError):
        pieces.extend(engine.stream(HELLO, LIMITS, lambda: False))
    assert pieces == ["answered "]  # never started again: the reader saw these words once
    chats = [what for what, _ in stand_in.requests if what == "POST /v1/chat/completions"]
    assert len(chats) == 3 + 3 + 1


def test_a_stream_that_ends_without_being_finished_is_refused_not_delivered(
    vllm: tuple[StandIn, str],
) -> None:
    stand_in, url = vllm
    engine = OpenAIEngine(url, "base", client=httpx.Client(timeout=5))
    stand_in.ending = "none"  # the words, then the connection closes: a proxy's cut, say
    pieces: list[str] = []
    with pytest.raises(ModelError, match="ended its answer before it was finished"):
        pieces.extend(engine.stream(HELLO, LIMITS, lambda: False))
    assert pieces == ["answered ", "by ", "base "]  # shown as a draft, never as the answer
    chats = [what for what, _ in stand_in.requests if what == "POST /v1/chat/completions"]
    assert len(chats) == 1  # words were out: not asked again
    stand_in.ending = "finish"  # a finish_reason without [DONE] is a whole answer
    assert "".join(engine.stream(HELLO, LIMITS, lambda: False)).strip() == "answered by base"


def test_a_server_keeps_its_slots_busy_and_a_cancelled_answer_closes_its_stream(
    vllm: tuple[StandIn, str],
) -> None:
    stand_in, url = vllm
    stand_in.word_delay_s = 0.05  # 33 words: about 1.7 s an answer
    worker = ModelWorker(OpenAIEngine(url, "base"), max_queue=4, concurrency=2)
    try:
        limits = GenerationLimits(max_tokens=33)
        first, second, third = (worker.submit(HELLO, limits) for _ in range(3))
        assert (first.position, second.position, third.position) == (0, 0, 1)
        assert worker.capacity == 4 + 2
        next(first.pieces())
        cancelled_at = time.monotonic()
        first.cancel()  # /cancel: the stream is closed, the slot given back
        assert first.result(timeout=5).finish_reason == "cancelled"
        assert time.monotonic() - cancelled_at < 1.0
        assert second.result(timeout=10).tokens == 33 and third.result(timeout=10).tokens == 33
    finally:
        worker.close()
    assert stand_in.hung_up == ["base"]  # the server saw the cancelled answer's client go


def test_a_server_that_sends_nothing_is_bounded_by_the_generation_timeout(
    vllm: tuple[StandIn, str],
) -> None:
    stand_in, url = vllm
    stand_in.word_delay_s = 3.0
    engine = OpenAIEngine(url, "base")
    started = time.monotonic()
    with pytest.raises(ModelError, match=r"sent nothing for 1 s \(RAGTUNE_GENERATION_TIMEOUT_S\)"):
        list(engine.stream(HELLO, GenerationLimits(max_tokens=3, timeout_s=1.0), lambda: False))
    assert time.monotonic() - started < 2.5  # no retries of a slow server
