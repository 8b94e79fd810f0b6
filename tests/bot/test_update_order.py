"""The update processor: concurrent, except that nothing starts while a chat move is handled."""

from __future__ import annotations

import asyncio

from telegram import Update

from bot.local.emulator import BOT_USER
from bot.tg.updates import MovesFirst, is_chat_move

GROUP = {"id": -1000000000200, "type": "supergroup", "title": "hr"}


def update(number: int, **message: object) -> Update:
    data = {"message_id": number, "date": 0, "chat": GROUP, "from": BOT_USER, **message}
    return Update.de_json({"update_id": number, "message": data}, None)


def test_updates_after_a_move_wait_for_it_and_others_run_together() -> None:
    started: list[str] = []
    finished: list[str] = []

    async def handle(name: str, seconds: float) -> None:
        started.append(name)
        await asyncio.sleep(seconds)
        finished.append(name)

    async def main() -> None:
        processor = MovesFirst(8)
        moved = update(1, migrate_from_chat_id=-200)
        first, second = update(2, text="/add payroll"), update(3, text="/cancel")
        assert is_chat_move(moved) and not is_chat_move(first)
        # As python-telegram-bot's Application does: one task per update, in arrival order.
        tasks = [
            asyncio.create_task(processor.process_update(moved, handle("move", 0.2))),
            asyncio.create_task(processor.process_update(first, handle("add", 0.1))),
            asyncio.create_task(processor.process_update(second, handle("cancel", 0.1))),
        ]
        await asyncio.gather(*tasks)
        later = update(4, text="hello")
        slow = asyncio.create_task(processor.process_update(later, handle("slow", 0.2)))
        await asyncio.sleep(0.05)
        await processor.process_update(update(5, text="hi"), handle("quick", 0.0))
        await slow

    asyncio.run(main())
    assert started[:3] == ["move", "add", "cancel"] and finished[0] == "move"
    assert sorted(finished[1:3]) == ["add", "cancel"]  # those two together, after the move
    assert finished[3:] == ["quick", "slow"]  # without a move nothing waits for anything
