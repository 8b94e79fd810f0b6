"""`ragtune run` as a real process (real model, real knowledge base): polling and webhook mode."""

from __future__ import annotations

import http.client
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from bot.core.adapters import ACTIVE_ADAPTER
from bot.llm.adapters import Manifest, file_sha256
from bot.llm.model_files import packaged_gguf_path
from bot.local.emulator import BotAPIEmulator
from bot.state import StateStore
from knowledge.embeddings import SentenceTransformerEmbedder
from knowledge.ingest import Ingestor
from knowledge.store import KnowledgeStore
from tests.helpers import KNOWN_TOKEN, REFUSED_TOKEN, WEBHOOK_SECRET

REPO_ROOT = Path(__file__).resolve().parents[2]
RAGTUNE = str(Path(sys.executable).parent / "ragtune")
TOKEN = KNOWN_TOKEN
SECRET = WEBHOOK_SECRET
QUESTION = "What is the capital of Estonia?"

pytestmark = pytest.mark.slow


def run_env(tmp_path: Path, emulator: BotAPIEmulator) -> dict[str, str]:
    """Environment of a bot with the known token, pointed at the emulator, its files in tmp_path."""
    return {
        **os.environ,
        "RAGTUNE_DB": str(tmp_path / "kb.db"),
        "RAGTUNE_STATE_DB": str(tmp_path / "state.db"),
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "RAGTUNE_TELEGRAM_API_URL": emulator.base_url,
        "RAGTUNE_TELEGRAM_FILE_URL": emulator.base_file_url,
    }


def add_estonia(db: Path, embedder: SentenceTransformerEmbedder) -> None:
    """One fact in the knowledge base at `db`, added in this process (`kb add` is tested in
    test_cli; a second process would only load the embedder again, ~10 s)."""
    with KnowledgeStore.open(db) as store:
        Ingestor(store, embedder).add_text(
            "The capital of Estonia is Tallinn. Tallinn has a medieval old town.",
            title="estonia",
            external_id="estonia.txt",
            source="estonia.txt",
        )


def bot_env(
    tmp_path: Path, emulator: BotAPIEmulator, embedder: SentenceTransformerEmbedder
) -> dict[str, str]:
    """`run_env` with an admin and one fact in the knowledge base."""
    add_estonia(tmp_path / "kb.db", embedder)
    return run_env(tmp_path, emulator) | {"RAGTUNE_ADMIN_IDS": "1"}


def answer_and_stop(
    proc: subprocess.Popen[str],
    emulator: BotAPIEmulator,
    ask: object,
    stop: signal.Signals = signal.SIGINT,
) -> tuple[list[str], str]:
    """Ask once the bot is up, wait for the answer, stop with `stop`; (texts to user 5, log)."""
    try:
        emulator.wait_for(lambda: bool(emulator.sent("setMyCommands")), timeout=120)
        assert callable(ask)
        ask()
        emulator.wait_for(lambda: bool(emulator.sent("sendMessage", 5)), timeout=120)
    finally:
        proc.send_signal(stop)
        log, _ = proc.communicate(timeout=60)
        print(log)  # conftest greps every test's output for the token
    assert proc.returncode == 0, log[-3000:]
    return [str(c.params["text"]) for c in emulator.sent("sendMessage", 5)], log


