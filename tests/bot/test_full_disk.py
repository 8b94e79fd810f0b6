"""A full disk under the bot's state: answers go on, one admin alert, nothing stuck, no traces."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bot.config import Settings
from bot.local.emulator import BotAPIEmulator
from bot.state import StateStore
from bot.tg.handlers import APOLOGY
from knowledge.ingest import Ingestor
from knowledge.store import KnowledgeStore
from tests.bot.test_telegram import run_bot, texts
from tests.helpers import ADMIN, HashEmbedder, ScriptedEngine, SmallDisk, scripted_services

RAGTUNE = str(Path(sys.executable).parent / "ragtune")
QUESTION = "What is the capital of Estonia?"


def test_with_the_state_on_a_full_disk_every_question_is_answered_and_admins_told_once(
    settings: Settings, emulator: BotAPIEmulator, tmp_path: Path, small_disk: SmallDisk
) -> None:
    engine = ScriptedEngine(["Tallinn [1]"] * 6)
    state_db = small_disk.path / "state.db"
    users = (21, 22, 23, 24)

    def scenario() -> None:
        small_disk.fill()
        for user in users:
            emulator.send_text(QUESTION, user_id=user)
        emulator.wait_for(lambda: all(texts(emulator, u) for u in users), timeout=30)
        small_disk.free()  # room again: memory comes back, nothing was left stuck
        emulator.send_text(QUESTION, user_id=25)
        emulator.wait_for(lambda: bool(texts(emulator, 25)), timeout=30)

    services = scripted_services(tmp_path, engine, alert_chats=(ADMIN,), state_db=state_db)
    run_bot(settings, services, scenario)
    for user in users:  # asked together: some wait their turn, then get their answer
        assert texts(emulator, user)[-1].startswith("Tallinn [1]"), texts(emulator, user)
        assert APOLOGY not in texts(emulator, user)
    (reply,) = texts(emulator, 25)  # nothing was left in the queue: no "You are number 2"
    assert reply.startswith("Tallinn [1]"), reply
    alerts = texts(emulator, ADMIN)
    assert len(alerts) == 1 and "cannot be written" in alerts[0], alerts
    with StateStore.open(state_db) as state:
        assert not state.recent_turns(f"tg:{users[0]}", 4)  # not remembered while full
        assert state.recent_turns("tg:25", 4)  # remembered once there was room


def cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RAGTUNE, *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip


def test_the_cli_on_a_full_disk_says_one_sentence_and_leaves_no_partial_file(
    tmp_path: Path, small_disk: SmallDisk
) -> None:
    db = tmp_path / "kb.db"
    (tmp_path / "estonia.txt").write_text("The capital of Estonia is Tallinn.")
    embedder = HashEmbedder(model_id="sentence-transformers/all-MiniLM-L6-v2", dimension=384)
    with KnowledgeStore.open(db) as store:
        Ingestor(store, embedder).add_paths([tmp_path / "estonia.txt"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAGTUNE_")}
    env |= {"RAGTUNE_DB": str(db), "RAGTUNE_STATE_DB": str(small_disk.path / "state.db")}
    StateStore.open(small_disk.path / "state.db").close()  # the state file exists, then no room
    small_disk.fill()
    saved = cli("kb", "backup", str(small_disk.path / "kb-backup.db"), env=env, cwd=tmp_path)
    asked = cli("ask", QUESTION, "--chat", "t", env=env, cwd=tmp_path)
    print(saved.stderr, asked.stderr)
    lines = [line for line in saved.stderr.splitlines() if line.strip()]
    assert saved.returncode == 1 and len(lines) == 1, saved.stderr
    assert lines[0].startswith("error: Could not write the backup") and "full" in lines[0]
    left = {p.name for p in small_disk.path.iterdir()} - {"state.db-shm", "state.db-wal"}
    assert left == {"filler", "state.db"}  # no backup, no partial file
    assert asked.returncode == 0 and "Traceback" not in asked.stderr
    assert asked.stdout.strip()  # the answer, though the conversation could not be kept


def test_an_upload_onto_a_full_knowledge_base_disk_is_said_and_the_bot_serves_on(
    settings: Settings, emulator: BotAPIEmulator, tmp_path: Path, small_disk: SmallDisk
) -> None:
    engine = ScriptedEngine(["Tallinn [1]"])
    kb_db = small_disk.path / "kb.db"

    def edits() -> list[str]:
        return [str(c.params["text"]) for c in emulator.sent("editMessageText", ADMIN)]

    def scenario() -> None:
        small_disk.fill()
        emulator.send_document(b"The ferry leaves at noon. " * 400, "ferry.txt", user_id=ADMIN)
        emulator.wait_for(lambda: any("cannot be written" in t for t in edits()), timeout=30)
        emulator.send_text(QUESTION, user_id=5)  # answering only reads: it goes on
        emulator.wait_for(lambda: bool(texts(emulator, 5)), timeout=30)

    services = scripted_services(tmp_path, engine, alert_chats=(ADMIN,), kb_db=kb_db)
    run_bot(settings, services, scenario)
    (said,) = [t for t in edits() if "cannot be written" in t]
    assert said.startswith("The knowledge base cannot be written (") and "free some space" in said
    assert texts(emulator, 5)[-1].startswith("Tallinn [1]")
    small_disk.free()
    with KnowledgeStore.open(kb_db) as store:
        assert store.problems() == [] and [d.title for d in store.list_documents()] == ["estonia"]
