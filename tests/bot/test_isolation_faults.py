"""A chat's collection under faults: Telegram moving a group, and a state database that fails.

Through python-telegram-bot against the Bot API emulator, with the state on a real tmpfs that
is filled, or remounted read only. The rule under test: a chat bound to a collection is never
answered from, or written to, another one, whatever fails.
"""

from __future__ import annotations

import subprocess
import sys
from functools import partial
from pathlib import Path

from bot.config import Settings
from bot.core.bindings import UNKNOWN_BINDING, collection_key
from bot.local.emulator import BotAPIEmulator
from bot.state import StateStore
from knowledge.ingest import Ingestor
from knowledge.store import KnowledgeStore
from tests.bot.test_collections_telegram import HR_RULE, collections_of
from tests.bot.test_telegram import delivered, run_bot, texts
from tests.helpers import ADMIN, USER, HashEmbedder, ScriptedEngine, SmallDisk, scripted_services

OLD_GROUP, NEW_GROUP, SHOP = -200, -1000000000200, -300
PAYROLL = "Payroll: salaries are paid on the 25th; the payroll password is Heron-77."
QUESTION = "@ragtune_bot When are salaries paid?"


def say(emulator: BotAPIEmulator, text: str, *, user: int, chat: int, kind: str) -> None:
    """Send `text` and wait until the bot has said one more thing in that chat."""
    before = len(texts(emulator, chat))
    emulator.send_text(text, user_id=user, chat_id=chat, chat_type=kind)
    emulator.wait_for(partial(lambda n: len(texts(emulator, chat)) > n, before))


def ask(emulator: BotAPIEmulator, question: str, *, chat: int, kind: str) -> str:
    """Ask as USER and wait for the whole answer (it streams by edits); return it."""
    say(emulator, question, user=USER, chat=chat, kind=kind)
    emulator.wait_for(lambda: "Sources:" in delivered(emulator, chat)[-1])
    return delivered(emulator, chat)[-1]


def bound(state_db: Path, chat: int) -> str | None:
    """The collection the state file binds `chat` to."""
    with StateStore.open(state_db) as state:
        return state.read_fact(collection_key(chat))


def prompts(engine: ScriptedEngine) -> list[str]:
    """What each generation was asked (sources and question)."""
    return [turn[-1]["content"] for turn in engine.history]


def test_a_group_that_becomes_a_supergroup_keeps_its_collection(
    settings: Settings, emulator: BotAPIEmulator, tmp_path: Path
) -> None:
    engine = ScriptedEngine(["On the 25th [1]", "Tallinn [1]"])
    state_db = tmp_path / "state.db"
    shown: list[str] = []

    def scenario() -> None:
        say(emulator, "/kb new hr", user=ADMIN, chat=OLD_GROUP, kind="group")
        say(emulator, f"/add {HR_RULE}", user=ADMIN, chat=OLD_GROUP, kind="group")
        emulator.migrate_group(OLD_GROUP, NEW_GROUP, user_id=ADMIN)
        emulator.wait_for(lambda: bound(state_db, NEW_GROUP) == "hr")
        say(emulator, "/kb", user=USER, chat=NEW_GROUP, kind="supergroup")
        say(emulator, f"/add {PAYROLL}", user=ADMIN, chat=NEW_GROUP, kind="supergroup")
        shown.append(ask(emulator, QUESTION, chat=NEW_GROUP, kind="supergroup"))
        shown.append(ask(emulator, "When are salaries paid?", chat=USER, kind="private"))

    run_bot(settings, scripted_services(tmp_path, engine), scenario)
    which, added = texts(emulator, NEW_GROUP)[:2]
    assert which.startswith("This chat searches the collection hr (1 documents)")
    assert added.startswith("Added document")
    group_prompt, stranger_prompt = prompts(engine)
    assert PAYROLL in group_prompt
    assert PAYROLL not in stranger_prompt and HR_RULE not in stranger_prompt
    assert "Heron-77" not in shown[1]
    assert collections_of(tmp_path) == {"global": ["estonia"], "hr": [HR_RULE, PAYROLL[:60]]}
    assert bound(state_db, OLD_GROUP) is None  # moved, not copied
    with StateStore.open(state_db) as state:
        assert (0, "chat-moved", True, f"{OLD_GROUP} -> {NEW_GROUP}") in state.audit_log()