def test_run_with_a_token_polls_and_answers(
    tmp_path: Path, emulator: BotAPIEmulator, real_embedder: SentenceTransformerEmbedder
) -> None:
    env = bot_env(tmp_path, emulator, real_embedder)
    proc = subprocess.Popen([RAGTUNE, "run"], env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)  # fmt: skip
    replies, log = answer_and_stop(proc, emulator, lambda: emulator.send_text(QUESTION, user_id=5))
    assert "Tallinn" in replies[-1] and "[1] estonia" in replies[-1]
    assert emulator.sent("deleteWebhook")  # polling mode clears any webhook first
    assert TOKEN not in log and QUESTION not in log


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_webhook_mode_checks_the_secret_token(
    tmp_path: Path, emulator: BotAPIEmulator, real_embedder: SentenceTransformerEmbedder
) -> None:
    port = free_port()
    env = bot_env(tmp_path, emulator, real_embedder) | {
        "RAGTUNE_WEBHOOK_URL": f"http://127.0.0.1:{port}/telegram",
        "RAGTUNE_WEBHOOK_PORT": str(port),
        "RAGTUNE_WEBHOOK_SECRET": SECRET,
    }
    proc = subprocess.Popen([RAGTUNE, "run"], env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)  # fmt: skip
    forged = {"update_id": 999, "message": {"message_id": 1, "date": 0, "text": "forged",
              "chat": {"id": 5, "type": "private"}, "from": {"id": 5, "is_bot": False,
              "first_name": "Eve"}}}  # fmt: skip
    statuses: dict[str, int] = {}

    def ask() -> None:
        emulator.wait_for(lambda: emulator.webhook_url is not None, timeout=30)
        statuses["wrong"] = emulator.post_webhook(json.loads(json.dumps(forged)), "wrong")
        statuses["none"] = emulator.post_webhook(json.loads(json.dumps(forged)), None)
        emulator.send_text(QUESTION, user_id=5)  # posted with the secret the bot registered
        statuses["right"] = emulator.webhook_statuses[-1]

    replies, log = answer_and_stop(proc, emulator, ask, stop=signal.SIGTERM)  # as systemd stops
    (registered,) = emulator.sent("setWebhook")
    assert registered.params["url"] == f"http://127.0.0.1:{port}/telegram"
    assert registered.params["secret_token"] == SECRET
    assert statuses == {"wrong": 403, "none": 403, "right": 200}
    assert len(replies) == 1 and "Tallinn" in replies[0]  # the forged updates were never handled
    assert TOKEN not in log and SECRET not in log


def test_run_without_a_token_says_what_to_set_and_how_to_try_locally(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if "TELEGRAM_BOT_TOKEN" not in k}
    proc = subprocess.run([RAGTUNE, "run"], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=30, check=False)  # fmt: skip
    assert proc.returncode == 2
    assert "TELEGRAM_BOT_TOKEN=123456789:AA" in proc.stderr and ".env" in proc.stderr
    assert "make chat" in proc.stderr and "/upload knowledge/examples/cafe_faq.md" in proc.stderr
    assert (Path(__file__).parents[2] / "knowledge/examples/cafe_faq.md").is_file()


def start_and_fail(
    command: list[str], env: dict[str, str], cwd: Path
) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    proc = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip
    print(proc.stdout, proc.stderr)  # conftest greps every test's output for the token
    return proc, time.monotonic() - started


def corrupt_active_adapter(tmp_path: Path, env: dict[str, str]) -> None:
    """An adapter made for the served model whose file is damaged, active before a 'restart'."""
    model = packaged_gguf_path()
    assert model is not None
    folder = tmp_path / "adapters" / "broken"
    folder.mkdir(parents=True)
    (folder / "adapter.gguf").write_bytes(b"GGUF" + b"\0" * 64)
    manifest = Manifest(
        name="broken",
        base_model_file=model.name,
        base_model_sha256=file_sha256(model),
        rank=8,
        alpha=16,
        target_modules=["q_proj"],
        dataset_sha256="0" * 64,
        dataset_examples=1,
    )
    (folder / "manifest.json").write_text(manifest.model_dump_json())  # fmt: skip
    env["RAGTUNE_ADAPTERS_DIR"] = str(tmp_path / "adapters")
    state = StateStore.open(tmp_path / "state.db")
    state.set_fact(ACTIVE_ADAPTER, "broken")
    state.close()


START_UP_FAULTS = {
    "missing model": "does not exist",
    "corrupt model": "is not a readable GGUF",
    "corrupt adapter": "The adapter active before the restart, broken, does not load",
    "newer schema": "newer than this ragtune understands",
    "sqlite without extension loading": "No SQLite binding here can load the sqlite-vec",
    "bad token": "Telegram refused the bot token",
    "model server unreachable": "The model server at http://127.0.0.1:",
}


