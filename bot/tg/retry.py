"""Bot API calls that survive a bad moment: PTB's flood control plus retries for 5xx/timeouts."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from telegram.error import BadRequest, NetworkError
from telegram.ext import AIORateLimiter
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

log = logging.getLogger(__name__)
Result = bool | dict[str, Any] | list[dict[str, Any]]
OWN_BACKOFF = frozenset({"getUpdates", "getMe"})


def is_transient(error: BaseException) -> bool:
    """5xx answers and timeouts (NetworkError); a 400 is our mistake and will not heal."""
    return isinstance(error, NetworkError) and not isinstance(error, BadRequest)


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    wait = state.next_action.sleep if state.next_action else 0
    log.warning("Bot API call failed (%s); retry %d in %.1f s",
                type(error).__name__, state.attempt_number, wait)  # fmt: skip


class RetryingRateLimiter(AIORateLimiter):
    """AIORateLimiter (flood limits; on a 429 no call before retry_after) that also retries
    transient failures with exponential backoff, then lets the last error through.

    getUpdates and getMe are left alone: PTB's polling loop and `ragtune run`'s start-up
    (bot/tg/serve.py) have their own backoff, never give up, and say so in one line.
    """

    def __init__(
        self, *, attempts: int = 3, first_wait_s: float = 0.5, max_wait_s: float = 4.0, **kw: Any
    ) -> None:
        super().__init__(**kw)
        self.attempts = attempts
        self.first_wait_s = first_wait_s
        self.max_wait_s = max_wait_s

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, Result]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: int | None,
    ) -> Result:
        """Run the call through flood control, retrying transient failures."""
        if endpoint in OWN_BACKOFF:
            return await super().process_request(
                callback, args, kwargs, endpoint, data, rate_limit_args
            )
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential(multiplier=self.first_wait_s, max=self.max_wait_s),
            retry=retry_if_exception(is_transient),
            before_sleep=_log_retry,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await super().process_request(
                    callback, args, kwargs, endpoint, data, rate_limit_args
                )
        raise AssertionError("unreachable: tenacity re-raises the last error")
