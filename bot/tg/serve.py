"""Running the bot for real: reach the Bot API, receive updates (polling or webhook), stop cleanly.

PTB's `run_polling`/`run_webhook` would do this too, but they make the first Bot API call before
anything else and end in a traceback when it fails, and their webhook server reads a body before
its secret. Here the services are already open (local faults are found first, by the caller), an
unreachable Bot API is one line and a retry with backoff, at start as during polling, and a stop
cancels the answers in progress before PTB's own shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from telegram.error import NetworkError, TelegramError
from telegram.ext import Application
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential
from tornado.httpserver import HTTPServer

from bot.core.errors import ServeError
from bot.tg.context import SERVICES, BotServices
from bot.tg.webhook import WebhookConfig, webhook_server

log = logging.getLogger(__name__)


def unreachable(api_url: str, error: BaseException, wait_s: float | None = None) -> str:
    """The one line said when the Bot API cannot be reached (the URL never holds the token)."""
    when = f" in {wait_s:.0f} s" if wait_s is not None else ""
    return f"Telegram's Bot API at {api_url} cannot be reached ({error}); trying again{when}."


@asynccontextmanager
async def open_application(application: Application) -> AsyncIterator[None]:  # type: ignore[type-arg]
    """Initialise (post_init included) and start the Application; undo it all on exit."""
    try:
        await application.initialize()
        if application.post_init is not None:
            await application.post_init(application)
        await application.start()
        yield
    finally:
        if application.updater is not None and application.updater.running:
            await application.updater.stop()
        if application.running:
            await application.stop()
            if application.post_stop is not None:
                await application.post_stop(application)
        await application.shutdown()
        if application.post_shutdown is not None:
            await application.post_shutdown(application)


class Server:
    """`ragtune run`: serve until `stop()` (what SIGINT and SIGTERM call)."""

    def __init__(
        self,
        application: Application,  # type: ignore[type-arg]
        api_url: str,
        webhook: WebhookConfig | None = None,
        *,
        poll_timeout_s: int = 10,
    ) -> None:
        self.application = application
        self.api_url = api_url
        self.webhook = webhook
        self.poll_timeout_s = poll_timeout_s
        self._stopped = asyncio.Event()
        self._server: HTTPServer | None = None

    def stop(self) -> None:
        """Cancel the answers in progress (their users are told to ask again), then end `run`.

        Without the cancel, PTB's stop waits for every running handler, i.e. for whole answers
        (up to RAGTUNE_GENERATION_TIMEOUT_S), and a service manager would kill the bot mid-write.
        """
        services: BotServices | None = self.application.bot_data.get(SERVICES)
        cancelled = services.chat.cancel_all() if services is not None else 0
        log.info("stopping; %d answers in progress cancelled", cancelled)
        self._stopped.set()

    async def run(self) -> None:
        """Reach the Bot API, then receive updates until `stop()`; InvalidToken ends it at once.

        A stop is honoured at every step, also while Telegram is out of reach.
        """
        if not await self._unless_stopped(self._retrying(self.application.initialize)):
            return
        async with open_application(self.application):  # closes what post_init opened
            try:
                if await self._unless_stopped(self._receive()):
                    await self._stopped.wait()
            finally:
                if self._server is not None:
                    self._server.stop()
                    await self._server.close_all_connections()

    async def _unless_stopped(self, work: Coroutine[Any, Any, object]) -> bool:
        """Run `work` to its end (True), or cancel it when `stop()` comes first (False)."""
        working = asyncio.create_task(work)
        stopping = asyncio.create_task(self._stopped.wait())
        done, _ = await asyncio.wait({working, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if working not in done:
            working.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await working
            return False
        working.result()  # raises InvalidToken, for one
        return True

    async def _retrying(self, call: Callable[[], Awaitable[object]]) -> None:
        """Make a Bot API call, retrying with backoff for as long as Telegram is unreachable."""
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(NetworkError),
            wait=wait_exponential(multiplier=1, max=30),
            before_sleep=self._say_unreachable,
            reraise=True,
        ):
            with attempt:
                await call()

    async def _receive(self) -> None:
        """Start polling, or listen and register the webhook."""
        bot = self.application.bot
        if self.webhook is None:
            assert self.application.updater is not None
            # Done here first, with our retries: PTB's own bootstrap retries cannot be stopped.
            await self._retrying(lambda: bot.delete_webhook(drop_pending_updates=False))
            await self.application.updater.start_polling(
                timeout=self.poll_timeout_s,
                drop_pending_updates=False,
                bootstrap_retries=-1,
                error_callback=self._polling_failed,
            )
            return
        server = webhook_server(self.application, self.webhook)
        try:
            server.listen(self.webhook.port, address=self.webhook.listen)
        except OSError as exc:
            raise ServeError(
                f"the webhook server cannot listen on {self.webhook.listen}:{self.webhook.port} "
                f"({exc.strerror or exc}): check RAGTUNE_WEBHOOK_LISTEN and RAGTUNE_WEBHOOK_PORT."
            ) from None
        self._server = server
        webhook = self.webhook
        await self._retrying(lambda: bot.set_webhook(webhook.url, secret_token=webhook.secret))

    def _say_unreachable(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else None
        log.warning(unreachable(self.api_url, error or Exception("no answer"), wait))

    def _polling_failed(self, error: TelegramError) -> None:
        if isinstance(error, NetworkError):
            log.warning(unreachable(self.api_url, error))
        else:
            log.warning("getUpdates failed (%s: %s); trying again.", type(error).__name__, error)
