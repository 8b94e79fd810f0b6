"""The bot through python-telegram-bot's real HTTP stack against the local Bot API emulator."""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from bot.app import ServicesFactory, build_application
from bot.config import Settings
from bot.core.access import AccessMode, AccessSettings
from bot.llm.adapters import AdapterRegistry, Manifest, file_sha256
from bot.local.chat import buttons, running_bot
from bot.local.emulator import BotAPIEmulator, Fault, SentCall
from bot.state import StateStore
from bot.tg.handlers import APOLOGY, BUSY, ONE_AT_A_TIME, RESTARTING, STOPPED
from bot.tg.menus import WELCOME
from bot.tg.serve import Server
from knowledge.ingest import Ingestor
from knowledge.store import KnowledgeStore
from tests.helpers import (
    ADMIN,
    MAX_BYTES,
    USER,
    HashEmbedder,
    ScriptedEngine,
    consistent_chunk_count,
    scripted_services,
)
from tests.hostile_files import CANARIES, HTML_WITH_SCRIPTS


def run_bot(settings: Settings, services: ServicesFactory, scenario: Callable[[], None]) -> None:
    """Start the real Application (polling the emulator), run `scenario` in a thread, stop."""

    async def main() -> None:
        async with running_bot(settings, services):
            await asyncio.to_thread(scenario)

    asyncio.run(main())


def texts(emulator: BotAPIEmulator, chat_id: int) -> list[str]:
    """Every sendMessage text the bot attempted to a chat (refused calls included)."""
    return [str(c.params["text"]) for c in emulator.sent("sendMessage", chat_id)]


def delivered(emulator: BotAPIEmulator, chat_id: int) -> list[str]:
    """The messages that reached a chat, as they read now."""
    return [str(m.get("text", "")) for m in emulator.messages(chat_id)]


def test_start_greets(settings: Settings, emulator: BotAPIEmulator, tmp_path: Path) -> None:
    def scenario() -> None:
        emulator.send_text("/start", user_id=5)
        emulator.wait_for(lambda: bool(texts(emulator, 5)))

    run_bot(settings, scripted_services(tmp_path, ScriptedEngine()), scenario)
    assert texts(emulator, 5) == [WELCOME]


def test_whoami_tells_anyone_their_numeric_id(
    settings: Settings, emulator: BotAPIEmulator, tmp_path: Path
) -> None:
    def scenario() -> None:
        emulator.send_text("/whoami", user_id=424242)  # not on any list
        emulator.wait_for(lambda: bool(texts(emulator, 424242)))

    run_bot(settings, scripted_services(tmp_path, ScriptedEngine()), scenario)
    assert texts(emulator, 424242) == ["Your Telegram id is 424242."]
    menu = emulator.sent("setMyCommands")[0].params["commands"]
    assert "whoami" in str(menu)


def test_help_lists_cancel_to_everyone_and_the_admin_commands_to_admins_only(
    settings: Settings, emulator: BotAPIEmulator, tmp_path: Path
) -> None:
    def scenario() -> None:
        emulator.send_text("/help", user_id=USER)
        emulator.send_text("/help", user_id=ADMIN)
        emulator.wait_for(lambda: bool(texts(emulator, USER)) and bool(texts(emulator, ADMIN)))

    run_bot(settings, scripted_services(tmp_path, ScriptedEngine()), scenario)
    (user_help,), (admin_help,) = texts(emulator, USER), texts(emulator, ADMIN)
    assert "/cancel" in user_help and "<" not in user_help  # nothing a client can eat as a tag
    assert "/forget" not in user_help and "/reindex" not in user_help
    assert admin_help.startswith(user_help)
    for command in ("/add", "/docs", "/forget", "/reindex", "/adapter", "/backup", "/stats"):
        assert f"\n{command} " in admin_help, command


def test_a_private_question_is_answered_with_sources(
    settings: Settings, emulator: BotAPIEmulator, tmp_path: Path
) -> None:
    engine = ScriptedEngine(["Tallinn [1]"])

    def scenario() -> None:
        emulator.send_text("What is the capital of Estonia?", user_id=5)
        emulator.wait_for(lambda: bool(texts(emulator, 5)))

    run_bot(settings, scripted_services(tmp_path, engine), scenario)
    (reply,) = texts(emulator, 5)
    # The answer, the source sentence it rests on (quoted for the reader), then the sources.
    assert reply.startswith(
        "Tallinn [1]\n\n<blockquote>“The capital of Estonia is Tallinn.”</blockquote>\n\n"
        "<i>Sources:</i>\n[1] estonia"
    ), reply
    assert "What is the capital of Estonia?" in engine.history[0][-1]["content"]


def test_groups_hear_only_mentions(
    settings: Settings, emulator: BotAPIEmulator, tmp_path: Path
) -> None:
    engine = ScriptedEngine(["Tallinn [1]"])

    def scenario() -> None:
        emulator.send_text("chatting about Estonia", user_id=5, chat_id=-100, chat_type="group")
        emulator.send_text("@ragtune_bot capital of Estonia?", user_id=5, chat_id=-100,
                           chat_type="group")  # fmt: skip
        emulator.wait_for(lambda: bool(texts(emulator, -100)))

    run_bot(settings, scripted_services(tmp_path, engine), scenario)
    assert len(engine.history) == 1  # only the mention reached the model
    assert texts(emulator, -100)[0].startswith("Tallinn [1]")


