"""Per-chat knowledge and adapters, through python-telegram-bot against the Bot API emulator."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from bot.config import Settings
from bot.core.bindings import collection_key
from bot.local.emulator import BotAPIEmulator
from bot.state import StateStore
from knowledge.store import KnowledgeStore
from tests.bot.test_telegram import (
    LoRAScriptedEngine,
    delivered,
    registry_with_an_adapter,
    run_bot,
    texts,
)
from tests.helpers import ADMIN, USER, ScriptedEngine, scripted_services
from tests.web_site import Site

HR_GROUP, SHOP_GROUP = -200, -300
HR_RULE = "Holidays: every employee has 30 days of paid holiday a year."
SHOP_RULE = "Holidays: the shop is closed on 24, 25 and 26 December."
QUESTION = "@ragtune_bot When are the holidays?"


def say(emulator: BotAPIEmulator, text: str, *, user: int, chat: int) -> None:
    """Send `text` and wait until the bot has answered it (one more message in that chat)."""
    before = len(texts(emulator, chat))
    kind = "private" if chat > 0 else "group"
    emulator.send_text(text, user_id=user, chat_id=chat, chat_type=kind)
    emulator.wait_for(partial(lambda n: len(texts(emulator, chat)) > n, before))


def ask(emulator: BotAPIEmulator, question: str, *, chat: int) -> str:
    """Ask as USER and wait for the whole answer (it streams by edits); return it."""
    say(emulator, question, user=USER, chat=chat)
    emulator.wait_for(lambda: "Sources:" in delivered(emulator, chat)[-1])
    return delivered(emulator, chat)[-1]


def collections_of(tmp_path: Path) -> dict[str, list[str]]:
    """Each collection's document titles."""
    with KnowledgeStore.open(tmp_path / "kb.db") as store:
        return {c.name: [d.title for d in store.list_documents(c.id)] for c in store.collections()}


def test_two_groups_bound_to_two_collections_answer_each_from_its_own_document(
    settings: Settings, emulator: BotAPIEmulator, tmp_path: Path
) -> None:
    engine = ScriptedEngine(["30 days a year [1]", "24 to 26 December [1]", "Tallinn [1]"])
    answers: list[str] = []

    def scenario() -> None:
        say(emulator, "/kb new hr", user=ADMIN, chat=HR_GROUP)
        say(emulator, f"/add {HR_RULE}", user=ADMIN, chat=HR_GROUP)
        say(emulator, "/kb new shop", user=ADMIN, chat=SHOP_GROUP)
        say(emulator, f"/add {SHOP_RULE}", user=ADMIN, chat=SHOP_GROUP)
        answers.append(ask(emulator, QUESTION, chat=HR_GROUP))
        answers.append(ask(emulator, QUESTION, chat=SHOP_GROUP))
        answers.append(ask(emulator, "When are the holidays?", chat=USER))  # private: global
        say(emulator, "/docs", user=ADMIN, chat=HR_GROUP)
        say(emulator, "/reindex", user=ADMIN, chat=HR_GROUP)
        emulator.wait_for(lambda: texts(emulator, HR_GROUP)[-1].startswith("Reindexed"))
        say(emulator, "/stats", user=ADMIN, chat=SHOP_GROUP)
        say(emulator, "/kb", user=USER, chat=SHOP_GROUP)

    run_bot(settings, scripted_services(tmp_path, engine), scenario)
    hr_prompt, shop_prompt, private_prompt = (turn[-1]["content"] for turn in engine.history)
    assert HR_RULE in hr_prompt and SHOP_RULE not in hr_prompt
    assert SHOP_RULE in shop_prompt and HR_RULE not in shop_prompt
    assert HR_RULE not in private_prompt and SHOP_RULE not in private_prompt
    hr_answer, shop_answer, private_answer = answers
    assert (
        hr_answer.startswith("30 days a year [1]") and "[1] Holidays: every employee" in hr_answer
    )
    assert shop_answer.startswith("24 to 26 December [1]")
    assert "[1] Holidays: the shop is closed" in shop_answer
    assert "[1] estonia" in private_answer
    created, added, _, hr_docs, reindexed = texts(emulator, HR_GROUP)
    assert reindexed == "Reindexed 1 chunks (hr)."  # the group's collection, not the others
    assert created.startswith("Created the collection hr") and added.startswith("Added document")
    assert "Documents of hr" in hr_docs and "every employee" in hr_docs and "shop" not in hr_docs
    stats, which = texts(emulator, SHOP_GROUP)[3:]
    assert "Collection: shop\nDocuments: 1\n" in stats
    assert which.startswith("This chat searches the collection shop (1 documents)")
    assert collections_of(tmp_path) == {
        "global": ["estonia"],
        "hr": [HR_RULE],
        "shop": [SHOP_RULE],
    }


