"""Answering people in chats, free of Telegram: the use case every chat front end calls.

`ChatService.ask` decides, in order: one question at a time per user, room in the model's
queue, the access policy (allowlist, rate, daily budget), then retrieval and the queued
generation. It returns what happened as a typed outcome; only an `AnswerHandle` goes on to
stream an answer. The service also cancels (one user's answer, or all of them at shutdown),
forgets conversations and keeps each chat's last answer for /sources.

Its bookkeeping is touched from the event loop only (the blocking work runs in threads).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from bot.core.access import AccessPolicy
from bot.core.answer import Answer, Answerer, AnswerRun, Mode
from bot.core.bindings import ChatBindings
from bot.core.tidy import draft_text
from bot.llm.worker import DEFAULT_ADAPTER, AdapterChoice, QueueFullError
from bot.state import StateStore
from knowledge.errors import CollectionError
from knowledge.migrations import GLOBAL_COLLECTION

LAST_ANSWERS_KEPT = 10_000
"""Chats whose last answer is kept for /sources (the oldest are forgotten first)."""


@dataclass(frozen=True)
class Refused:
    """Not asked: `text` says why in one sentence (no words, the allowlist, a limit)."""

    text: str


@dataclass(frozen=True)
class AlreadyAnswering:
    """This user's previous question is still being answered."""


@dataclass(frozen=True)
class Busy:
    """As many questions are in hand as the model's queue can take (or it is full); the
    question was not counted."""


@dataclass(frozen=True)
class Restarting:
    """The bot is shutting down; the question was not answered."""


@dataclass(frozen=True)
class Stopped:
    """The answer was cancelled while it was written: by the user, or by a shutdown."""

    restarting: bool


@dataclass(frozen=True)
class AnswerHandle:
    """An answer on its way: where it is in the queue, its text as it grows, then the finished
    Answer. Use it as an async context manager: leaving it gives back the user's turn and the
    model's place, whatever happened."""

    _service: ChatService
    _user_id: int
    _chat_key: str
    _run: AnswerRun

    @property
    def position(self) -> int:
        """Answers ahead of this one when it was queued (0: it is next)."""
        return self._run.position

    async def drafts(self) -> AsyncIterator[str]:
        """The answer so far, each time it grows (nothing for an answer that needs no model)."""
        text = shown = ""
        async for piece in self._run.apieces():
            text += piece
            # Filler lead-ins ("The answer to this question is:") are never shown, not even
            # while they are written: the final answer drops them too (bot.core.tidy).
            if (draft := draft_text(text)) and draft != shown:
                shown = draft
                yield draft

    async def finish(self) -> Answer | Stopped:
        """The finished answer with its sources (remembered for /sources), or Stopped."""
        answer = await asyncio.to_thread(self._run.finish)
        if answer is None:
            return Stopped(restarting=self._service.stopping)
        self._service.remember(self._chat_key, answer)
        return answer

    async def __aenter__(self) -> AnswerHandle:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._run.cancel()  # harmless when finished; frees the model's place when not
        self._service.release(self._user_id)


Outcome = Refused | AlreadyAnswering | Busy | Restarting | AnswerHandle