def test_hostile_model_output_and_long_answers_are_sent_safely(
    settings: Settings, emulator: BotAPIEmulator, tmp_path: Path
) -> None:
    hostile = "<script>alert(1)</script> **bold** <b>unclosed & <i>tags [1]"
    long_answer = " ".join(["word"] * 2500)  # ~12,500 characters
    engine = ScriptedEngine([hostile, long_answer])

    def scenario() -> None:
        emulator.send_text("first?", user_id=5)
        emulator.wait_for(lambda: len(texts(emulator, 5)) >= 1)
        emulator.send_text("second?", user_id=5)
        emulator.wait_for(lambda: len(texts(emulator, 5)) >= 4)

    run_bot(settings, scripted_services(tmp_path, engine), scenario)
    sent = texts(emulator, 5)
    assert sent[0].startswith(
        "&lt;script&gt;alert(1)&lt;/script&gt; **bold** &lt;b&gt;unclosed &amp;"
    )
    assert all(len(part) <= 4096 for part in sent)
    assert sum(part.count("word") for part in sent[1:]) == 2500


def documents(tmp_path: Path) -> list[str]:
    with KnowledgeStore.open(tmp_path / "kb.db") as store:
        return [d.title for d in store.list_documents()]


def test_an_admin_adds_text_and_the_bot_answers_from_it(
    settings: Settings, emulator: BotAPIEmulator, tmp_path: Path
) -> None:
    engine = ScriptedEngine(["Friday [1]"])

    def scenario() -> None:
        emulator.send_text("/add The office party is on Friday at noon.", user_id=ADMIN)
        emulator.wait_for(lambda: bool(texts(emulator, ADMIN)))
        emulator.send_text("When is the office party?", user_id=ADMIN)
        emulator.wait_for(lambda: len(texts(emulator, ADMIN)) >= 2)

    run_bot(settings, scripted_services(tmp_path, engine), scenario)
    added, answer = texts(emulator, ADMIN)
    assert added.startswith("Added document") and "1 chunks added" in added
    assert "[1] The office party is on Friday at noon." in engine.history[0][-1]["content"]
    assert answer.startswith("Friday [1]")
    assert "The office party is on Friday at noon." in documents(tmp_path)


def test_non_admins_change_nothing_and_are_audited(
    settings: Settings, emulator: BotAPIEmulator, tmp_path: Path
) -> None:
    def scenario() -> None:
        for command in ("/add sneaky text", "/forget 1", "/docs", "/stats", "/reindex",
                        "/backup", "/adapter off", "/eval"):  # fmt: skip
            emulator.send_text(command, user_id=USER)
        emulator.send_document(b"sneaky file", "notes.txt", user_id=USER)
        emulator.wait_for(lambda: len(texts(emulator, USER)) >= 9)

    run_bot(settings, scripted_services(tmp_path, ScriptedEngine()), scenario)
    assert documents(tmp_path) == ["estonia"]
    replies = texts(emulator, USER)
    assert all("for admins only" in reply for reply in replies), replies
    assert not emulator.sent("getFile")  # the upload was refused before any download
    with StateStore.open(tmp_path / "state.db") as state:
        refused = [(u, a) for u, a, ok, _ in state.audit_log() if not ok]
    assert {a for _, a in refused} == {
        "add",
        "forget",
        "docs",
        "stats",
        "reindex",
        "backup",
        "adapter",
        "eval",
        "upload-request",
    }
    assert {u for u, _ in refused} == {USER}


def test_an_admin_uploads_a_pdf_it_answers_from_it_and_after_forget_it_is_gone(
    settings: Settings, emulator: BotAPIEmulator, tmp_path: Path
) -> None:
    from tests.knowledge.documents import make_pdf

    pdf = make_pdf(tmp_path / "owls.pdf", ["Owls hunt mice at night."], title="Owls")
    engine = ScriptedEngine(["At night [1]", "I don't know [1]"])
    question = "When do owls hunt mice?"

    def edits() -> list[str]:
        return [str(c.params["text"]) for c in emulator.sent("editMessageText", ADMIN)]

    def scenario() -> None:
        emulator.send_document(pdf.read_bytes(), "owls.pdf", user_id=ADMIN)
        emulator.wait_for(lambda: any(text.startswith("Done") for text in edits()))
        emulator.send_text(question, user_id=USER)
        emulator.wait_for(lambda: bool(texts(emulator, USER)))
        owls = next(d for d in documents_with_ids(tmp_path) if d[1] == "Owls")
        emulator.send_text(f"/forget {owls[0]}", user_id=ADMIN)
        emulator.wait_for(lambda: any("reply_markup" in c.params
                                      for c in emulator.sent("sendMessage", ADMIN)))  # fmt: skip
        sent = emulator.last_message(ADMIN)
        assert "Forget document" in str(sent["text"]) and "reply_markup" in sent
        confirm = str(buttons(sent)[0]["callback_data"])
        assert confirm.startswith(f"forget:{owls[0]}:")
        emulator.press_button(sent, confirm, user_id=USER)  # not an admin: refused
        emulator.wait_for(lambda: any("admins only" in str(c.params.get("text"))
                                      for c in emulator.sent("answerCallbackQuery")))  # fmt: skip
        assert "Owls" in documents(tmp_path)
        assert emulator.message(ADMIN, sent["message_id"]) == sent  # buttons still there
        emulator.press_button(sent, confirm, user_id=ADMIN)
        emulator.wait_for(
            lambda: "Forgot document" in emulator.message_text(ADMIN, sent["message_id"])
        )
        emulator.send_text(question, user_id=USER)
        emulator.wait_for(lambda: len(texts(emulator, USER)) >= 2)

    run_bot(settings, scripted_services(tmp_path, engine), scenario)
    done = next(text for text in edits() if text.startswith("Done"))
    assert done.startswith(
        "Done: 1 chunks added, 0 unchanged, 0 replaced (1 new, 0 updated, 0 unchanged documents)."
    )
    assert done.endswith("Added: 2. Owls")  # says what was added
    before, after = texts(emulator, USER)
    assert "Owls hunt mice at night." in engine.history[0][-1]["content"]
    # Sources name the upload by the sender's file name.
    assert before.startswith("At night [1]") and before.endswith("[1] Owls › page 1 — owls.pdf")
    assert "Owls hunt mice" not in engine.history[1][-1]["content"]  # forgotten for real
    assert after.endswith("[1] estonia")
    assert documents(tmp_path) == ["estonia"]