def test_an_add_that_arrives_with_the_move_waits_for_it_and_lands_in_the_groups_collection(
    settings: Settings, emulator: BotAPIEmulator, tmp_path: Path
) -> None:
    def scenario() -> None:
        say(emulator, "/kb new hr", user=ADMIN, chat=OLD_GROUP, kind="group")
        with emulator.together():  # the move and the first /add in one burst
            emulator.migrate_group(OLD_GROUP, NEW_GROUP, user_id=ADMIN)
            emulator.send_text(f"/add {PAYROLL}", user_id=ADMIN, chat_id=NEW_GROUP,
                               chat_type="supergroup")  # fmt: skip
        emulator.wait_for(lambda: bool(texts(emulator, NEW_GROUP)))

    run_bot(settings, scripted_services(tmp_path, ScriptedEngine()), scenario)
    assert texts(emulator, NEW_GROUP)[0].startswith("Added document")
    assert collections_of(tmp_path) == {"global": ["estonia"], "hr": [PAYROLL[:60]]}


def test_a_reply_refused_as_migrated_moves_the_binding_when_the_message_was_missed(
    settings: Settings, emulator: BotAPIEmulator, tmp_path: Path
) -> None:
    engine = ScriptedEngine(["30 days [1]"])
    state_db = tmp_path / "state.db"

    def scenario() -> None:
        say(emulator, "/kb new hr", user=ADMIN, chat=OLD_GROUP, kind="group")
        emulator.migrated[OLD_GROUP] = NEW_GROUP  # the migration messages never arrived
        emulator.send_text("/kb", user_id=USER, chat_id=OLD_GROUP, chat_type="group")
        emulator.wait_for(lambda: bound(state_db, NEW_GROUP) == "hr")
        say(emulator, "/kb", user=USER, chat=NEW_GROUP, kind="supergroup")

    run_bot(settings, scripted_services(tmp_path, engine), scenario)
    assert texts(emulator, NEW_GROUP)[0].startswith("This chat searches the collection hr")


def bind_hr(state_db: Path, kb_db: Path, *, checkpoint: bool) -> None:
    """The knowledge base has an `hr` collection with HR_RULE, and OLD_GROUP is bound to it in
    `state_db`; without `checkpoint`, as a bot killed with kill -9 leaves it: the binding only
    in the `-wal` file (and the `-shm` gone with the machine's memory)."""
    with KnowledgeStore.open(kb_db) as store:
        hr = store.create_collection("hr")
        Ingestor(store, HashEmbedder(), collection=hr.id).add_text(
            HR_RULE, title=HR_RULE, external_id="hr-rule", source="test"
        )
    if checkpoint:
        with StateStore.open(state_db) as state:
            state.write_fact(collection_key(OLD_GROUP), "hr")
        return
    script = (
        "import os, sys\nfrom bot.state import StateStore\n"
        "state = StateStore.open(sys.argv[1])  # held open: no checkpoint at exit\n"
        f"state.write_fact({collection_key(OLD_GROUP)!r}, 'hr')\n"
        "os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", script, str(state_db)], check=True, timeout=60)
    assert Path(f"{state_db}-wal").stat().st_size > 0
    Path(f"{state_db}-shm").unlink()


def test_with_the_state_read_only_a_bound_group_is_still_answered_from_its_own_collection(
    settings: Settings, emulator: BotAPIEmulator, tmp_path: Path, small_disk: SmallDisk
) -> None:
    state_db = small_disk.path / "state.db"
    bind_hr(state_db, tmp_path / "kb.db", checkpoint=True)
    small_disk.make_read_only()
    engine = ScriptedEngine(["30 days [1]"])
    answers: list[str] = []

    def scenario() -> None:
        answers.append(ask(emulator, "@ragtune_bot How many holidays?", chat=OLD_GROUP,
                           kind="group"))  # fmt: skip
        say(emulator, "/kb use global", user=ADMIN, chat=OLD_GROUP, kind="group")
        say(emulator, "/kb", user=USER, chat=OLD_GROUP, kind="group")

    run_bot(settings, scripted_services(tmp_path, engine, state_db=state_db), scenario)
    (prompt,) = prompts(engine)
    assert HR_RULE in prompt and "Tallinn" not in prompt
    refused, which = texts(emulator, OLD_GROUP)[-2:]
    assert refused.startswith("This chat could not be bound to global: the bot's state database")
    assert refused.endswith("it searches what it searched before.")
    assert which.startswith("This chat searches the collection hr")