def test_a_non_admin_cannot_create_switch_or_list_collections_and_is_audited(
    settings: Settings, emulator: BotAPIEmulator, tmp_path: Path
) -> None:
    def scenario() -> None:
        say(emulator, "/kb new hr", user=ADMIN, chat=HR_GROUP)
        for command in ("/kb new mine", "/kb use global", "/kb list", "/adapter use faq"):
            say(emulator, command, user=USER, chat=HR_GROUP)
        say(emulator, "/kb", user=USER, chat=HR_GROUP)

    run_bot(settings, scripted_services(tmp_path, ScriptedEngine()), scenario)
    *refused, shown = texts(emulator, HR_GROUP)[1:]
    assert refused == ["/kb is for admins only."] * 3 + ["/adapter is for admins only."]
    assert shown.startswith("This chat searches the collection hr")  # still bound to hr
    assert set(collections_of(tmp_path)) == {"global", "hr"}
    with StateStore.open(tmp_path / "state.db") as state:
        audited = [(u, a, ok) for u, a, ok, _ in state.audit_log()]
    assert audited.count((USER, "kb", False)) == 3 and (USER, "adapter", False) in audited


def test_a_chats_own_adapter_and_collection_survive_a_restart(
    settings: Settings, emulator: BotAPIEmulator, tmp_path: Path
) -> None:
    registry, served = registry_with_an_adapter(tmp_path)
    faq = registry.folder("faq") / "adapter.gguf"
    engine = LoRAScriptedEngine(["30 days a year [1]", "Tallinn [1]"] * 2)
    services = scripted_services(tmp_path, engine, adapters=(registry, served))

    def before_restart() -> None:
        say(emulator, "/kb new hr", user=ADMIN, chat=HR_GROUP)
        say(emulator, f"/add {HR_RULE}", user=ADMIN, chat=HR_GROUP)
        say(emulator, "/adapter use faq", user=ADMIN, chat=HR_GROUP)
        ask(emulator, QUESTION, chat=HR_GROUP)
        ask(emulator, "What is the capital of Estonia?", chat=USER)

    run_bot(settings, services, before_restart)
    assert engine.adapters_used == [faq, None]  # the group's own adapter; the default elsewhere
    assert texts(emulator, HR_GROUP)[2].startswith("This chat now answers with adapter faq")
    engine.adapters_used.clear()

    def after_restart() -> None:
        ask(emulator, QUESTION, chat=HR_GROUP)
        say(emulator, "/adapter", user=ADMIN, chat=HR_GROUP)
        say(emulator, "/kb", user=USER, chat=HR_GROUP)
        say(emulator, "/adapter off", user=ADMIN, chat=HR_GROUP)
        ask(emulator, QUESTION, chat=HR_GROUP)

    run_bot(
        settings, scripted_services(tmp_path, engine, adapters=(registry, served)), after_restart
    )
    assert engine.adapters_used == [faq, None]
    listing, which, off = texts(emulator, HR_GROUP)[-4:-1]  # between the two answers
    assert listing.startswith("This chat answers with its own adapter, faq")
    assert which.startswith("This chat searches the collection hr")
    assert off == "This chat now follows the adapter everyone else gets."


def test_a_group_whose_collection_is_gone_is_refused_not_answered_from_global(
    settings: Settings, emulator: BotAPIEmulator, tmp_path: Path
) -> None:
    engine = ScriptedEngine(["Tallinn [1]"])
    services = scripted_services(tmp_path, engine)
    with StateStore.open(tmp_path / "state.db") as state:  # as after restoring an older backup
        state.set_fact(collection_key(HR_GROUP), "hr")

    def scenario() -> None:
        say(emulator, QUESTION, user=USER, chat=HR_GROUP)
        say(emulator, "/docs", user=ADMIN, chat=HR_GROUP)
        say(emulator, "/reindex", user=ADMIN, chat=HR_GROUP)
        emulator.wait_for(lambda: texts(emulator, HR_GROUP)[-1].startswith("Reindex stopped"))
        say(emulator, "/kb use global", user=ADMIN, chat=HR_GROUP)
        ask(emulator, "@ragtune_bot What is the capital of Estonia?", chat=HR_GROUP)

    run_bot(settings, services, scenario)
    refused, docs, reindex, bound, answer = texts(emulator, HR_GROUP)[:5]
    gone = "This chat's knowledge collection 'hr' no longer exists; an admin can bind another"
    assert refused.startswith(gone) and docs.startswith(gone)
    assert reindex.startswith(f"Reindex stopped: {gone}")
    assert bound.startswith("This chat now searches global")
    assert len(engine.history) == 1 and "estonia" in answer.lower()  # nothing ran before