def test_oversized_uploads_are_refused_before_download(
    settings: Settings, emulator: BotAPIEmulator, tmp_path: Path
) -> None:
    def scenario() -> None:
        emulator.send_document(b"x" * (MAX_BYTES + 1), "big.txt", user_id=ADMIN)
        emulator.wait_for(lambda: bool(texts(emulator, ADMIN)))

    run_bot(settings, scripted_services(tmp_path, ScriptedEngine()), scenario)
    (reply,) = texts(emulator, ADMIN)
    assert "over the 0.2 MB limit; nothing was added" in reply
    assert not emulator.sent("getFile") and documents(tmp_path) == ["estonia"]


def knowledge_snapshot(tmp_path: Path) -> tuple[object, ...]:
    """Everything a refused upload must leave as it was."""
    with KnowledgeStore.open(tmp_path / "kb.db") as store:
        docs = [(d.id, d.external_id, d.title, d.content_hash) for d in store.list_documents()]
        return tuple(docs), store.row_ids()


def test_hostile_uploads_are_refused_or_read_within_limits_and_the_bot_keeps_serving(
    settings: Settings, emulator: BotAPIEmulator, tmp_path: Path, hostile: dict[str, bytes]
) -> None:
    uploads = [  # (the sender's file name, bytes, what the admin is told)
        ("EVIL-zip-bomb.docx", hostile["docx zip bomb"], "it looks like a zip bomb"),
        ("EVIL-bomb.pdf", hostile["pdf decompression bomb"], "looks like a decompression bomb"),
        ("EVIL-5000-pages.pdf", hostile["pdf 5000 pages"], "5,000 pages, over the 2,000-page"),
        ("EVIL-locked.pdf", hostile["pdf password"], "password-protected"),
        ("EVIL-pdf-really.txt", hostile["pdf broken xref"], "is a PDF, not .txt text"),
        ("EVIL-pdf-really.docx", hostile["pdf broken xref"], "is not a DOCX file (a PDF)"),
        ("EVIL-png-really.md", b"\x89PNG\r\n\x1a\n" + bytes(range(256)), "is a PNG image"),
        ("EVIL-broken-xref.pdf", hostile["pdf broken xref"], "Done: 1 chunks added"),
        ("../../EVIL-scripts.html", HTML_WITH_SCRIPTS, "Done: 1 chunks added"),
    ]
    engine = ScriptedEngine(["Tallinn [1]"])

    def final_status() -> str:
        edits = [str(c.params["text"]) for c in emulator.sent("editMessageText", ADMIN)]
        return edits[-1] if edits and edits[-1].startswith(("Nothing", "Done")) else ""

    def finished(edits_before: int) -> bool:  # "Reading…" and then the outcome
        return len(emulator.sent("editMessageText", ADMIN)) > edits_before + 1 and bool(
            final_status()
        )

    def scenario() -> None:
        for name, data, expected in uploads:
            before = knowledge_snapshot(tmp_path)
            done = len(emulator.sent("editMessageText", ADMIN))
            emulator.send_document(data, name, user_id=ADMIN)
            emulator.wait_for(partial(finished, done), timeout=60)
            assert expected in final_status(), (name, final_status())
            if final_status().startswith("Nothing was added"):
                assert knowledge_snapshot(tmp_path) == before, name  # not one row changed
        emulator.send_text("What is the capital of Estonia?", user_id=USER)
        emulator.wait_for(lambda: bool(texts(emulator, USER)))

    run_bot(settings, scripted_services(tmp_path, engine, max_bytes=2_000_000), scenario)
    assert texts(emulator, USER)[-1].startswith("Tallinn [1]")  # still serving
    with KnowledgeStore.open(tmp_path / "kb.db") as store:
        stored = [(d.external_id, d.title, d.source) for d in store.list_documents()]
        text = " ".join(c.text for d in store.list_documents() for c in store.document_chunks(d.id))
    # Ids and titles never come from the sender; the file name is only a sanitised label.
    assert len(stored) == 3 and "EVIL" not in repr([(i, t) for i, t, _ in stored])
    labels = [source for _, _, source in stored if source.startswith("telegram:")]
    assert labels == ["telegram:EVIL-broken-xref.pdf", "telegram:EVIL-scripts.html"]
    assert "lentil" in text and "ferry leaves at noon" in text
    assert not any(canary in text for canary in CANARIES)  # no script, style or handler text


def documents_with_ids(tmp_path: Path) -> list[tuple[int, str]]:
    with KnowledgeStore.open(tmp_path / "kb.db") as store:
        return [(d.id, d.title) for d in store.list_documents()]


