"""Where `/add URL` fetches run: threads of their own, a bounded number, a bounded queue.

A page fetch can take the whole fetch deadline (a minute by default). On the event loop's
default executor, which questions use too (search, state, bindings), a few slow pages would
make everyone else wait; here they wait only for each other, and beyond the queue an admin is
told in one sentence to try again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from knowledge.errors import RagtuneError

P = ParamSpec("P")
T = TypeVar("T")


class FetchesFullError(RagtuneError):
    """Every fetch slot and queue place is taken."""


class PageFetches:
    """Runs page fetches on `workers` threads of their own, with `waiting` more queued."""

    def __init__(self, workers: int = 2, waiting: int = 4) -> None:
        self.workers = workers
        self.waiting = waiting
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="page-fetch")
        self._places = threading.BoundedSemaphore(workers + waiting)

    def submit(self, work: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Start `work` on a fetch thread (or queue it); FetchesFullError when all are taken."""
        if not self._places.acquire(blocking=False):
            raise FetchesFullError(
                f"Nothing was added: {self.workers + self.waiting} pages are being fetched or "
                "waiting already; please send it again in a minute."
            )
        try:
            future = self._executor.submit(work, *args, **kwargs)
        except BaseException:
            self._places.release()
            raise
        future.add_done_callback(lambda _: self._places.release())
        return future

    def close(self) -> None:
        """Drop queued fetches; running ones end at their deadline (threads are not killed)."""
        self._executor.shutdown(wait=False, cancel_futures=True)