def test_eval_in_a_group_retrieves_from_that_chats_collection(
    settings: Settings, emulator: BotAPIEmulator, tmp_path: Path
) -> None:
    registry, served = registry_with_an_adapter(tmp_path)
    questions = tmp_path / "eval.jsonl"
    questions.write_text('{"id": "q1", "question": "How many holiday days?", "answers": ["30"]}\n')
    engine = LoRAScriptedEngine(["30 days [1]"] * 50)

    def scenario() -> None:
        say(emulator, "/kb new hr", user=ADMIN, chat=HR_GROUP)
        say(emulator, f"/add {HR_RULE}", user=ADMIN, chat=HR_GROUP)
        emulator.send_text("/eval faq", user_id=ADMIN, chat_id=HR_GROUP, chat_type="group")
        emulator.wait_for(
            lambda: any("rag+fine-tuned" in text for text in delivered(emulator, HR_GROUP)),
            timeout=30,
        )

    services = scripted_services(
        tmp_path, engine, adapters=(registry, served), eval_questions=questions
    )
    run_bot(settings, services, scenario)
    rag_prompts = [turn[-1]["content"] for turn in engine.history if "[1]" in turn[-1]["content"]]
    assert len(rag_prompts) == 2  # rag and rag+fine-tuned, once each
    assert all(HR_RULE in p and "Tallinn" not in p for p in rag_prompts)


HOURS_PAGE = """<html><head><title>Opening hours</title></head><body><nav>Home | Jobs</nav>
<article><h1>Opening hours</h1><p>The shop opens at 8 am and closes at 6 pm on weekdays.</p>
<p>On Sundays the shop is closed all day.</p></article><footer>Copyright 2026</footer>
</body></html>"""


def test_an_admin_adds_a_web_page_to_the_chats_collection_and_it_is_cited(
    settings: Settings, emulator: BotAPIEmulator, tmp_path: Path, site: Site
) -> None:
    site.page("/hours", HOURS_PAGE)
    engine = ScriptedEngine(["6 pm [1]"])
    answers: list[str] = []

    def scenario() -> None:
        say(emulator, "/kb new shop", user=ADMIN, chat=SHOP_GROUP)
        say(emulator, f"/add {site.url('/hours')}", user=USER, chat=SHOP_GROUP)  # not an admin
        say(emulator, f"/add {site.url('/hours')}", user=ADMIN, chat=SHOP_GROUP)
        emulator.wait_for(lambda: "Added document" in delivered(emulator, SHOP_GROUP)[-1])
        answers.append(ask(emulator, "@ragtune_bot When does the shop close?", chat=SHOP_GROUP))

    services = scripted_services(tmp_path, engine, web_allow_private=True)
    run_bot(settings, services, scenario)
    refused, added = delivered(emulator, SHOP_GROUP)[1:3]
    assert refused == "/add is for admins only." and site.asked == ["/hours"]
    assert added.startswith("Added document") and "Opening hours" in added
    assert "closes at 6 pm" in engine.history[0][-1]["content"]
    assert answers[0].startswith("6 pm [1]") and "[1] Opening hours" in answers[0]
    assert collections_of(tmp_path)["shop"] == ["Opening hours"]


def test_add_of_a_private_address_is_refused_in_one_sentence_by_default(
    settings: Settings, emulator: BotAPIEmulator, tmp_path: Path, site: Site
) -> None:
    site.page("/hours", HOURS_PAGE)

    def scenario() -> None:
        say(emulator, f"/add {site.url('/hours')}", user=ADMIN, chat=ADMIN)
        emulator.wait_for(lambda: "Nothing was added" in delivered(emulator, ADMIN)[-1])

    run_bot(settings, scripted_services(tmp_path, ScriptedEngine()), scenario)
    assert delivered(emulator, ADMIN)[-1] == (
        "Nothing was added: 127.0.0.1 is a local or private address (127.0.0.1): pages there "
        "are not fetched (RAGTUNE_WEB_ALLOW_PRIVATE=true allows it)."
    )
    assert site.asked == [] and collections_of(tmp_path) == {"global": ["estonia"]}