def test_admin_commands_show_in_the_menu_of_admins_only(
    settings: Settings, emulator: BotAPIEmulator, tmp_path: Path
) -> None:
    admins = settings.model_copy(update={"admin_ids": (ADMIN,)})
    run_bot(admins, scripted_services(tmp_path, ScriptedEngine()), lambda: None)
    calls = emulator.sent("setMyCommands")
    everyone = [c for c in calls if "scope" not in c.params]
    admin_menu = [c for c in calls if c.params.get("scope") == {"type": "chat", "chat_id": ADMIN}]
    assert len(everyone) == len(admin_menu) == 1

    def names(call: SentCall) -> set[str]:
        return {c["command"] for c in call.params["commands"]}

    assert "add" not in names(everyone[0]) and {"add", "forget", "ask"} <= names(admin_menu[0])


def test_a_429_is_honoured_and_the_answer_still_arrives(
    settings: Settings, emulator: BotAPIEmulator, tmp_path: Path
) -> None:
    emulator.faults.append(Fault("sendMessage", 429, times=1, retry_after=1))

    def scenario() -> None:
        emulator.send_text("What is the capital of Estonia?", user_id=USER)
        emulator.wait_for(lambda: bool(texts(emulator, USER)))

    run_bot(settings, scripted_services(tmp_path, ScriptedEngine(["Tallinn [1]"])), scenario)
    refused, delivered = emulator.sent("sendMessage", USER)
    assert delivered.at - refused.at >= 1.0  # nothing reached the chat before retry_after
    assert texts(emulator, USER)[-1].startswith("Tallinn [1]")


def test_one_question_at_a_time_per_user_and_cancel(
    settings: Settings, emulator: BotAPIEmulator, tmp_path: Path
) -> None:
    engine = ScriptedEngine(["word " * 400], delay_s=0.02)  # ~8 s unless cancelled

    def scenario() -> None:
        emulator.send_text("What is the capital of Estonia?", user_id=USER)
        assert engine.started.wait(10)
        emulator.send_text("And another thing?", user_id=USER)
        emulator.wait_for(lambda: bool(texts(emulator, USER)))
        cancelled_at = time.monotonic()
        emulator.send_text("/cancel", user_id=USER)
        emulator.wait_for(lambda: len(texts(emulator, USER)) >= 2)
        assert time.monotonic() - cancelled_at < 1.0

    run_bot(settings, scripted_services(tmp_path, engine), scenario)
    assert texts(emulator, USER) == [ONE_AT_A_TIME, STOPPED]
    assert len(engine.history) == 1  # the second question never reached the model


def test_a_flood_of_20_users_is_queued_or_told_busy_without_a_crash(
    settings: Settings, emulator: BotAPIEmulator, tmp_path: Path
) -> None:
    # No digits of their own: a figure in no source would be replaced by the quoted source.
    engine = ScriptedEngine([f"Answer {chr(97 + i) * 2} [1]" for i in range(20)], delay_s=0.01)
    users = range(100, 120)

    def replies(user: int) -> list[str]:
        return texts(emulator, user)

    def answered_or_busy() -> bool:
        return all(any(r.startswith("Answer") or r == BUSY for r in replies(u)) for u in users)

    def scenario() -> None:
        for user in users:
            emulator.send_text("What is the capital of Estonia?", user_id=user)
        emulator.wait_for(answered_or_busy, timeout=60)
        emulator.send_text("/start", user_id=users[0])  # still serving afterwards
        emulator.wait_for(lambda: WELCOME in replies(users[0]))

    run_bot(settings, scripted_services(tmp_path, engine, queue=4), scenario)
    outcomes = [next(r for r in replies(u) if r.startswith("Answer") or r == BUSY) for u in users]
    busy = outcomes.count(BUSY)
    assert 0 < busy < 20  # the queue was bounded, and it did serve some
    assert len(engine.history) == 20 - busy
    queued = [r for u in users for r in replies(u) if r.startswith("You are number")]
    assert queued and all(int(r.split()[3]) <= 4 for r in queued)


def test_a_stop_in_the_middle_of_answers_cancels_them_tells_the_users_and_exits_promptly(
    settings: Settings, emulator: BotAPIEmulator, tmp_path: Path
) -> None:
    """The same path as SIGTERM in `ragtune run`: its Server, stopped by `Server.stop`."""
    engine = ScriptedEngine(["word " * 400] * 3, delay_s=0.02)  # ~8 s each unless cancelled
    application = build_application(settings, scripted_services(tmp_path, engine))
    server = Server(application, settings.telegram_api_url, poll_timeout_s=1)
    loop = asyncio.new_event_loop()
    serving = threading.Thread(target=loop.run_until_complete, args=(server.run(),))
    serving.start()
    users = (201, 202, 203)
    try:
        emulator.wait_for(lambda: bool(emulator.sent("setMyCommands")), timeout=30)
        for user in users:  # one is answered, two wait in the queue
            emulator.send_text("What is the capital of Estonia?", user_id=user)
        assert engine.started.wait(10)
        emulator.wait_for(lambda: all(texts(emulator, u) for u in users[1:]))  # "number N"
    finally:
        stop_asked = time.monotonic()
        loop.call_soon_threadsafe(server.stop)
        serving.join(timeout=30)
    took = time.monotonic() - stop_asked
    loop.close()
    assert not serving.is_alive() and took < 3.0, took
    assert len(engine.history) == 1  # the queued questions never reached the model
    for user in users:
        assert texts(emulator, user)[-1] == RESTARTING
    state = StateStore.open(tmp_path / "state.db")
    assert all(not state.recent_turns(f"tg:{u}", 4) for u in users)  # no half answer remembered
    state.close()


