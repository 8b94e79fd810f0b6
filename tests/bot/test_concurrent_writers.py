"""N writers over the same files for M rounds: real `ragtune kb add` processes and uploads to the
running bot, all at once; afterwards every invariant of the knowledge base holds.

`make soak` runs it longer (RAGTUNE_WRITERS, RAGTUNE_WRITE_ROUNDS).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest

from bot import app
from bot.app import ServicesFactory
from bot.config import Settings
from bot.local.emulator import BotAPIEmulator
from knowledge.chunking import chunk_document
from knowledge.embeddings import SentenceTransformerEmbedder
from knowledge.ingest import content_hash
from knowledge.parsers import parse_bytes
from knowledge.store import KnowledgeStore
from tests.bot.test_telegram import run_bot
from tests.helpers import ADMIN, ScriptedEngine

RAGTUNE = str(Path(sys.executable).parent / "ragtune")
WRITERS = int(os.environ.get("RAGTUNE_WRITERS", "2"))
ROUNDS = int(os.environ.get("RAGTUNE_WRITE_ROUNDS", "2"))
DOCUMENTS = 40

pytestmark = pytest.mark.slow


def rows(version: int) -> list[dict[str, str]]:
    """The shared corpus; in version 2 every other paragraph of each document is rewritten."""
    out = []
    for d in range(DOCUMENTS):
        paragraphs = [
            f"Pier {d} section {p} is {'rebuilt' if version == 2 and p % 2 else 'original'}. "
            f"Its crane {d}-{p} lifts {p * 5 + d} tonnes and rests at night."
            for p in range(10)
        ]
        out.append({"id": f"pier-{d}", "title": f"Pier {d}", "text": "\n".join(paragraphs)})
    return out


def write_version(folder: Path, version: int) -> None:
    """The same knowledge twice over: a JSONL with ids, and Markdown files."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "piers.jsonl").write_text("\n".join(json.dumps(r) for r in rows(version)))
    for row in rows(version)[:4]:
        (folder / f"{row['id']}.md").write_text(f"# {row['title']}\n\n{row['text']}\n")


def known_versions(folder: Path) -> dict[str, set[tuple[str, ...]]]:
    """external id -> the chunk-hash lists a whole document may have (either version)."""
    known: dict[str, set[tuple[str, ...]]] = {}
    for version in (1, 2):
        write_version(folder / f"v{version}", version)
        for path in sorted((folder / f"v{version}").iterdir()):
            for doc in parse_bytes(path.read_bytes(), path.name):
                key = doc.external_id or path.name
                known.setdefault(key, set()).add(tuple(c.hash for c in chunk_document(doc)))
    return known


def bot_services(tmp_path: Path, embedder: SentenceTransformerEmbedder) -> ServicesFactory:
    """The bot's real wiring with the real embedder (a scripted model)."""
    settings = Settings(
        _env_file=None, db=tmp_path / "kb.db", state_db=tmp_path / "state.db",
        adapters_dir=tmp_path / "adapters", admin_ids=(ADMIN,), max_document_bytes=20_000_000,
    )  # fmt: skip
    return lambda: app.build_bot_services(settings, app.Backends(ScriptedEngine(), embedder))


def check_invariants(db: Path, known: dict[str, set[tuple[str, ...]]]) -> tuple[int, int]:
    """Every invariant of the knowledge base; returns (documents, chunks)."""
    with KnowledgeStore.open(db) as store:
        assert store.problems() == []
        duplicates = store.conn.execute(
            "SELECT count(*) FROM (SELECT 1 FROM chunks GROUP BY document_id, position "
            "HAVING count(*) > 1)"
        ).fetchone()[0]
        assert duplicates == 0
        for doc in store.list_documents():
            key = doc.external_id if doc.external_id.startswith("pier-") else None
            key = key or Path(doc.source).name  # Markdown added from the CLI
            if doc.source.startswith("telegram:"):
                continue  # uploaded Markdown is named by Telegram's file id: whole, checked above
            stored = tuple(c.hash for c in store.document_chunks(doc.id))
            assert stored in known[key], f"{doc.external_id} is not one whole version"
        return len(store.list_documents()), store.stats().chunks


def test_cli_processes_and_bot_uploads_over_the_same_files_keep_every_invariant(
    settings: Settings,
    emulator: BotAPIEmulator,
    tmp_path: Path,
    real_embedder: SentenceTransformerEmbedder,
) -> None:
    db = tmp_path / "kb.db"
    docs = tmp_path / "docs"
    known = known_versions(tmp_path / "versions")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAGTUNE_")}
    summary: list[str] = []

    def uploads_done(start: int) -> bool:
        edits = emulator.sent("editMessageText", ADMIN)[start:]
        return sum(str(c.params["text"]).startswith("Done") for c in edits) >= 2

    def scenario() -> None:
        for round_number in range(ROUNDS):
            version = 1 + round_number % 2
            write_version(docs, version)
            done_before = len(emulator.sent("editMessageText", ADMIN))
            command = [RAGTUNE, "kb", "add", str(docs), "--db", str(db)]
            writers = [
                subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
                for _ in range(WRITERS)
            ]  # fmt: skip
            assert writers[0].stderr is not None
            writers[0].stderr.read(1)  # its progress bar: it has loaded and starts reading
            for name in ("piers.jsonl", "pier-0.md"):  # the bot's uploads, meanwhile
                emulator.send_document((docs / name).read_bytes(), name, user_id=ADMIN,
                                       caption="/add replace")  # fmt: skip
            outputs = [w.communicate(timeout=600)[0].strip() for w in writers]
            assert all(w.returncode == 0 for w in writers), outputs
            emulator.wait_for(partial(uploads_done, done_before), timeout=300)
            summary.append(f"round {round_number + 1}: " + " | ".join(outputs))
            check_invariants(db, known)

    run_bot(settings, bot_services(tmp_path, real_embedder), scenario)
    documents, chunks = check_invariants(db, known)
    expected = {content_hash(d) for r in rows(1 + (ROUNDS - 1) % 2) for d in
                parse_bytes(json.dumps(r).encode(), "r.jsonl")}  # fmt: skip
    with KnowledgeStore.open(db) as store:
        piers = {d.content_hash for d in store.list_documents() if d.external_id.startswith("pier")}
    assert piers == expected  # the last round's version everywhere: nobody's write was lost
    print("\n".join(summary))
    print(f"concurrent writers: {WRITERS} kb add processes + bot uploads x {ROUNDS} rounds: "
          f"{documents} documents, {chunks} chunks, 0 duplicate positions, 0 broken "
          "documents, vectors = chunks = keyword rows")  # fmt: skip
