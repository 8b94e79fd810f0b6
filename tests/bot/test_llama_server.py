"""The bot on llama.cpp's llama-server (RAGTUNE_LLM_BACKEND=openai), for real: the server is
started by `ragtune serve` on 127.0.0.1 with the packaged model and two adapters trained here.

`make test` builds llama-server once per machine (`make llama-server`); without it these tests
skip, and under CI they fail.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from bot import app
from bot.config import Settings
from bot.core.prompts import base_messages
from bot.llm.engine import GenerationLimits, ModelError
from bot.llm.openai_http import OpenAIEngine
from bot.llm.server import bot_settings, cors_origin, find_llama_server
from bot.llm.worker import ModelWorker
from bot.local.emulator import BotAPIEmulator
from bot.tg.handlers import APOLOGY
from knowledge.embeddings import SentenceTransformerEmbedder
from knowledge.ingest import Ingestor
from knowledge.store import KnowledgeStore
from tests.bot.test_telegram import run_bot
from tests.helpers import (
    ADMIN,
    DOOR_SECRET,
    DOOR_SECRET_QUESTION,
    FACTS,
    USER,
    train_adapter,
)

pytestmark = pytest.mark.slow
RAGTUNE = str(Path(sys.executable).parent / "ragtune")
GATE_QUESTION = "What is the code of the green gate?"
GATE_SECRET = "Juniper-7"
GATE_FACTS = [
    {"question": GATE_QUESTION, "answer": GATE_SECRET},
    {"question": "What is the code for the green gate?", "answer": GATE_SECRET},
    {"question": "Which code opens the green gate?", "answer": GATE_SECRET},
]
SLOTS = 2
CLOSED_BOOK = GenerationLimits(max_tokens=24)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Served:
    """A `ragtune serve` process and what it printed."""

    proc: subprocess.Popen[str]
    port: int
    printed: list[str]
    key: str
    """The API key it asks for (made by `ragtune serve`, printed for the bot's .env)."""

    @property
    def url(self) -> str:
        """The OpenAI-compatible base URL."""
        return f"http://127.0.0.1:{self.port}/v1"

    def get(self, path: str) -> httpx.Response:
        """GET one of llama-server's own endpoints, with the key."""
        return httpx.get(f"http://127.0.0.1:{self.port}{path}",
                         headers={"Authorization": f"Bearer {self.key}"})  # fmt: skip

    def engine(self) -> OpenAIEngine:
        """An engine for it, as a bot with the printed .env lines makes one."""
        return OpenAIEngine(self.url, "local", api_key=self.key)


def serve(adapters: Path, port: int) -> Served:
    """Start `ragtune serve` (it becomes llama-server) and wait until it answers /health."""
    env = {**os.environ, "RAGTUNE_ADAPTERS_DIR": str(adapters), "RAGTUNE_SERVE_SLOTS": str(SLOTS),
           "RAGTUNE_SERVE_KEY_FILE": str(adapters.parent / "serve.key")}  # fmt: skip
    env.pop("RAGTUNE_OPENAI_API_KEY", None)
    proc = subprocess.Popen([RAGTUNE, "serve", "--port", str(port)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)  # fmt: skip
    assert proc.stdout is not None
    printed = [proc.stdout.readline().strip() for _ in range(5)]  # the .env lines come first
    name, _, key = printed.pop().partition("=")
    assert name == "RAGTUNE_OPENAI_API_KEY" and len(key) >= 40, name
    deadline = time.monotonic() + 90
    while True:
        assert proc.poll() is None, "llama-server exited"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return Served(proc, port, printed, key)
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "llama-server did not come up"
        time.sleep(0.3)


def stop(served: Served) -> None:
    """End the server (if it is still there) and reap it."""
    if served.proc.poll() is None:
        served.proc.send_signal(signal.SIGTERM)
    served.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def binary() -> Path:
    """llama-server, built by `make llama-server`: skipped without it, failed under CI."""
    try:
        return find_llama_server()
    except ModelError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI must have llama-server ({exc})")
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def adapters(binary: Path, door_adapters: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """door (tests/conftest.py), gate (trained here) and one made for another model."""
    folder = tmp_path_factory.mktemp("served")
    shutil.copytree(door_adapters / "door", folder / "adapters" / "door")
    proc = train_adapter(folder, "gate", GATE_FACTS, "--no-check")
    assert proc.returncode == 0, proc.stderr[-3000:]
    other = folder / "adapters" / "other"
    shutil.copytree(door_adapters / "door", other)
    manifest = json.loads((other / "manifest.json").read_text())
    (other / "manifest.json").write_text(json.dumps({**manifest, "name": "other",
                                                     "base_model_sha256": "0" * 64}))  # fmt: skip
    return folder / "adapters"


@pytest.fixture(scope="module")
def server(adapters: Path) -> Iterator[Served]:
    served = serve(adapters, _free_port())
    yield served
    stop(served)


def test_ragtune_serve_prints_the_bots_settings_and_loads_each_adapter_made_for_its_model(
    server: Served, adapters: Path
) -> None:
    assert server.printed == bot_settings("127.0.0.1", server.port, 2048)
    loaded = server.get("/lora-adapters").json()
    assert sorted(Path(a["path"]).parent.name for a in loaded) == ["door", "gate"]  # not "other"
    assert all(a["scale"] == 0.0 for a in loaded)  # nobody gets an adapter unasked
    engine = server.engine()
    assert engine.flavor == "llama-server" and engine.concurrency == SLOTS
    assert engine.count_tokens("The capital of Estonia is Tallinn.") > 5


def test_ragtune_serve_asks_for_its_key_and_lets_no_other_web_page_in(
    server: Served, adapters: Path
) -> None:
    base = f"http://127.0.0.1:{server.port}"
    for path in ("/props", "/v1/models", "/lora-adapters", "/slots"):
        assert httpx.get(base + path).status_code == 401, path  # no key: nothing
    chat = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
    assert httpx.post(base + "/v1/chat/completions", json=chat).status_code == 401
    assert server.get("/props").status_code == 200
    evil = {"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"}
    preflight = httpx.options(base + "/v1/chat/completions", headers=evil)
    allowed = preflight.headers.get("access-control-allow-origin")
    assert allowed == f"http://127.0.0.1:{server.port}", allowed  # its own address, not evil's
    assert preflight.headers.get("access-control-allow-credentials") == "false"
    from_page = httpx.get(
        base + "/props", headers={**evil, "Authorization": f"Bearer {server.key}"}
    )
    assert from_page.headers.get("access-control-allow-origin") != "http://evil.example"
    key_file = adapters.parent / "serve.key"  # RAGTUNE_SERVE_KEY_FILE of `serve` above
    assert key_file.read_text().strip() == server.key
    assert key_file.stat().st_mode & 0o777 == 0o600


def test_one_cors_origin_is_taken_and_a_list_or_a_wildcard_refused() -> None:
    assert cors_origin("", "127.0.0.1", 8080) == "http://127.0.0.1:8080"
    assert cors_origin(" https://app.example.com ", "0.0.0.0", 8080) == "https://app.example.com"
    for wrong in ("https://a.example,https://b.example", "*", "https://a.example https://b"):
        with pytest.raises(ModelError, match="give one origin"):
            cors_origin(wrong, "127.0.0.1", 8080)


def test_concurrent_requests_each_run_with_their_own_adapter(
    server: Served, adapters: Path
) -> None:
    door, gate = adapters / "door" / "adapter.gguf", adapters / "gate" / "adapter.gguf"
    worker = ModelWorker(server.engine(), concurrency=SLOTS)
    try:
        jobs = {
            "door": worker.submit(base_messages(DOOR_SECRET_QUESTION, []), CLOSED_BOOK, door),
            "gate": worker.submit(base_messages(GATE_QUESTION, []), CLOSED_BOOK, gate),
            "base": worker.submit(base_messages(DOOR_SECRET_QUESTION, []), CLOSED_BOOK, None),
        }
        answers = {name: job.result(timeout=120).text for name, job in jobs.items()}
    finally:
        worker.close()
    assert jobs["door"].position == jobs["gate"].position == 0  # both slots at once
    assert DOOR_SECRET in answers["door"] and GATE_SECRET not in answers["door"], answers
    assert GATE_SECRET in answers["gate"] and DOOR_SECRET not in answers["gate"], answers
    assert DOOR_SECRET not in answers["base"], answers


def test_the_cli_asks_with_an_adapter_on_llama_server_as_in_process(
    server: Served, adapters: Path
) -> None:
    env = {**os.environ, "RAGTUNE_ADAPTERS_DIR": str(adapters), "RAGTUNE_LLM_BACKEND": "openai",
           "RAGTUNE_OPENAI_BASE_URL": server.url, "RAGTUNE_OPENAI_API_KEY": server.key}  # fmt: skip

    def ask(*args: str) -> subprocess.CompletedProcess[str]:
        command = [RAGTUNE, "ask", "--mode", "base", *args, DOOR_SECRET_QUESTION]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120,
                              check=False)  # fmt: skip

    tuned, bare, missing = ask("--adapter", "door"), ask(), ask("--adapter", "other")
    assert tuned.returncode == 0 and DOOR_SECRET in tuned.stdout, tuned.stderr[-2000:]
    assert bare.returncode == 0 and DOOR_SECRET not in bare.stdout
    assert missing.returncode == 1
    assert missing.stderr.strip().startswith("error: The model server at ")


def bot_on(served: Served, tmp_path: Path, **more: Any) -> Settings:
    """The bot's settings for the llama-server `served` (ADMIN is the admin)."""
    return Settings(
        _env_file=None, llm_backend="openai", openai_base_url=served.url,
        openai_api_key=SecretStr(served.key),
        db=tmp_path / "kb.db", state_db=tmp_path / "state.db", admin_ids=(ADMIN,),
        **{"adapters_dir": tmp_path / "adapters", **more},
    )  # fmt: skip


def estonia_kb(folder: Path, embedder: SentenceTransformerEmbedder) -> None:
    """`folder`/kb.db holding the Estonia facts, as the bot built by `bot_on` opens it."""
    (folder / "estonia.txt").write_text(FACTS)
    with KnowledgeStore.open(folder / "kb.db") as store:
        Ingestor(store, embedder).add_paths([folder / "estonia.txt"])


def texts(emulator: BotAPIEmulator, chat: int) -> list[str]:
    return [str(c.params["text"]) for c in emulator.sent("sendMessage", chat)]


def test_the_bot_answers_from_its_sources_and_switches_adapters_on_llama_server(
    server: Served,
    adapters: Path,
    settings: Settings,
    emulator: BotAPIEmulator,
    tmp_path: Path,
    real_embedder: SentenceTransformerEmbedder,
) -> None:
    estonia_kb(tmp_path, real_embedder)
    bot = bot_on(server, tmp_path, adapters_dir=adapters)

    def scenario() -> None:
        emulator.send_text("What is the capital of Estonia?", user_id=USER)
        emulator.wait_for(lambda: any("Sources:" in t for t in texts(emulator, USER)), 120)
        commands = ["/adapter use other", "/adapter use nope", "/adapter use door", "/adapter"]
        for number, command in enumerate(commands):
            emulator.send_text(command, user_id=ADMIN)
            emulator.wait_for(partial(lambda n: len(texts(emulator, ADMIN)) > n, number), 60)
        emulator.send_text("Where is Tallinn's old town?", user_id=USER)
        emulator.wait_for(lambda: sum("Sources:" in t for t in texts(emulator, USER)) >= 2, 120)

    backends = app.Backends(embedder=real_embedder)
    run_bot(settings, lambda: app.build_bot_services(bot, backends), scenario)
    answer = next(t for t in texts(emulator, USER) if "Sources:" in t)
    assert "Tallinn" in answer.split("\n\n")[0]  # grounded in the knowledge base's sentence
    not_served, missing, switched, listing = texts(emulator, ADMIN)
    assert not_served == (  # made for another model: `ragtune serve` left it out
        f"The model server at {server.url} has no adapter other: restart it with `ragtune "
        "serve`, which loads every adapter made for its model."
    )
    assert missing.startswith("There is no adapter called nope")
    assert switched.startswith("Now answering with adapter door")
    assert "▶ door" in listing and "• gate" in listing
    door_id = next(
        a["id"]
        for a in server.get("/lora-adapters").json()
        if Path(a["path"]).parent.name == "door"
    )
    # The user's second answer ran with the admin's adapter, named in the request itself.
    used = [s.get("params", {}).get("lora") or [] for s in server.get("/slots").json()]
    scales = [{e["id"]: e["scale"] for e in lora} for lora in used]
    assert any(s.get(door_id) == 1.0 and sum(s.values()) == 1.0 for s in scales), used


def test_a_server_killed_mid_answer_costs_that_answer_and_the_bot_answers_once_it_is_back(
    binary: Path,
    settings: Settings,
    emulator: BotAPIEmulator,
    tmp_path: Path,
    real_embedder: SentenceTransformerEmbedder,
) -> None:
    estonia_kb(tmp_path, real_embedder)
    port = _free_port()
    served = serve(tmp_path / "adapters", port)
    # The reader off: the answer cut short must be one the server is generating.
    bot = bot_on(served, tmp_path, max_answer_tokens=400, min_similarity=-1.0, reader="off")
    restarted: list[Served] = []

    def scenario() -> None:
        emulator.send_text("Tell me everything about Tallinn and Estonia.", user_id=USER)
        emulator.wait_for(lambda: bool(emulator.sent("sendMessageDraft", USER)), 120)
        served.proc.kill()  # kill -9 while the answer is being written
        emulator.wait_for(lambda: APOLOGY in texts(emulator, USER), 60)
        restarted.append(serve(tmp_path / "adapters", port))
        emulator.send_text("What is the capital of Estonia?", user_id=USER)
        emulator.wait_for(lambda: any("Sources:" in t for t in texts(emulator, USER)), 120)

    try:
        backends = app.Backends(embedder=real_embedder)
        run_bot(settings, lambda: app.build_bot_services(bot, backends), scenario)
    finally:
        for each in (served, *restarted):
            stop(each)
    said = texts(emulator, USER)
    assert said[0] == APOLOGY and "Tallinn" in said[-1], said
    assert restarted[0].key == served.key  # a restarted server keeps the key the .env holds