@dataclass
class ChatService:
    """Questions from people in chats: admitted, answered one at a time per user, cancellable."""

    answerer: Answerer
    access: AccessPolicy | None = None
    """None: everyone may ask, without limits."""
    state: StateStore | None = None
    """Where conversations are kept (None: no memory to reset)."""
    bindings: ChatBindings | None = None
    """Each chat's collection and adapter (None: every chat searches global, default adapter)."""
    stopping: bool = field(default=False, init=False)
    """Set by `cancel_all`: no new answer starts."""
    # user id -> their answer (None while their question is checked and retrieved)
    _active: dict[int, AnswerRun | None] = field(default_factory=dict, init=False, repr=False)
    _last: OrderedDict[str, Answer] = field(default_factory=OrderedDict, init=False, repr=False)

    @property
    def capacity(self) -> int:
        """Questions that can be in hand at once: the model's running answer plus its queue."""
        return self.answerer.worker.capacity

    async def ask(
        self,
        user_id: int,
        chat_id: int,
        chat_key: str,
        question: str,
        *,
        on_search: Callable[[], Coroutine[Any, Any, None]] | None = None,
    ) -> Outcome:
        """Admit and start answering `question`; `on_search` runs while it is retrieved (a
        "typing…" action), once the question was admitted."""
        question = question.strip()
        if not question:
            return Refused("Please ask your question in words.")
        # Cheap refusals first: under a flood most questions end here, before any database read.
        if user_id in self._active:
            return AlreadyAnswering()
        if len(self._active) >= self.capacity:
            # Every place is taken by questions being checked, retrieved or answered: say so at
            # once rather than spend a search on a question the queue could not take.
            return Busy()
        self._active[user_id] = None  # one question at a time per user, from the access check on
        run: AnswerRun | None = None
        handle: AnswerHandle | None = None
        try:
            if self.access is not None:
                refusal = await asyncio.to_thread(self.access.refusal, user_id, chat_id)
                if refusal is not None:
                    return Refused(refusal)
            searching = asyncio.create_task(on_search()) if on_search is not None else None
            try:
                # Embedding and SQLite work run in a thread: the event loop is never blocked.
                try:
                    collection, adapter = await asyncio.to_thread(self._bound, chat_id)
                except CollectionError as exc:  # its collection is gone: never fall back
                    return Refused(str(exc))
                prepared = await asyncio.to_thread(
                    self.answerer.prepare, question, mode=Mode.RAG, chat_key=chat_key,
                    collections=(collection,),
                )  # fmt: skip
            finally:
                if searching is not None:
                    await searching
            if self.stopping:  # nothing is queued for an answer nobody would wait for
                return Restarting()
            try:
                # Queued here, on the event loop: nothing can cancel us between queueing the
                # generation and registering it for /cancel and a shutdown.
                run = self.answerer.start(prepared, chat_key, adapter)
            except QueueFullError:  # taken by other work (an /eval); not counted against the user
                return Busy()
            self._active[user_id] = run
            if self.access is not None:
                await asyncio.to_thread(self.access.record, user_id, chat_id)
            handle = AnswerHandle(self, user_id, chat_key, run)
            return handle
        finally:
            if handle is None:  # not handed out: give back the model's place and the turn
                if run is not None:
                    run.cancel()
                self.release(user_id)

    def _bound(self, chat_id: int) -> tuple[int, AdapterChoice]:
        """The collection a chat searches and the adapter its answers run with."""
        if self.bindings is None:
            return GLOBAL_COLLECTION, DEFAULT_ADAPTER
        return self.bindings.collection(chat_id).id, self.bindings.adapter(chat_id)

    def release(self, user_id: int) -> None:
        """The user's question is done with (AnswerHandle calls this on leaving)."""
        self._active.pop(user_id, None)

    def cancel(self, user_id: int) -> bool:
        """Stop the answer being written for this user; False when there is none."""
        run = self._active.get(user_id)
        if run is None or run.job is None:
            return False
        run.cancel()
        return True

    def cancel_all(self) -> int:
        """Stop every answer being written and start no new one (a shutdown); return how many."""
        self.stopping = True
        runs = [run for run in self._active.values() if run is not None and run.job is not None]
        for run in runs:
            run.cancel()
        return len(runs)

    def remember(self, chat_key: str, answer: Answer) -> None:
        """Keep `answer` as the chat's last one, for /sources."""
        self._last[chat_key] = answer
        self._last.move_to_end(chat_key)
        while len(self._last) > LAST_ANSWERS_KEPT:
            self._last.popitem(last=False)

    def last_answer(self, chat_key: str) -> Answer | None:
        """The answer last given under `chat_key` (never another chat's or group member's)."""
        return self._last.get(chat_key)

    async def reset(self, chat_key: str) -> int:
        """Forget the conversation; return how many exchanges were dropped."""
        if self.state is None:
            return 0
        dropped = await asyncio.to_thread(self.state.reset, chat_key)
        return dropped // 2

    def alert_due(self) -> str | None:
        """What to tell the admins about state that could not be written, at most once in a
        while (a full disk), or None."""
        return self.state.alert_due() if self.state is not None else None
