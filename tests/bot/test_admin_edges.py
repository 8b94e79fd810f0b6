"""Admin input at the edges: files shared in groups, uploads that would overwrite, odd ids,
forged buttons, files Telegram no longer has, and /sources among group members."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from bot.config import Settings
from bot.local.chat import buttons
from bot.local.emulator import BotAPIEmulator
from bot.state import StateStore
from knowledge.ingest import Ingestor
from knowledge.store import KnowledgeStore
from tests.bot.test_telegram import run_bot, texts
from tests.helpers import ADMIN, USER, HashEmbedder, ScriptedEngine, scripted_services

GROUP = -500
SALARIES = b"Salaries 2026: Ada earns 91,000 euros. Grace earns 88,000 euros."


def stored_text(tmp_path: Path) -> str:
    with KnowledgeStore.open(tmp_path / "kb.db") as store:
        return " ".join(c.text for batch in store.iter_chunks() for c in batch)


def edits(emulator: BotAPIEmulator, chat: int) -> list[str]:
    return [str(c.params["text"]) for c in emulator.sent("editMessageText", chat)]


def finished(emulator: BotAPIEmulator, chat: int, count: int = 1) -> bool:
    done = [t for t in edits(emulator, chat) if t.startswith(("Done", "Nothing", "I could not"))]
    return len(done) >= count


def test_a_file_shared_in_a_group_is_added_only_with_an_explicit_add(
    settings: Settings, emulator: BotAPIEmulator, tmp_path: Path
) -> None:
    def scenario() -> None:
        shared = emulator.send_document(SALARIES, "salaries.txt", user_id=ADMIN,
                                        chat_id=GROUP, chat_type="group")  # fmt: skip
        emulator.send_text("thanks, got it", user_id=USER, chat_id=GROUP, chat_type="group")
        emulator.send_document(b"The ferry leaves at noon.", "ferry.txt", user_id=ADMIN,
                               chat_id=GROUP, chat_type="group", caption="/add")  # fmt: skip
        emulator.wait_for(lambda: finished(emulator, GROUP))
        assert "91,000" not in stored_text(tmp_path)  # shared, never given to the bot
        emulator.send_text("/add", user_id=USER, chat_id=GROUP, chat_type="group",
                           reply_to=shared["message"])  # fmt: skip
        emulator.wait_for(lambda: any("admins only" in t for t in texts(emulator, GROUP)))
        emulator.send_text("/add", user_id=ADMIN, chat_id=GROUP, chat_type="group",
                           reply_to=shared["message"])  # fmt: skip
        emulator.wait_for(lambda: finished(emulator, GROUP, 2))

    run_bot(settings, scripted_services(tmp_path, ScriptedEngine()), scenario)
    ferry, salaries = [t for t in edits(emulator, GROUP) if t.startswith("Done")]
    # Titled by their first line (cut at 60 characters in the status), not by "upload".
    assert ferry.endswith("Added: 2. The ferry leaves at noon.") and "1 new" in ferry
    assert salaries.endswith(f"Added: 3. {SALARIES.decode()[:60]}")
    assert len(emulator.sent("getFile")) == 2  # the plain share was never even downloaded
    assert "91,000" in stored_text(tmp_path)  # once an admin asked for it


def test_an_upload_never_overwrites_a_document_it_did_not_make_unless_asked(
    settings: Settings, emulator: BotAPIEmulator, tmp_path: Path
) -> None:
    rows = [{"id": "policy", "title": "Policy", "text": "Refunds take 30 days."},
            {"id": "new", "title": "New", "text": "Returns are free."}]  # fmt: skip
    corpus = "\n".join(json.dumps(row) for row in rows).encode()

    def scenario() -> None:
        with KnowledgeStore.open(tmp_path / "kb.db") as store:  # added from the CLI before
            Ingestor(store, HashEmbedder()).add_text(
                "Refunds take 14 days.", title="Policy", external_id="policy", source="/srv/p.md"
            )
        emulator.send_document(corpus, "faq.jsonl", user_id=ADMIN)
        emulator.wait_for(lambda: finished(emulator, ADMIN))
        assert "14 days" in stored_text(tmp_path) and "30 days" not in stored_text(tmp_path)
        emulator.send_document(corpus, "faq.jsonl", user_id=ADMIN, caption="/add replace")
        emulator.wait_for(lambda: finished(emulator, ADMIN, 2))

    run_bot(settings, scripted_services(tmp_path, ScriptedEngine()), scenario)
    first, second = [t for t in edits(emulator, ADMIN) if t.startswith("Done")]
    assert "Added: " in first and "New" in first
    assert "Skipped: policy exists already (added with /add) and was left as it is; send the " \
           "file again with the caption /add replace to replace it." in first  # fmt: skip
    assert "Replaced: " in second and "Policy" in second
    assert "30 days" in stored_text(tmp_path) and "14 days" not in stored_text(tmp_path)


def test_odd_ids_and_forged_buttons_are_refused_after_the_admin_check_and_audited(
    settings: Settings, emulator: BotAPIEmulator, tmp_path: Path
) -> None:
    def scenario() -> None:
        emulator.send_text("/docs ²", user_id=USER)
        emulator.send_text("/forget ²", user_id=USER)
        emulator.wait_for(lambda: len(texts(emulator, USER)) >= 2)
        forged = {"message_id": 1, "date": 0, "chat": {"id": USER, "type": "private"},
                  "text": "Forget document 1?"}  # fmt: skip
        emulator.press_button(forged, "forget:abc", user_id=USER)
        emulator.press_button(forged, "docs:²", user_id=USER)
        emulator.wait_for(lambda: len(emulator.sent("answerCallbackQuery")) >= 2)
        emulator.send_text("/docs ²", user_id=ADMIN)
        emulator.send_text("/forget ²", user_id=ADMIN)
        emulator.wait_for(lambda: len(texts(emulator, ADMIN)) >= 2)
        real = emulator.last_message(ADMIN)  # a message the bot sent, with forged data
        emulator.press_button(real, "forget:abc", user_id=ADMIN)
        emulator.wait_for(lambda: bool(edits(emulator, ADMIN)))

    run_bot(settings, scripted_services(tmp_path, ScriptedEngine()), scenario)
    assert all("for admins only" in t for t in texts(emulator, USER))
    alerts = [c.params for c in emulator.sent("answerCallbackQuery")][:2]
    assert all("admins only" in str(a.get("text")) and a.get("show_alert") for a in alerts)
    # The two commands were sent together: their replies may come in either order.
    docs, forget = sorted(texts(emulator, ADMIN))
    assert docs.startswith("<b>Documents of global</b> (page 1/1)")
    assert forget == "No document with id '²': see `ragtune kb list`."
    assert edits(emulator, ADMIN) == ["No document with id 'abc': see `ragtune kb list`."]
    with StateStore.open(tmp_path / "state.db") as state:
        refused = {a for u, a, ok, _ in state.audit_log() if not ok and u == USER}
    assert refused == {"docs", "forget", "forget-confirmed"}


def test_a_confirm_button_under_a_message_telegram_no_longer_shows_answers_in_a_new_message(
    settings: Settings, emulator: BotAPIEmulator, tmp_path: Path
) -> None:
    def scenario() -> None:
        emulator.send_text("/forget 1", user_id=ADMIN)
        emulator.wait_for(lambda: bool(texts(emulator, ADMIN)))
        asked = emulator.last_message(ADMIN)
        confirm = str(buttons(asked)[0]["callback_data"])
        # Too old or deleted: Telegram sends only its chat and id, with date 0.
        gone = {"message_id": asked["message_id"], "date": 0, "chat": asked["chat"]}
        emulator.press_button(gone, confirm, user_id=ADMIN)
        emulator.wait_for(lambda: len(texts(emulator, ADMIN)) >= 2)

    run_bot(settings, scripted_services(tmp_path, ScriptedEngine()), scenario)
    assert texts(emulator, ADMIN)[1] == "Forgot document 1."
    assert edits(emulator, ADMIN) == []  # nothing to edit: said in a new message
    with KnowledgeStore.open(tmp_path / "kb.db") as store:
        assert store.list_documents() == []


def test_a_file_telegram_no_longer_has_is_said_and_logged(
    settings: Settings, emulator: BotAPIEmulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def scenario() -> None:
        emulator.send_document(b"The ferry leaves at noon.", "ferry.txt", user_id=ADMIN,
                               downloadable=False)  # fmt: skip
        emulator.wait_for(lambda: finished(emulator, ADMIN))

    with caplog.at_level(logging.WARNING):
        run_bot(settings, scripted_services(tmp_path, ScriptedEngine()), scenario)
    (said,) = [t for t in edits(emulator, ADMIN) if t.startswith("I could not")]
    assert said.startswith("I could not download that file from Telegram")
    assert "nothing was added" in said and "Token" not in said
    assert any("download of an upload failed" in r.getMessage() for r in caplog.records)
    assert "ferry" not in stored_text(tmp_path)


def test_sources_in_a_group_are_each_members_own(
    settings: Settings, emulator: BotAPIEmulator, tmp_path: Path
) -> None:
    engine = ScriptedEngine(["Tallinn [1]"])

    def scenario() -> None:
        emulator.send_text("/ask What is the capital of Estonia?", user_id=ADMIN,
                           chat_id=GROUP, chat_type="group")  # fmt: skip
        emulator.wait_for(lambda: bool(texts(emulator, GROUP)))
        emulator.send_text("/sources", user_id=USER, chat_id=GROUP, chat_type="group")
        emulator.wait_for(lambda: len(texts(emulator, GROUP)) >= 2)
        emulator.send_text("/sources", user_id=ADMIN, chat_id=GROUP, chat_type="group")
        emulator.wait_for(lambda: len(texts(emulator, GROUP)) >= 3)

    run_bot(settings, scripted_services(tmp_path, engine), scenario)
    _, others, own = texts(emulator, GROUP)
    assert others == "My last answer had no sources."
    assert "estonia" in own and "Tallinn" in own


def test_an_old_forget_button_never_removes_a_document_that_took_over_its_id(
    settings: Settings, emulator: BotAPIEmulator, tmp_path: Path
) -> None:
    def scenario() -> None:
        emulator.send_text("/add The ferry leaves at noon.", user_id=ADMIN)
        emulator.wait_for(lambda: len(texts(emulator, ADMIN)) >= 1)
        emulator.send_text("/forget 2", user_id=ADMIN)
        emulator.wait_for(lambda: len(texts(emulator, ADMIN)) >= 2)
        asked = emulator.last_message(ADMIN)
        with KnowledgeStore.open(tmp_path / "kb.db") as store:  # removed another way meanwhile
            store.delete_document(2)
        emulator.send_text("/add The museum opens at ten.", user_id=ADMIN)  # gets id 2 again
        emulator.wait_for(lambda: len(texts(emulator, ADMIN)) >= 3)
        emulator.press_button(asked, str(buttons(asked)[0]["callback_data"]), user_id=ADMIN)
        emulator.wait_for(lambda: bool(edits(emulator, ADMIN)))

    run_bot(settings, scripted_services(tmp_path, ScriptedEngine()), scenario)
    assert "Added document 2" in texts(emulator, ADMIN)[2]
    (said,) = edits(emulator, ADMIN)
    assert said.startswith("Document 2 is not the one you were asked about any more")
    assert "museum" in stored_text(tmp_path)
