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
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from telegram.error import NetworkError, TelegramError
from telegram.ext import Application
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential
from tornado.httpserver import HTTPServer

from bot.tg.handlers import cancel_for_shutdown
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

    def stop(self) -> None:
        """Cancel the answers in progress (their users are told to ask again), then end `run`.

        Without the cancel, PTB's stop waits for every running handler, i.e. for whole answers
        (up to RAGTUNE_GENERATION_TIMEOUT_S), and a service manager would kill the bot mid-write.
        """
        cancelled = cancel_for_shutdown(self.application)
        log.info("stopping; %d answers in progress cancelled", cancelled)
        self._stopped.set()

    async def run(self) -> None:
        """Reach the Bot API, then receive updates until `stop()`; InvalidToken ends it at once."""
        try:
            reached = await self._reach_bot_api_unless_stopped()
        except BaseException:
            await self._close_services()
            raise
        if not reached:
            await self._close_services()
            return
        async with open_application(self.application):  # closes the services on exit
            server = await self._receive()
            try:
                await self._stopped.wait()
            finally:
                if server is not None:
                    server.stop()
                    await server.close_all_connections()

    async def _reach_bot_api_unless_stopped(self) -> bool:
        """True once the Bot API answered; False if `stop()` came first."""
        reaching = asyncio.create_task(self._reach_bot_api())
        stopping = asyncio.create_task(self._stopped.wait())
        done, _ = await asyncio.wait({reaching, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if reaching not in done:
            reaching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reaching
            return False
        reaching.result()  # raises InvalidToken, for one
        return True

    async def _close_services(self) -> None:
        if self.application.post_shutdown is not None:
            await self.application.post_shutdown(self.application)

    async def _reach_bot_api(self) -> None:
        """Initialise the Application (its first call is getMe), retrying while unreachable."""
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(NetworkError),
            wait=wait_exponential(multiplier=1, max=30),
            before_sleep=self._say_unreachable,
            reraise=True,
        ):
            with attempt:
                await self.application.initialize()

    async def _receive(self) -> HTTPServer | None:
        """Start polling, or register the webhook and listen; returns the webhook server."""
        bot = self.application.bot
        if self.webhook is None:
            assert self.application.updater is not None
            await self.application.updater.start_polling(
                timeout=self.poll_timeout_s,
                drop_pending_updates=False,
                bootstrap_retries=-1,
                error_callback=self._polling_failed,
            )
            return None
        server = webhook_server(self.application, self.webhook)
        server.listen(self.webhook.port, address=self.webhook.listen)
        await bot.set_webhook(self.webhook.url, secret_token=self.webhook.secret)
        return server

    def _say_unreachable(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else None
        log.warning(unreachable(self.api_url, error or Exception("no answer"), wait))

    def _polling_failed(self, error: TelegramError) -> None:
        if isinstance(error, NetworkError):
            log.warning(unreachable(self.api_url, error))
        else:
            log.warning("getUpdates failed (%s: %s); trying again.", type(error).__name__, error)