def assert_streamed_by_edits(emulator: BotAPIEmulator, chat: int, *, min_gap_s: float) -> None:
    """One placeholder, then at least two edits, spaced at least `min_gap_s`, ending in sources."""
    (placeholder,) = emulator.sent("sendMessage", chat)
    edits = emulator.sent("editMessageText", chat)
    assert len(edits) >= 2
    times = [placeholder.at] + [e.at for e in edits]
    assert all(b - a >= min_gap_s for a, b in itertools.pairwise(times)), times
    assert str(edits[-1].params["text"]).endswith("<i>Sources:</i>\n[1] estonia")


def test_group_answers_stream_by_edits_at_most_every_3_seconds(
    settings: Settings, emulator: BotAPIEmulator, tmp_path: Path
) -> None:
    engine = ScriptedEngine(["Tallinn " * 120 + "[1]"], delay_s=0.04)  # ~5 s of streaming
    group = -200

    def scenario() -> None:
        emulator.send_text("@ragtune_bot capital of Estonia?", user_id=USER, chat_id=group,
                           chat_type="group")  # fmt: skip
        emulator.wait_for(
            lambda: any(
                "Sources" in str(c.params.get("text"))
                for c in emulator.sent("editMessageText", group)
            ),
            timeout=30,
        )

    run_bot(settings, scripted_services(tmp_path, engine), scenario)
    assert_streamed_by_edits(emulator, group, min_gap_s=2.95)


def test_a_follow_up_in_the_same_chat_sees_the_earlier_question_not_the_answer(
    settings: Settings, emulator: BotAPIEmulator, tmp_path: Path
) -> None:
    engine = ScriptedEngine(["Tallinn [1]", "A medieval old town [1]"])

    def scenario() -> None:
        emulator.send_text("What is the capital of Estonia?", user_id=USER)
        emulator.wait_for(lambda: bool(texts(emulator, USER)))
        emulator.send_text("What does it have?", user_id=USER)
        emulator.wait_for(lambda: len(texts(emulator, USER)) >= 2)
        emulator.send_text("What does it have?", user_id=USER + 1)  # another chat: no memory
        emulator.wait_for(lambda: bool(texts(emulator, USER + 1)))

    run_bot(settings, scripted_services(tmp_path, engine), scenario)
    follow_up, stranger = engine.history[1], engine.history[2]
    # The follow-up is asked beside the question it leans on, never beside the earlier answer
    # (a small model copies that answer instead of reading its sources).
    assert [m["role"] for m in follow_up] == ["system", "user"]
    assert "Earlier question: What is the capital of Estonia?" in follow_up[-1]["content"]
    assert not any("Tallinn [1]" in m["content"] for m in follow_up)
    assert "Earlier question" not in stranger[-1]["content"]
    assert texts(emulator, USER)[1].startswith("A medieval old town [1]")


def test_restricted_access_admits_only_the_allowlist(
    settings: Settings, emulator: BotAPIEmulator, tmp_path: Path
) -> None:
    group = -300
    access = AccessSettings(AccessMode.RESTRICTED, allowed_ids=frozenset({USER, group}))
    engine = ScriptedEngine(["Tallinn [1]"] * 3)
    stranger = 66

    def answered(chat: int) -> bool:  # a queue notice may come first
        return any(text.startswith("Tallinn") for text in texts(emulator, chat))

    def scenario() -> None:
        emulator.send_text("Capital of Estonia?", user_id=stranger)
        emulator.send_text("Capital of Estonia?", user_id=USER)
        emulator.wait_for(lambda: bool(texts(emulator, stranger)))  # one question at a time
        emulator.send_text("/ask Capital of Estonia?", user_id=stranger, chat_id=group,
                           chat_type="group")  # fmt: skip
        emulator.wait_for(
            lambda: (
                bool(texts(emulator, stranger)) and all(answered(chat) for chat in (USER, group))
            ),
            timeout=20,
        )

    run_bot(settings, scripted_services(tmp_path, engine, access=access), scenario)
    (refusal,) = texts(emulator, stranger)
    assert "allowlist" in refusal and str(stranger) in refusal
    assert answered(USER)
    assert answered(group)  # the group's id admits its members
    assert len(engine.history) == 2


def test_the_rate_limit_refuses_the_extra_question_and_admins_are_exempt(
    settings: Settings, emulator: BotAPIEmulator, tmp_path: Path
) -> None:
    access = AccessSettings(per_minute=2, per_day=100)

    def scenario() -> None:
        for chat in (USER, ADMIN):
            for count in range(3):
                emulator.send_text("Capital of Estonia?", user_id=chat)
                emulator.wait_for(partial(lambda c, n: len(texts(emulator, c)) > n, chat, count))

    run_bot(settings, scripted_services(tmp_path, ScriptedEngine(), access=access), scenario)
    first, second, third = texts(emulator, USER)
    assert first.startswith("ok") and second.startswith("ok")
    assert third.startswith("You are asking quickly; please wait")
    assert all(text.startswith("ok") for text in texts(emulator, ADMIN))


class FailingEngine(ScriptedEngine):
    """A model that breaks mid-answer."""

    def stream(self, *args: Any, **kwargs: Any) -> Iterator[str]:
        yield "Tal"
        raise RuntimeError("the model fell over")