def test_with_the_bindings_unreadable_a_bound_group_is_refused_and_nothing_is_written(
    settings: Settings, emulator: BotAPIEmulator, tmp_path: Path, small_disk: SmallDisk
) -> None:
    state_db = small_disk.path / "state.db"
    bind_hr(state_db, tmp_path / "kb.db", checkpoint=False)
    small_disk.make_read_only()
    engine = ScriptedEngine(["Tallinn [1]"] * 3)

    def scenario() -> None:
        say(emulator, "@ragtune_bot How many holidays?", user=USER, chat=OLD_GROUP, kind="group")
        say(emulator, f"/add {PAYROLL}", user=ADMIN, chat=OLD_GROUP, kind="group")
        before = len(texts(emulator, OLD_GROUP))
        emulator.send_document(PAYROLL.encode(), "payroll.txt", user_id=ADMIN, caption="/add",
                               chat_id=OLD_GROUP, chat_type="group")  # fmt: skip
        emulator.wait_for(lambda: len(texts(emulator, OLD_GROUP)) > before)
        say(emulator, "What is the capital of Estonia?", user=USER, chat=USER, kind="private")

    run_bot(settings, scripted_services(tmp_path, engine, state_db=state_db), scenario)
    assert texts(emulator, OLD_GROUP) == [UNKNOWN_BINDING] * 3
    assert texts(emulator, USER) == [UNKNOWN_BINDING]  # private chats may be bound too
    assert engine.history == [] and emulator.sent("getFile") == []
    assert collections_of(tmp_path) == {"global": ["estonia"], "hr": [HR_RULE]}


def test_with_the_state_disk_full_a_binding_is_refused_not_reported_as_done(
    settings: Settings, emulator: BotAPIEmulator, tmp_path: Path, small_disk: SmallDisk
) -> None:
    state_db = small_disk.path / "state.db"
    bind_hr(state_db, tmp_path / "kb.db", checkpoint=True)

    def scenario() -> None:
        small_disk.fill()
        say(emulator, "/kb use global", user=ADMIN, chat=OLD_GROUP, kind="group")
        say(emulator, "/kb new shop", user=ADMIN, chat=SHOP, kind="group")
        small_disk.free()
        say(emulator, "/kb", user=USER, chat=OLD_GROUP, kind="group")
        say(emulator, "/kb", user=USER, chat=SHOP, kind="group")

    services = scripted_services(tmp_path, ScriptedEngine(), state_db=state_db)
    run_bot(settings, services, scenario)
    refused, still = texts(emulator, OLD_GROUP)
    assert refused.startswith("This chat could not be bound to global") and "full" in refused
    assert still.startswith("This chat searches the collection hr")
    created, unbound = texts(emulator, SHOP)
    assert created.startswith("The collection shop was created. This chat could not be bound")
    assert unbound.startswith("This chat searches the collection global")
    assert bound(state_db, OLD_GROUP) == "hr" and bound(state_db, SHOP) is None


def test_a_state_kept_in_memory_never_reports_a_binding_as_stored(
    settings: Settings, emulator: BotAPIEmulator, tmp_path: Path, small_disk: SmallDisk
) -> None:
    small_disk.make_read_only()  # no state file, and none can be made: the state is in memory
    with KnowledgeStore.open(tmp_path / "kb.db") as store:
        store.create_collection("hr")
    services = scripted_services(tmp_path, ScriptedEngine(), state_db=small_disk.path / "s.db")

    def scenario() -> None:
        say(emulator, "/kb use hr", user=ADMIN, chat=OLD_GROUP, kind="group")
        say(emulator, "/kb", user=USER, chat=OLD_GROUP, kind="group")

    run_bot(settings, services, scenario)
    refused, which = texts(emulator, OLD_GROUP)
    assert refused.startswith("This chat could not be bound to hr: the bot's state database (")
    assert "kept in memory for now) cannot be written" in refused
    assert which.startswith("This chat searches the collection global")  # as it did before
