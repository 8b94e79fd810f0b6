"""bot.llm.hub against a fake Hugging Face Hub on 127.0.0.1 (never the real Hub).

huggingface_hub reads HF_ENDPOINT, HF_HOME and HF_HUB_OFFLINE when it is imported, so each check
runs the hub functions in a fresh Python process, started the way `ragtune` starts: HF_HUB_OFFLINE
defaulted to 1 by bot.offline before huggingface_hub is imported.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[2]
REPO = "owner/repo"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
GGUF_BYTES = b"GGUF\x03\x00\x00\x00" + bytes(range(256)) * 8
NOT_GGUF_BYTES = b"<!doctype html><p>Sign in to download this file.</p>\n"
FILES = {"model.gguf": GGUF_BYTES, "weights/html.gguf": NOT_GGUF_BYTES}
RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<revision>[^/]+)/(?P<file>.+)$")

# One process per check: runs the calls given as JSON in argv[1], prints their outcomes as JSON.
RUNNER = """
import json, sys
from bot import offline
offline.default_to_offline()  # what bot/cli.py does at import, before any Hugging Face library
from huggingface_hub import constants
from bot.llm import hub
from bot.llm.engine import ModelError

results = []
for call in json.loads(sys.argv[1]):
    try:
        if call[0] == "pull":
            path = hub.pull(call[1], call[2], offline_requested_by_user=offline.USER_OFFLINE)
            results.append({"path": str(path)})
        elif call[0] == "list":
            models = [[m.name, str(m.path), m.size_bytes] for m in hub.pulled_models()]
            results.append({"models": models})
        elif call[0] == "find":
            found = hub.find_pulled(call[1])
            results.append({"path": None if found is None else str(found)})
        elif call[0] == "offline":
            results.append({"offline": constants.is_offline_mode()})
    except ModelError as exc:
        results.append({"error": str(exc)})
print(json.dumps(results))
"""


class FakeHub:
    """Just enough of the Hub for huggingface_hub 2.x's hf_hub_download: HEAD and GET resolve."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_HEAD(self) -> None:
                hub.serve(self, body=False)

            def do_GET(self) -> None:
                hub.serve(self, body=True)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        """The endpoint to set as HF_ENDPOINT."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()

    def seen(self, method: str, file: str | None = None) -> int:
        """How many `method` requests resolved a file (only `file`, if given)."""
        with self._lock:
            return sum(
                1
                for m, path in self.requests
                if m == method
                and (match := RESOLVE.match(path)) is not None
                and (file is None or unquote(match["file"]) == file)
            )

    def serve(self, handler: BaseHTTPRequestHandler, *, body: bool) -> None:
        """Answer one request as the Hub's /resolve/ route does (no Xet, no redirect)."""
        with self._lock:
            self.requests.append((handler.command, handler.path))
        match = RESOLVE.match(handler.path)
        if match is None:  # e.g. /api/agent-harnesses, which huggingface_hub fetches for its UA
            self._reply(handler, 404, {}, b"")
            return
        if match["repo"] != REPO:
            headers = {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"}
            self._reply(handler, 401, headers, b"" if not body else b'{"error":"not found"}')
            return
        content = FILES.get(unquote(match["file"]))
        if content is None:
            headers = {
                "X-Error-Code": "EntryNotFound",
                "X-Error-Message": "Entry not found",
                "X-Repo-Commit": COMMIT,
            }
            self._reply(handler, 404, headers, b"" if not body else b'{"error":"not found"}')
            return
        headers = {
            "X-Repo-Commit": COMMIT,
            "ETag": f'"{hashlib.sha256(content).hexdigest()}"',
            "Content-Type": "application/octet-stream",
            "Accept-Ranges": "bytes",
        }
        self._reply(handler, 200, headers, content, send_body=body)

    @staticmethod
    def _reply(
        handler: BaseHTTPRequestHandler,
        status: int,
        headers: dict[str, str],
        content: bytes,
        *,
        send_body: bool = True,
    ) -> None:
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(content)))
        handler.end_headers()
        if send_body and handler.command != "HEAD":
            handler.wfile.write(content)


@pytest.fixture
def fake_hub() -> Iterator[FakeHub]:
    """A fake Hub on 127.0.0.1, serving REPO's FILES."""
    hub = FakeHub()
    hub.start()
    yield hub
    hub.stop()