def test_a_failure_is_logged_without_text_the_admins_are_told_and_the_user_gets_an_apology(
    settings: Settings,
    emulator: BotAPIEmulator,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    question = "What is the secret capital of Estonia?"

    def scenario() -> None:
        emulator.send_text(question, user_id=USER)
        emulator.wait_for(lambda: bool(texts(emulator, USER)) and bool(texts(emulator, ADMIN)))
        emulator.send_text("/start", user_id=USER)  # still serving
        emulator.wait_for(lambda: WELCOME in texts(emulator, USER))

    caplog.set_level(logging.DEBUG)
    services = scripted_services(tmp_path, FailingEngine(), alert_chats=(ADMIN,))
    run_bot(settings, services, scenario)
    assert texts(emulator, USER) == [APOLOGY, WELCOME]
    (alert,) = texts(emulator, ADMIN)
    assert alert.startswith("Error while handling update ") and f"user {USER})" in alert
    assert alert.endswith("RuntimeError: the model fell over")
    failures = [r for r in caplog.records if r.getMessage().startswith("handling update")]
    assert failures and failures[0].levelno == logging.ERROR
    shown = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert not [line for line in shown if question in line or emulator.token in line]


def test_docs_pages_turn_with_buttons_for_admins_only(
    settings: Settings, emulator: BotAPIEmulator, tmp_path: Path
) -> None:
    with KnowledgeStore.open(tmp_path / "kb.db") as store:
        ingestor = Ingestor(store, HashEmbedder())
        for number in range(11):
            ingestor.add_text(
                f"Fact number {number}.", title=f"fact {number}", external_id=str(number),
                source="test",
            )  # fmt: skip

    def scenario() -> None:
        emulator.send_text("/docs", user_id=ADMIN)
        emulator.wait_for(lambda: bool(texts(emulator, ADMIN)))
        page = emulator.last_message(ADMIN)
        assert "(page 1/2)" in page["text"]
        (forward,) = [b for row in page["reply_markup"]["inline_keyboard"] for b in row]
        emulator.press_button(page, forward["callback_data"], user_id=USER)  # refused
        emulator.wait_for(lambda: bool(emulator.sent("answerCallbackQuery")))
        assert emulator.message(ADMIN, page["message_id"]) == page
        emulator.press_button(page, forward["callback_data"], user_id=ADMIN)
        emulator.wait_for(lambda: "(page 2/2)" in emulator.message_text(ADMIN, page["message_id"]))

    run_bot(settings, scripted_services(tmp_path, ScriptedEngine()), scenario)
    (refused, *_) = emulator.sent("answerCallbackQuery")
    assert "admins only" in refused.params["text"] and refused.params["show_alert"] is True
    (first_page,) = texts(emulator, ADMIN)
    assert first_page.count(" chunks") == 10
    second = emulator.messages(ADMIN)[0]
    assert second["text"].count(" chunks") == 2
    (back,) = [b for row in second["reply_markup"]["inline_keyboard"] for b in row]
    assert back["callback_data"] == "docs:1"


def test_reindex_and_stats_for_admins(
    settings: Settings, emulator: BotAPIEmulator, tmp_path: Path
) -> None:
    def scenario() -> None:
        emulator.send_text("Capital of Estonia?", user_id=USER)
        emulator.wait_for(lambda: bool(texts(emulator, USER)))
        emulator.send_text("/reindex everything", user_id=ADMIN)
        emulator.wait_for(lambda: bool(emulator.messages(ADMIN)))
        emulator.send_text("/reindex all", user_id=ADMIN)
        emulator.wait_for(
            lambda: any(m["text"].startswith("Reindexed") for m in emulator.messages(ADMIN))
        )
        emulator.send_text("/stats", user_id=ADMIN)
        emulator.wait_for(lambda: len(emulator.messages(ADMIN)) >= 2)
        emulator.send_text("Capital of Estonia?", user_id=USER)  # search works after the switch
        emulator.wait_for(lambda: len(texts(emulator, USER)) >= 2)

    access = AccessSettings()
    run_bot(settings, scripted_services(tmp_path, ScriptedEngine(), access=access), scenario)
    usage, status, numbers = (m["text"] for m in emulator.messages(ADMIN))
    assert usage.startswith("Send /reindex to re-embed this chat's collection")
    assert status == "Reindexed 1 chunks (every collection)."
    assert "Documents: 1\nChunks: 1\n" in numbers and "Users today: 1" in numbers
    assert texts(emulator, USER)[1].endswith("[1] estonia")
    with KnowledgeStore.open(tmp_path / "kb.db") as store:
        assert consistent_chunk_count(store) == 1
        assert store.vector_table == "vec_chunks_2"  # a new generation went live


class LoRAScriptedEngine(ScriptedEngine):
    """A scripted model that accepts adapters (the real swap has tests of its own)."""

    supports_lora = True


def registry_with_an_adapter(tmp_path: Path) -> tuple[AdapterRegistry, Path]:
    """An adapters directory holding "faq", made for a stand-in served model file."""
    served = tmp_path / "served.gguf"
    served.write_bytes(b"GGUF stands in for the served model")
    registry = AdapterRegistry(tmp_path / "adapters")
    folder = registry.folder("faq")
    folder.mkdir(parents=True)
    (folder / "adapter.gguf").write_bytes(b"GGUF")
    manifest = Manifest(
        name="faq", base_model_file=served.name, base_model_sha256=file_sha256(served), rank=8,
        alpha=16, target_modules=["q_proj"], dataset_sha256="0", dataset_examples=50,
    )  # fmt: skip
    (folder / "manifest.json").write_text(manifest.model_dump_json())
    return registry, served


def test_admins_list_and_switch_adapters_and_stats_show_the_active_one(
    settings: Settings, emulator: BotAPIEmulator, tmp_path: Path
) -> None:
    registry, served = registry_with_an_adapter(tmp_path)
    folder = registry.folder("faq")
    engine = LoRAScriptedEngine()
    commands = [(ADMIN, "/adapter"), (ADMIN, "/adapter use faq"), (ADMIN, "/stats"),
                (USER, "/adapter use faq"), (ADMIN, "/adapter use nope"), (ADMIN, "/adapter off"),
                (ADMIN, "/adapter")]  # fmt: skip
    seen: list[Path | None] = []

    def scenario() -> None:
        for number, (user, command) in enumerate(commands):
            emulator.send_text(command, user_id=user)
            emulator.wait_for(partial(lambda n: len(emulator.sent("sendMessage")) > n, number))
            if number == 1:
                seen.append(engine.adapter)

    run_bot(settings, scripted_services(tmp_path, engine, adapters=(registry, served)), scenario)
    listing, switched, numbers, *_ = texts(emulator, ADMIN)
    assert "• faq — rank 8, 50 examples" in listing and "▶ off" in listing
    assert switched.startswith("Now answering with adapter faq") and seen == [
        folder / "adapter.gguf"
    ]
    assert "Adapter: faq" in numbers
    assert texts(emulator, USER) == ["/adapter is for admins only."]
    assert texts(emulator, ADMIN)[3].startswith("There is no adapter called nope")
    assert texts(emulator, ADMIN)[4] == "Adapter off: answering with the base model."
    assert "▶ off" in texts(emulator, ADMIN)[5] and engine.adapter is None


def test_eval_sends_the_four_way_table_and_a_chart_and_leaves_the_users_adapter_alone(
    settings: Settings, emulator: BotAPIEmulator, tmp_path: Path
) -> None:
    registry, served = registry_with_an_adapter(tmp_path)
    faq = registry.folder("faq") / "adapter.gguf"
    questions = tmp_path / "eval.jsonl"
    questions.write_text(
        '{"id": "q1", "question": "Capital of Estonia?", "answers": ["Tallinn"]}\n'
        '{"id": "q2", "question": "What old town?", "answers": ["medieval"]}\n'
    )
    engine = LoRAScriptedEngine(["Tallinn [1]"] * 8)

    def scenario() -> None:
        emulator.send_text("/eval", user_id=ADMIN)  # no adapter named, none active
        emulator.wait_for(lambda: bool(texts(emulator, ADMIN)))
        emulator.send_text("/eval faq", user_id=USER)  # not an admin
        emulator.send_text("/eval faq", user_id=ADMIN)
        emulator.wait_for(lambda: any("rag+fine-tuned" in m.get("text", "")
                                      for m in emulator.messages(ADMIN)), timeout=30)  # fmt: skip
        emulator.send_text("Capital of Estonia?", user_id=USER)  # a user, afterwards
        emulator.wait_for(lambda: len(texts(emulator, USER)) >= 2)

    services = scripted_services(
        tmp_path, engine, adapters=(registry, served), eval_questions=questions
    )
    run_bot(settings, services, scenario)
    refusal, report = texts(emulator, ADMIN)
    assert refusal == "Name an adapter (/eval NAME) or switch one on first."
    assert texts(emulator, USER)[0] == "/eval is for admins only."
    assert "<b>Adapter faq</b>, 2 questions per mode" in report
    for mode in ("| base |", "| fine-tuned |", "| rag |", "| rag+fine-tuned |"):
        assert mode in report
    (photo,) = emulator.sent("sendPhoto", ADMIN)
    assert photo.params["photo"][:8] == b"\x89PNG\r\n\x1a\n"
    # Each mode named its adapter per answer; the user's answer ran with the default (none).
    probe = [None] * 20 + [faq] * 20  # the forgetting probe: base, then with the adapter
    assert engine.adapters_used == [None, None, faq, faq, None, None, faq, faq, *probe, None]
    assert "general-knowledge probe (20 held-out questions, answer-contains): base 0.0, " in report


def test_without_drafts_private_answers_stream_by_edits_every_1_5_seconds(
    settings: Settings, emulator: BotAPIEmulator, tmp_path: Path
) -> None:
    emulator.faults.append(Fault("sendMessageDraft", 400, times=1000))  # an older Bot API server
    engine = ScriptedEngine(["Tallinn " * 100 + "[1]"], delay_s=0.04)  # ~4 s of streaming

    def scenario() -> None:
        emulator.send_text("Capital of Estonia?", user_id=USER)
        emulator.wait_for(
            lambda: any("Sources" in str(c.params.get("text"))
                        for c in emulator.sent("editMessageText", USER)),
            timeout=30,
        )  # fmt: skip

    run_bot(settings, scripted_services(tmp_path, engine), scenario)
    assert len(emulator.sent("sendMessageDraft", USER)) == 1  # refused once, then not tried again
    assert_streamed_by_edits(emulator, USER, min_gap_s=1.45)


def test_backup_sends_a_checked_copy_of_the_knowledge_base(
    settings: Settings, emulator: BotAPIEmulator, tmp_path: Path
) -> None:
    def scenario() -> None:
        emulator.send_text("/backup", user_id=ADMIN)
        emulator.wait_for(lambda: bool(emulator.sent("sendDocument", ADMIN)))

    run_bot(settings, scripted_services(tmp_path, ScriptedEngine()), scenario)
    (sent,) = emulator.sent("sendDocument", ADMIN)
    assert sent.params["document"][:16] == b"SQLite format 3\x00"
    assert str(sent.params["caption"]).startswith("Backup of 1 documents, 1 chunks")
    copy = tmp_path / "received.db"
    copy.write_bytes(sent.params["document"])
    with KnowledgeStore.open(copy) as store:
        assert [d.title for d in store.list_documents()] == ["estonia"]


def test_a_5xx_is_retried_with_backoff_and_the_answer_still_arrives(
    settings: Settings, emulator: BotAPIEmulator, tmp_path: Path
) -> None:
    emulator.faults.append(Fault("sendMessage", 502, times=1))

    def scenario() -> None:
        emulator.send_text("What is the capital of Estonia?", user_id=USER)
        emulator.wait_for(lambda: bool(delivered(emulator, USER)))

    run_bot(settings, scripted_services(tmp_path, ScriptedEngine(["Tallinn [1]"])), scenario)
    failed, succeeded = emulator.sent("sendMessage", USER)
    assert succeeded.at - failed.at >= 0.45  # backed off before trying again
    assert delivered(emulator, USER)[0].startswith("Tallinn [1]")


def test_persistent_5xx_ends_in_a_clear_failure_and_the_bot_keeps_serving(
    settings: Settings, emulator: BotAPIEmulator, tmp_path: Path
) -> None:
    emulator.faults.append(Fault("sendMessage", 500, times=3))  # every attempt at the answer

    def scenario() -> None:
        emulator.send_text("What is the capital of Estonia?", user_id=USER)
        emulator.wait_for(lambda: APOLOGY in delivered(emulator, USER), timeout=30)
        emulator.send_text("/start", user_id=USER)
        emulator.wait_for(lambda: WELCOME in delivered(emulator, USER))

    run_bot(settings, scripted_services(tmp_path, ScriptedEngine(["Tallinn [1]"])), scenario)
    attempts = [c.at for c in emulator.sent("sendMessage", USER)
                if str(c.params["text"]).startswith("Tallinn")]  # fmt: skip
    assert len(attempts) == 3
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert gaps[0] >= 0.45 and gaps[1] >= 0.95  # exponential backoff: 0.5 s, then 1 s
    assert delivered(emulator, USER) == [APOLOGY, WELCOME]  # gave up, said so, still serving


def test_polling_recovers_after_the_bot_api_server_comes_back(
    settings: Settings, emulator: BotAPIEmulator, tmp_path: Path
) -> None:
    def scenario() -> None:
        emulator.send_text("/start", user_id=USER)
        emulator.wait_for(lambda: bool(delivered(emulator, USER)))
        port = emulator.port
        emulator.stop()
        time.sleep(2.0)  # the bot's polling meets refused connections meanwhile
        emulator.start(port)
        emulator.send_text("Capital of Estonia?", user_id=USER)
        emulator.wait_for(lambda: len(delivered(emulator, USER)) >= 2, timeout=40)

    run_bot(settings, scripted_services(tmp_path, ScriptedEngine(["Tallinn [1]"])), scenario)
    assert delivered(emulator, USER)[1].startswith("Tallinn [1]")


def test_admin_commands_from_non_admins_in_groups_or_forwarded_from_an_admin_change_nothing(
    settings: Settings, emulator: BotAPIEmulator, tmp_path: Path
) -> None:
    group = -400
    attempts = ["/add group text", "/forget 1", "/reindex", "/backup", "/adapter off"]

    def scenario() -> None:
        for command in attempts:
            emulator.send_text(command, user_id=USER, chat_id=group, chat_type="group")
        for command in attempts:  # an admin's command, forwarded by someone else
            emulator.send_text(command, user_id=USER, forwarded_from=ADMIN)
        emulator.wait_for(
            lambda: len(delivered(emulator, group)) + len(delivered(emulator, USER)) >= 10
        )

    run_bot(settings, scripted_services(tmp_path, ScriptedEngine()), scenario)
    replies = delivered(emulator, group) + delivered(emulator, USER)
    assert len(replies) == 10 and all("for admins only" in r for r in replies), replies
    assert documents(tmp_path) == ["estonia"]
    with StateStore.open(tmp_path / "state.db") as state:
        log = state.audit_log()
    assert len([entry for entry in log if not entry[2]]) == 10
    assert all(entry[0] == USER for entry in log)  # the sender counts, never the original author


def test_a_question_longer_than_the_context_gets_one_sentence_not_an_apology(
    settings: Settings, emulator: BotAPIEmulator, tmp_path: Path
) -> None:
    engine = ScriptedEngine(["Tallinn [1]"])
    long_question = "What is the capital of Estonia? " + "Please explain in detail. " * 600

    def scenario() -> None:
        emulator.send_text(long_question[:4096], user_id=5)
        emulator.wait_for(lambda: bool(texts(emulator, 5)))

    services = scripted_services(tmp_path, engine, alert_chats=(ADMIN,))
    run_bot(settings, services, scenario)
    (reply,) = texts(emulator, 5)
    assert reply.startswith("Your question is too long for me (4,096 characters)"), reply
    assert not engine.history and not texts(emulator, ADMIN)  # no model call, no alert