@pytest.mark.parametrize("fault", list(START_UP_FAULTS))
def test_start_up_problems_exit_non_zero_within_10_s_with_one_line(
    tmp_path: Path, emulator: BotAPIEmulator, fault: str
) -> None:
    env = run_env(tmp_path, emulator)
    command = [RAGTUNE, "run"]
    if fault == "missing model":
        env["RAGTUNE_MODEL_PATH"] = str(tmp_path / "nope.gguf")
    elif fault == "corrupt model":
        (tmp_path / "bad.gguf").write_bytes(b"GGUF" + os.urandom(4096))
        env["RAGTUNE_MODEL_PATH"] = str(tmp_path / "bad.gguf")
    elif fault == "newer schema":
        with KnowledgeStore.open(tmp_path / "kb.db") as store:
            store.conn.execute("PRAGMA user_version = 999")
    elif fault == "corrupt adapter":
        corrupt_active_adapter(tmp_path, env)
    elif fault == "model server unreachable":
        env["RAGTUNE_LLM_BACKEND"] = "openai"
        env["RAGTUNE_OPENAI_BASE_URL"] = f"http://127.0.0.1:{free_port()}/v1"  # nothing there
    elif fault == "sqlite without extension loading":
        command = [sys.executable, "-m", "tests.bot.no_sqlite_extensions", "run"]
        env["PYTHONPATH"] = str(REPO_ROOT)
    else:
        env["TELEGRAM_BOT_TOKEN"] = REFUSED_TOKEN
    proc, took = start_and_fail(command, env, tmp_path)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    print(f"start-up with {fault}: exit {proc.returncode} after {took:.1f} s")
    assert proc.returncode == 1 and took < 10, (proc.returncode, took, proc.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert START_UP_FAULTS[fault] in lines[0], lines
    assert env["TELEGRAM_BOT_TOKEN"] not in proc.stderr + proc.stdout


def rss_mb(pid: int) -> float:
    """Resident memory of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def post_big_body(url: str, secret: str | None, size: int) -> tuple[int, int]:
    """POST `size` bytes as a careless or hostile client would; (status, bytes it got to send)."""
    parts = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    conn.putrequest("POST", parts.path)
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str(size))
    if secret is not None:
        conn.putheader("X-Telegram-Bot-Api-Secret-Token", secret)
    conn.endheaders()
    sent, chunk = 0, b"x" * 1_000_000
    try:
        while sent < size:
            conn.send(chunk[: size - sent])
            sent += len(chunk[: size - sent])
    except OSError:
        pass  # the server hung up on the body: what we want
    try:
        status = conn.getresponse().status
    except OSError:
        status = 0
    conn.close()
    return status, sent


def test_webhook_refuses_big_bodies_before_reading_them(
    tmp_path: Path, emulator: BotAPIEmulator, real_embedder: SentenceTransformerEmbedder
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/telegram"
    env = bot_env(tmp_path, emulator, real_embedder) | {
        "RAGTUNE_WEBHOOK_URL": url,
        "RAGTUNE_WEBHOOK_PORT": str(port),
        "RAGTUNE_WEBHOOK_SECRET": SECRET,
    }
    proc = subprocess.Popen([RAGTUNE, "run"], env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)  # fmt: skip
    results: dict[str, object] = {}

    def ask() -> None:
        emulator.wait_for(lambda: emulator.webhook_url is not None, timeout=30)
        before = rss_mb(proc.pid)
        results["no secret"] = [post_big_body(url, None, 50_000_000) for _ in range(6)]
        results["wrong secret"] = post_big_body(url, "wrong", 50_000_000)
        results["too big"] = post_big_body(url, SECRET, 50_000_000)
        not_an_update = urllib.request.Request(
            url,
            data=b"5",
            method="POST",
            headers={"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": SECRET},
        )
        try:
            urllib.request.urlopen(not_an_update, timeout=10)
        except urllib.error.HTTPError as exc:
            results["not an update"] = exc.code
        results["rss growth"] = rss_mb(proc.pid) - before
        emulator.send_text(QUESTION, user_id=5)  # and a real update still gets its answer

    replies, log = answer_and_stop(proc, emulator, ask, stop=signal.SIGTERM)
    print(f"webhook: 6 x 50 MB without the secret -> {results['no secret']}, RSS growth "
          f"{results['rss growth']:.1f} MB")  # fmt: skip
    for status, sent in [*results["no secret"], results["wrong secret"]]:  # type: ignore[misc]
        assert status == 403 and sent < 50_000_000
    status, sent = results["too big"]  # type: ignore[misc]
    assert status == 413 and sent < 50_000_000
    assert results["not an update"] == 400
    assert float(results["rss growth"]) < 20  # type: ignore[arg-type]
    assert "Tallinn" in replies[-1]
    assert "Traceback" not in log and SECRET not in log and TOKEN not in log


def closed_port_url() -> tuple[str, int]:
    """A Bot API URL nothing listens on yet: what an unreachable Telegram looks like."""
    port = free_port()
    return f"http://127.0.0.1:{port}/bot", port


def test_a_missing_model_is_reported_even_when_telegram_cannot_be_reached(
    tmp_path: Path, emulator: BotAPIEmulator
) -> None:
    api_url, _ = closed_port_url()
    env = run_env(tmp_path, emulator) | {
        "RAGTUNE_TELEGRAM_API_URL": api_url,
        "RAGTUNE_MODEL_PATH": str(tmp_path / "nope.gguf"),
    }
    proc, took = start_and_fail([RAGTUNE, "run"], env, tmp_path)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 1 and took < 10
    assert len(lines) == 1 and "does not exist" in lines[0], lines


def test_an_unreachable_bot_api_at_start_is_one_line_and_retried_until_it_answers(
    tmp_path: Path, real_embedder: SentenceTransformerEmbedder
) -> None:
    api_url, port = closed_port_url()
    late = BotAPIEmulator(token=TOKEN)
    env = {
        **os.environ,
        "RAGTUNE_DB": str(tmp_path / "kb.db"),
        "RAGTUNE_STATE_DB": str(tmp_path / "state.db"),
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "RAGTUNE_TELEGRAM_API_URL": api_url,
        "RAGTUNE_TELEGRAM_FILE_URL": api_url.replace("/bot", "/file/bot"),
        "RAGTUNE_ADMIN_IDS": "1",
    }
    add_estonia(tmp_path / "kb.db", real_embedder)
    proc = subprocess.Popen([RAGTUNE, "run"], env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)  # fmt: skip
    assert proc.stdout is not None
    said: list[tuple[float, str]] = []
    reader = threading.Thread(
        target=lambda: said.extend((time.monotonic(), line) for line in proc.stdout or [])
    )
    reader.start()
    try:
        deadline = time.monotonic() + 60
        # Two tries show the backoff in what they say; a third would only add its 4 s wait.
        while sum("cannot be reached" in line for _, line in said) < 2:
            assert time.monotonic() < deadline and proc.poll() is None, said
            time.sleep(0.1)
        late.start(port=port)  # Telegram is back
        replies, _ = answer_and_stop(proc, late, lambda: late.send_text(QUESTION, user_id=5))
    finally:
        late.stop()
        reader.join(timeout=10)
    log = "".join(line for _, line in said)
    print(log)
    tries = [(at, line) for at, line in said if "cannot be reached" in line]
    assert all(api_url in line and TOKEN not in line for _, line in tries)
    waits = [float(m[1]) for _, line in tries if (m := re.search(r"trying again in (\d+) s", line))]
    assert len(waits) == len(tries) >= 2 and waits == sorted(waits) and waits[-1] > waits[0], tries
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(tries)]
    assert gaps[0] >= waits[0] * 0.9, (gaps, waits)  # and it waits as long as it says
    assert "Traceback" not in log and TOKEN not in log
    assert not [line for _, line in said if "WARNING" in line and "cannot be reached" not in line]
    assert "Tallinn" in replies[-1]


def test_a_webhook_port_in_use_is_one_line(tmp_path: Path, emulator: BotAPIEmulator) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = run_env(tmp_path, emulator) | {
            "RAGTUNE_WEBHOOK_URL": f"http://127.0.0.1:{port}/telegram",
            "RAGTUNE_WEBHOOK_PORT": str(port),
        }
        proc, _ = start_and_fail([RAGTUNE, "run"], env, tmp_path)
    lines = [line for line in proc.stderr.splitlines() if line.startswith(("error", "Trace"))]
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr[-2000:]
    assert lines[0].startswith(f"error: the webhook server cannot listen on 127.0.0.1:{port}")


def test_a_stop_while_telegram_is_out_of_reach_ends_at_once(tmp_path: Path) -> None:
    api_url, _ = closed_port_url()
    env = {**os.environ, "RAGTUNE_DB": str(tmp_path / "kb.db"),
           "RAGTUNE_STATE_DB": str(tmp_path / "state.db"), "TELEGRAM_BOT_TOKEN": TOKEN,
           "RAGTUNE_TELEGRAM_API_URL": api_url}  # fmt: skip
    proc = subprocess.Popen([RAGTUNE, "run"], env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)  # fmt: skip
    assert proc.stdout is not None
    for line in proc.stdout:
        if "cannot be reached" in line:
            break
    stopped = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    log, _ = proc.communicate(timeout=30)
    print(log)
    assert proc.returncode == 0 and time.monotonic() - stopped < 5
    assert "Traceback" not in log and TOKEN not in log
