"""`/add URL` through the bot: slow pages wait on threads of their own, odd addresses are one
sentence after the admin check. Pages come from a real HTTP server on 127.0.0.1."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from bot.config import Settings
from bot.local.emulator import BotAPIEmulator
from bot.state import StateStore
from tests.bot.test_collections_telegram import collections_of
from tests.bot.test_telegram import delivered, run_bot, texts
from tests.helpers import ADMIN, USER, ScriptedEngine, scripted_services
from tests.web_site import Site

SLOW_PAGE = "<html><head><title>Slow</title></head><body><p>Slow page text.</p></body></html>"
PAGES = 8


def test_slow_pages_never_hold_a_question_and_beyond_the_queue_an_admin_is_told(
    settings: Settings, emulator: BotAPIEmulator, tmp_path: Path, site: Site
) -> None:
    for number in range(PAGES):
        site.page(f"/slow{number}", SLOW_PAGE)
        site.drips[f"/slow{number}"] = 0.025  # ~2 s a page, each byte well inside the timeout
    engine = ScriptedEngine(["Tallinn [1]"])
    finished_before_answer: list[int] = []

    def replies_to_adds() -> list[str]:
        return [t for t in delivered(emulator, ADMIN) if t.startswith(("Added", "Nothing"))]

    def scenario() -> None:
        for number in range(PAGES):
            emulator.send_text(f"/add {site.url(f'/slow{number}')}", user_id=ADMIN)
        # The six that fit have started or wait; the two beyond are told at once.
        emulator.wait_for(lambda: len(replies_to_adds()) >= 2, timeout=10)
        emulator.send_text("What is the capital of Estonia?", user_id=USER)
        emulator.wait_for(lambda: "Sources:" in "".join(delivered(emulator, USER)), timeout=10)
        finished_before_answer.append(sum(text.startswith("Added") for text in replies_to_adds()))
        emulator.wait_for(lambda: len(replies_to_adds()) == PAGES, timeout=60)

    run_bot(settings, scripted_services(tmp_path, engine, web_allow_private=True), scenario)
    replies = replies_to_adds()
    full = [r for r in replies if "pages are being fetched or waiting already" in r]
    assert len(full) == 2 and all(r.startswith("Nothing was added: 6 pages") for r in full)
    assert sum(r.startswith("Added document") for r in replies) == PAGES - 2
    assert finished_before_answer == [0]  # answered while all six pages were still dripping
    assert delivered(emulator, USER)[-1].startswith("Tallinn [1]")


def test_a_malformed_address_is_one_sentence_and_a_non_admins_is_refused_and_audited(
    settings: Settings, emulator: BotAPIEmulator, tmp_path: Path
) -> None:
    def say(text: str, user: int) -> None:
        before = len(texts(emulator, user))
        emulator.send_text(text, user_id=user)
        emulator.wait_for(partial(lambda n: len(texts(emulator, user)) > n, before))

    def scenario() -> None:
        say("/add http://[", USER)
        say("/add http://[::1", ADMIN)
        say("/add http://example.com:99999/faq", ADMIN)

    run_bot(settings, scripted_services(tmp_path, ScriptedEngine(), alert_chats=(ADMIN,)),
            scenario)  # fmt: skip
    assert texts(emulator, USER) == ["/add is for admins only."]
    bracket, port = texts(emulator, ADMIN)  # and no alert: nothing raised
    assert bracket == (
        "Nothing was added: 'http://[::1' is not a valid web address (Invalid IPv6 URL)."
    )
    assert port.startswith("Nothing was added: 'http://example.com:99999/faq' is not a valid")
    with StateStore.open(tmp_path / "state.db") as state:
        audited = [(user, action, ok) for user, action, ok, _ in state.audit_log()]
    assert (USER, "add", False) in audited
    assert collections_of(tmp_path) == {"global": ["estonia"]}
