"""ModelWorker: one thread owns the engine; requests wait in a bounded queue, can be cancelled."""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, TypeVar, cast

from bot.llm.engine import ChatEngine, GenerationLimits, Message, ModelError

log = logging.getLogger(__name__)
T = TypeVar("T")

FinishReason = Literal["stop", "length", "cancelled", "timeout", "error"]
DEFAULT_ADAPTER: Final = "default"
"""A job with this adapter runs with the worker's default adapter (what users get)."""
AdapterChoice = Path | None | Literal["default"]


class QueueFullError(ModelError):
    """Every place in the queue is taken; try again shortly."""


@dataclass(frozen=True)
class Completion:
    """What a finished generation produced, with its timings."""

    text: str
    tokens: int
    finish_reason: FinishReason
    first_token_s: float | None
    generation_s: float

    @property
    def cancelled(self) -> bool:
        """Whether the generation was stopped by `Job.cancel` (a user's /cancel, a shutdown)."""
        return self.finish_reason == "cancelled"

    @property
    def tokens_per_s(self) -> float:
        """Generated pieces per second after the first one arrived."""
        if self.first_token_s is None or self.tokens < 2:
            return 0.0
        return (self.tokens - 1) / max(self.generation_s - self.first_token_s, 1e-9)


_DONE = object()


class Job:
    """One queued generation: iterate its text pieces, or wait for its Completion."""

    def __init__(
        self,
        messages: Sequence[Message],
        limits: GenerationLimits,
        position: int,
        adapter: AdapterChoice = DEFAULT_ADAPTER,
    ):
        self.messages = list(messages)
        self.limits = limits
        self.adapter = adapter
        """The LoRA adapter this generation runs with (None: the base model alone)."""
        self.position = position
        """Jobs ahead of this one when it was queued (0 = next to run)."""
        self._cancel = threading.Event()
        self._started = False
        self._state = threading.Lock()  # orders `cancel` against the worker picking the job up
        self._pieces: queue.Queue[object] = queue.Queue()
        self.completion: Future[Completion] = Future()

    def cancel(self) -> None:
        """Stop at the next token; a job still queued finishes at once and never starts."""
        with self._state:
            self._cancel.set()
            if self._started or self.completion.done():
                return
        self._pieces.put(_DONE)
        self.completion.set_result(Completion("", 0, "cancelled", None, 0.0))

    def begin(self) -> bool:
        """Mark the job as running (model thread); False when it was cancelled while queued."""
        with self._state:
            if self._cancel.is_set():
                return False
            self._started = True
            return True

    @property
    def cancelled(self) -> bool:
        """True once `cancel` was called."""
        return self._cancel.is_set()

    def pieces(self) -> Iterator[str]:
        """Blocking iterator over the generated text pieces."""
        while (item := self._pieces.get()) is not _DONE:
            yield str(item)

    async def apieces(self) -> AsyncIterator[str]:
        """Async iterator over the text; waits in a thread, never on the event loop.

        Each step yields everything generated since the last one, so a slow consumer (a
        Telegram call in flight) costs one thread hop per batch, not one per token.
        """
        while True:
            items = [await asyncio.to_thread(self._pieces.get)]
            while items[-1] is not _DONE:
                try:
                    items.append(self._pieces.get_nowait())
                except queue.Empty:
                    break
            text = "".join(str(item) for item in items if item is not _DONE)
            if text:
                yield text
            if items[-1] is _DONE:
                return

    def result(self, timeout: float | None = None) -> Completion:
        """Block until the job finishes."""
        return self.completion.result(timeout)


class _Call:
    """Work other than a generation (an adapter switch) that must run on the model's thread."""

    def __init__(self, fn: Callable[[ChatEngine], object]) -> None:
        self.fn = fn
        self.done: Future[object] = Future()


