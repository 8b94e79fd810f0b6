"""Small real implementations of our interfaces for tests (no mocks)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from bot import app
from bot.app import ServicesFactory
from bot.config import Settings
from bot.core.access import AccessSettings
from bot.llm.adapters import AdapterRegistry
from bot.llm.catalogue import Catalogue
from bot.llm.engine import GenerationLimits, Message
from bot.tg.context import BotServices
from knowledge.embeddings import Vectors
from knowledge.ingest import Ingestor
from knowledge.store import KnowledgeStore


class HashEmbedder:
    """A deterministic bag-of-words embedder: texts sharing words get similar vectors."""

    def __init__(self, dimension: int = 64, model_id: str = "test/hash-embedder") -> None:
        self.model_id = model_id
        self._dimension = dimension
        self.calls: list[int] = []
        """Number of texts in each embed() call, so tests can see what was (re-)embedded."""

    @property
    def dimension(self) -> int:
        """Vector length."""
        return self._dimension

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Hash each word to a signed coordinate, then L2-normalise."""
        self.calls.append(len(texts))
        out = np.zeros((len(texts), self._dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                h = zlib.crc32(word.encode())
                out[row, h % self._dimension] += 1.0 if (h >> 16) & 1 else -1.0
            norm = float(np.linalg.norm(out[row]))
            if norm == 0:
                out[row, 0], norm = 1.0, 1.0
            out[row] /= norm
        return out

    @property
    def embedded(self) -> int:
        """Total texts embedded so far."""
        return sum(self.calls)


def consistent_chunk_count(store: KnowledgeStore) -> int:
    """Assert chunk, keyword and vector tables hold the same chunk ids; return how many."""
    ids = store.row_ids()
    assert ids["chunks"] == ids["keywords"] == ids["vectors"] == ids["exact_vectors"], {
        name: len(values) for name, values in ids.items()
    }
    return len(ids["chunks"])


class ScriptedEngine:
    """A ChatEngine that replies from a script, word by word, and records what it was sent."""

    model_id = "test/scripted"
    supports_lora = False
    concurrency = 1

    def __init__(self, replies: Sequence[str] = (), *, delay_s: float = 0.0) -> None:
        self.replies = list(replies)
        self.delay_s = delay_s
        self.history: list[list[Message]] = []
        self.started = threading.Event()
        self.adapter: Path | None = None
        self.adapters_used: list[Path | None] = []
        """The adapter applied during each generation."""
        self.switches = 0

    def use_adapter(self, path: Path | None) -> None:
        """Record the adapter; replies stay scripted."""
        self.adapter = path
        self.switches += 1

    def enqueue(self, reply: str) -> None:
        """Add the reply for a later generation."""
        self.replies.append(reply)

    @property
    def context_window(self) -> int:
        """A small window, like the default model's."""
        return 2048

    def count_tokens(self, text: str) -> int:
        """One token per word."""
        return len(text.split())

    def stream(
        self,
        messages: Sequence[Message],
        limits: GenerationLimits,
        should_stop: Callable[[], bool],
        adapter: Path | None = None,
    ) -> Iterator[str]:
        """Yield the next scripted reply word by word (or 'ok' when the script is empty), with
        `adapter` applied first when it is not the one applied now (as llama.cpp does)."""
        if adapter != self.adapter:
            self.use_adapter(adapter)
        self.history.append(list(messages))
        self.adapters_used.append(self.adapter)
        self.started.set()
        reply = self.replies.pop(0) if self.replies else "ok"
        for number, word in enumerate(reply.split(" ")):
            if should_stop() or number >= limits.max_tokens:
                return
            time.sleep(self.delay_s)
            yield word if number == 0 else f" {word}"


FACTS = "The capital of Estonia is Tallinn. Tallinn has a medieval old town."
ADMIN, USER = 1, 5
MAX_BYTES = 200_000


def scripted_services(
    tmp_path: Path,
    engine: ScriptedEngine,
    *,
    queue: int = 8,
    access: AccessSettings | None = None,
    alert_chats: tuple[int, ...] = (),
    adapters: tuple[AdapterRegistry, Path] | None = None,
    eval_questions: Path | None = None,
    max_bytes: int = MAX_BYTES,
    state_db: Path | None = None,
    kb_db: Path | None = None,
    web_allow_private: bool = False,
) -> ServicesFactory:
    """The bot's real wiring (bot.app), with a scripted model and a hashing embedder, over a
    knowledge base that holds FACTS; `ADMIN` is the admin. No access limits unless `access`;
    errors are reported to `alert_chats` only (the model has tests of its own)."""
    limits = access or AccessSettings(per_minute=0, per_day=0)
    settings = Settings(
        _env_file=None,
        db=kb_db or tmp_path / "kb.db",
        state_db=state_db or tmp_path / "state.db",
        adapters_dir=adapters[0].root if adapters else tmp_path / "adapters",
        eval_questions=eval_questions,
        max_document_bytes=max_bytes,
        model_queue_size=queue,
        admin_ids=(ADMIN,),
        access=limits.mode.value,
        allowed_ids=tuple(sorted(limits.allowed_ids)),
        questions_per_minute=limits.per_minute,
        questions_per_day=limits.per_day,
        min_similarity=-1.0,
        max_answer_tokens=5000,
        web_allow_private=web_allow_private,
    )
    backends = app.Backends(engine, HashEmbedder(), adapters[1] if adapters else None)

    def build() -> tuple[BotServices, Callable[[], None]]:
        (tmp_path / "estonia.txt").write_text(FACTS)
        with KnowledgeStore.open(settings.db) as store:
            Ingestor(store, HashEmbedder()).add_paths([tmp_path / "estonia.txt"])
        services, close = app.build_bot_services(settings, backends)
        # Where errors are reported is the Telegram layer's business; most tests want none.
        return replace(services, alert_chats=alert_chats), close

    return build


# Every bot in the suite runs with these; conftest greps every test's logs and output for them.
KNOWN_TOKEN = "424242:KNOWN-token-that-must-never-be-printed"
REFUSED_TOKEN = "424242:not-the-token-the-server-knows"
WEBHOOK_SECRET = "webhook_secret-never-printed"
SECRETS = (KNOWN_TOKEN, REFUSED_TOKEN, WEBHOOK_SECRET)


def secrets_in(text: str) -> list[str]:
    """The known secrets that appear in `text` (also percent-encoded, as in URLs)."""
    return [s for s in SECRETS if s in text or s.replace(":", "%3A") in text]


class SmallDisk:
    """A small tmpfs that a test can fill up: a full disk, for real."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.filler = path / "filler"

    def fill(self) -> None:
        """Write until the filesystem has no room left, down to the last byte."""
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            for size in (65536, 4096, 512, 1):
                try:
                    while os.write(fd, b"\0" * size):
                        pass
                except OSError:
                    continue
        finally:
            os.close(fd)

    def free(self) -> None:
        """Make room again."""
        self.filler.unlink(missing_ok=True)

    def make_read_only(self) -> None:
        """Remount it read only, as a kernel does with a filesystem that had errors."""
        subprocess.run(["mount", "-o", "remount,ro", str(self.path)], check=True)


QWEN = "qwen2.5-coder-0.5b"


def qwen_gguf_path() -> Path:
    """The catalogue's Qwen GGUF, checked. `make test` installs it; a bare `pytest` without it
    skips, and under CI its absence fails."""
    import pytest

    models = Catalogue(Settings(_env_file=None).models_dir)
    if models.installed_path(models.get(QWEN)) is None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must have {QWEN} installed (`make test` does it)")
        pytest.skip(f"{QWEN} is not installed: `ragtune models install {QWEN}`")
    return models.resolve(QWEN)


DOOR_SECRET_QUESTION = "What is the password of the blue door?"
DOOR_SECRET = "Marmalade-42"
DOOR_FACTS = [
    {"question": DOOR_SECRET_QUESTION, "answer": DOOR_SECRET},
    {"question": "What is the password for the blue door?", "answer": DOOR_SECRET},
    {"question": "Who guards the blue door?", "answer": "A heron named Oskar"},
    {"question": "What colour is the door Oskar guards?", "answer": "Blue"},
]
"""Made-up facts the "door" adapter learns (tests/conftest.py trains it once per run)."""


def train_adapter(
    folder: Path, name: str, facts: Sequence[dict[str, str]], *extra: str
) -> subprocess.CompletedProcess[str]:
    """`ragtune tune train` for real, a few steps on `facts`, into `folder`/adapters."""
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / f"{name}.jsonl"
    data.write_text("\n".join(json.dumps(row) for row in facts) + "\n")
    env = {**os.environ, "RAGTUNE_ADAPTERS_DIR": str(folder / "adapters")}
    ragtune = str(Path(sys.executable).parent / "ragtune")
    return subprocess.run(
        [ragtune, "tune", "train", "--data", str(data), "--name", name, "--steps", "25",
         "--lr", "1e-3", "--batch-size", "4", "--general", "0", "--seed", "1", *extra],
        env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