@pytest.fixture
def hf_env(tmp_path: Path, fake_hub: FakeHub) -> dict[str, str]:
    """The environment of a person who is online: the fake Hub, its cache in tmp_path."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("HF_")
        and key not in {"TRANSFORMERS_OFFLINE", "HUGGINGFACE_HUB_CACHE"}
        and not key.lower().endswith("_proxy")
    }
    env |= {"HF_ENDPOINT": fake_hub.url, "HF_HOME": str(tmp_path / "hf"), "NO_PROXY": "*"}
    return env


def run_hub(env: dict[str, str], *calls: list[str]) -> list[dict[str, Any]]:
    """Run bot.llm.hub calls in a fresh process; one outcome per call."""
    done = subprocess.run(
        [sys.executable, "-c", RUNNER, json.dumps(calls)],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    results: list[dict[str, Any]] = json.loads(done.stdout.splitlines()[-1])
    assert len(results) == len(calls)
    return results


def one_sentence(result: dict[str, Any]) -> str:
    """The ModelError message of `result`, checked to be one short line."""
    assert "error" in result, f"expected a ModelError, got {result}"
    message: str = result["error"]
    assert "\n" not in message and message.endswith("."), message
    assert len(message) < 300, message
    return message


def test_pull_downloads_once_then_uses_the_cache(fake_hub: FakeHub, hf_env: dict[str, str]) -> None:
    first, offline_after = run_hub(hf_env, ["pull", REPO, "model.gguf"], ["offline"])
    assert "path" in first, first
    path = Path(first["path"])
    assert path.read_bytes() == GGUF_BYTES
    assert path.is_relative_to(Path(hf_env["HF_HOME"]) / "hub")  # the cache HF_HOME names
    assert fake_hub.seen("HEAD", "model.gguf") == 1 and fake_hub.seen("GET", "model.gguf") == 1
    assert offline_after == {"offline": True}, "ragtune's offline default is restored after pull"

    (second,) = run_hub(hf_env, ["pull", REPO, "model.gguf"])
    assert second == {"path": str(path)}
    assert fake_hub.seen("GET", "model.gguf") == 1, "the second pull came from the cache"
    assert fake_hub.seen("HEAD", "model.gguf") == 2

    listed, found, missing = run_hub(
        hf_env, ["list"], ["find", f"{REPO}/model.gguf"], ["find", f"{REPO}/other.gguf"]
    )
    assert listed == {"models": [[f"{REPO}/model.gguf", str(path), len(GGUF_BYTES)]]}
    assert found == {"path": str(path)} and missing == {"path": None}


def test_a_missing_file_or_repo_is_one_sentence(fake_hub: FakeHub, hf_env: dict[str, str]) -> None:
    no_file, no_repo = run_hub(
        hf_env, ["pull", REPO, "absent.gguf"], ["pull", "owner/nothing-here", "model.gguf"]
    )
    message = one_sentence(no_file)
    assert "absent.gguf" in message and REPO in message and "has no file" in message
    message = one_sentence(no_repo)
    assert "owner/nothing-here" in message and "no model repository" in message
    assert fake_hub.seen("HEAD") == 2 and fake_hub.seen("GET") == 0


def test_bad_names_are_refused_before_any_request(
    fake_hub: FakeHub, hf_env: dict[str, str]
) -> None:
    results = run_hub(
        hf_env,
        ["pull", REPO, "model.safetensors"],
        ["pull", REPO, "../../etc/model.gguf"],
        ["pull", "no-owner", "model.gguf"],
        ["pull", "a/b/c", "model.gguf"],
        ["pull", "owner/bad--name", "model.gguf"],
        ["list"],
    )
    assert "not a GGUF file name" in one_sentence(results[0])
    assert "plain path inside the repository" in one_sentence(results[1])
    for refused in results[2:5]:
        assert "OWNER/NAME" in one_sentence(refused)
    assert results[5] == {"models": []}, "no cache folder yet: nothing pulled"
    assert fake_hub.requests == []


def test_a_file_that_is_not_gguf_is_refused_and_left_in_the_cache(
    fake_hub: FakeHub, hf_env: dict[str, str]
) -> None:
    refused, listed = run_hub(hf_env, ["pull", REPO, "weights/html.gguf"], ["list"])
    message = one_sentence(refused)
    assert f"{REPO}/weights/html.gguf is not a GGUF file" in message
    assert fake_hub.seen("GET", "weights/html.gguf") == 1
    ((name, path, size),) = listed["models"]  # delete nothing in the cache
    assert name == f"{REPO}/weights/html.gguf" and size == len(NOT_GGUF_BYTES)
    assert Path(path).read_bytes() == NOT_GGUF_BYTES


def test_hf_hub_offline_set_by_the_person_refuses(
    fake_hub: FakeHub, hf_env: dict[str, str]
) -> None:
    (refused,) = run_hub(hf_env | {"HF_HUB_OFFLINE": "1"}, ["pull", REPO, "model.gguf"])
    assert one_sentence(refused).startswith("HF_HUB_OFFLINE=1 is set: unset it to download")
    assert fake_hub.requests == []


def test_ragtune_models_pull_then_serves_the_pulled_file_by_name(
    fake_hub: FakeHub, hf_env: dict[str, str]
) -> None:
    ragtune = str(Path(sys.executable).parent / "ragtune")
    pulled = subprocess.run([ragtune, "models", "pull", REPO, "model.gguf"], env=hf_env,
                            capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert pulled.returncode == 0, pulled.stderr
    assert f"use it with RAGTUNE_MODEL={REPO}/model.gguf" in pulled.stdout
    assert fake_hub.seen("GET", "model.gguf") == 1
    listed = subprocess.run([ragtune, "models", "list", "--json"], env=hf_env,
                            capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert rows[f"{REPO}/model.gguf"]["installed"] is True
    assert rows[f"{REPO}/model.gguf"]["size_bytes"] == len(GGUF_BYTES)
    # Offline as the person set it: one sentence, nothing asked of the Hub.
    refused = subprocess.run([ragtune, "models", "pull", REPO, "model.gguf"],
                             env=hf_env | {"HF_HUB_OFFLINE": "1"}, capture_output=True,
                             text=True, timeout=60, check=False)  # fmt: skip
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        f"error: HF_HUB_OFFLINE=1 is set: unset it to download model.gguf from {REPO}."
    ]
    assert fake_hub.seen("GET", "model.gguf") == 1