class ModelWorker:
    """Runs the generations in order from a bounded queue: on one thread, or on `concurrency`
    threads for an engine that batches (each thread waits on the server's stream)."""

    def __init__(self, engine: ChatEngine, *, max_queue: int = 8, concurrency: int = 1) -> None:
        self.engine = engine
        self.concurrency = max(1, concurrency)
        """Generations in flight at once (the in-process engine: always 1)."""
        self._queue: queue.Queue[Job | _Call | None] = queue.Queue(maxsize=max_queue)
        self._waiting = 0
        self._lock = threading.Lock()
        self.default_adapter: Path | None = None
        """The adapter of jobs that name none; changed only through `set_default_adapter`."""
        self._threads = [
            threading.Thread(target=self._run, name=f"ragtune-model-{n}", daemon=True)
            for n in range(self.concurrency)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def capacity(self) -> int:
        """Answers that can be in hand at once: those running plus a full queue."""
        return self._queue.maxsize + self.concurrency

    @property
    def waiting(self) -> int:
        """Jobs queued or running."""
        return self._waiting

    # What the core may know of the engine, without reaching through the worker into it.
    @property
    def model_id(self) -> str:
        """The served model's name."""
        return self.engine.model_id

    @property
    def context_window(self) -> int:
        """Tokens the model attends to (prompt + answer)."""
        return self.engine.context_window

    @property
    def supports_lora(self) -> bool:
        """Whether LoRA adapters can be applied to this model."""
        return self.engine.supports_lora

    def count_tokens(self, text: str) -> int:
        """Tokens `text` takes in the model's vocabulary (safe from any thread)."""
        return self.engine.count_tokens(text)

    def submit(
        self,
        messages: Sequence[Message],
        limits: GenerationLimits,
        adapter: AdapterChoice = DEFAULT_ADAPTER,
    ) -> Job:
        """Queue a generation; raise QueueFullError when the queue is full."""
        with self._lock:
            ahead = max(0, self._waiting - self.concurrency + 1)  # 0: it starts at once
            job = Job(messages, limits, position=ahead, adapter=adapter)
            try:
                self._queue.put_nowait(job)
            except queue.Full:
                raise QueueFullError("The model queue is full; try again shortly.") from None
            self._waiting += 1
        return job

    def generate(self, messages: Sequence[Message], limits: GenerationLimits) -> Completion:
        """Queue a generation and wait for it (for scripts and the terminal)."""
        return self.submit(messages, limits).result()

    def call(self, fn: Callable[[ChatEngine], T], timeout: float | None = None) -> T:
        """Run `fn(engine)` on the model thread after the jobs queued before it; return its result.

        This is how the engine is changed (an adapter switched): never during a generation.
        """
        work = _Call(fn)
        with self._lock:
            self._waiting += 1
        try:
            self._queue.put(work, timeout=timeout)
        except queue.Full:
            with self._lock:
                self._waiting -= 1
            raise QueueFullError("The model queue stayed full; try again shortly.") from None
        return cast(T, work.done.result(timeout))

    def set_default_adapter(self, path: Path | None) -> None:
        """Make `path` the adapter users' answers run with, made ready now (errors surface here,
        before anyone is answered with it)."""

        def switch(engine: ChatEngine) -> None:
            engine.use_adapter(path)
            self.default_adapter = path

        self.call(switch)

    def close(self) -> None:
        """Finish queued jobs, then stop the threads."""
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()

    def _run(self) -> None:
        while (job := self._queue.get()) is not None:
            try:
                if isinstance(job, _Call):
                    self._call(job)
                else:
                    self._execute(job)
            finally:
                with self._lock:
                    self._waiting -= 1

    def _call(self, work: _Call) -> None:
        try:
            work.done.set_result(work.fn(self.engine))
        except Exception as exc:  # reported to the caller; the worker keeps serving
            work.done.set_exception(exc)

    def _execute(self, job: Job) -> None:
        if not job.begin():
            return  # cancelled while queued: `cancel` already finished it
        started = time.perf_counter()
        deadline = started + job.limits.timeout_s
        text: list[str] = []
        first: float | None = None
        reason: FinishReason = "stop"

        def should_stop() -> bool:
            return job.cancelled or time.perf_counter() > deadline

        adapter = self.default_adapter if job.adapter == DEFAULT_ADAPTER else job.adapter
        try:
            for piece in self.engine.stream(job.messages, job.limits, should_stop, adapter):
                if first is None:
                    first = time.perf_counter() - started
                text.append(piece)
                job._pieces.put(piece)
            if job.cancelled:
                reason = "cancelled"
            elif time.perf_counter() > deadline:
                reason = "timeout"
            elif len(text) >= job.limits.max_tokens:
                reason = "length"
        except Exception as exc:  # reported to the caller; the worker keeps serving
            log.exception("generation failed")
            job._pieces.put(_DONE)
            job.completion.set_exception(exc)
            return
        job._pieces.put(_DONE)
        job.completion.set_result(
            Completion(
                text="".join(text),
                tokens=len(text),
                finish_reason=reason,
                first_token_s=first,
                generation_s=time.perf_counter() - started,
            )
        )
