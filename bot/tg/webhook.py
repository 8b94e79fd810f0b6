"""The webhook receiver: Telegram's secret header is checked before a byte of the body is read.

PTB's own webhook server reads a whole request body (up to 100 MB) before it looks at the secret,
so anyone who finds the URL can make the bot buffer large bodies. Here the handler streams the
body: headers first, the secret compared in constant time, the declared size checked, and only
then is the body read, into a buffer that cannot grow past `MAX_UPDATE_BYTES`.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import urllib.parse
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import tornado.web
from telegram import Update
from telegram.ext import Application
from tornado.httpserver import HTTPServer

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
MAX_UPDATE_BYTES = 1_000_000
"""Largest update accepted. Updates are JSON of a few KB (a 4,096-character message with its
entities and a reply stays far below this); files are fetched separately, never posted."""


@dataclass(frozen=True)
class WebhookConfig:
    """Where Telegram posts updates, where the server listens, and the shared secret."""

    url: str
    listen: str
    port: int
    secret: str

    @property
    def path(self) -> str:
        """The URL's path, which the server answers on."""
        return urllib.parse.urlparse(self.url).path or "/"


@tornado.web.stream_request_body
class UpdateReceiver(tornado.web.RequestHandler):
    """Takes one update per POST; refuses anything without the secret before reading it."""

    SUPPORTED_METHODS = ("POST",)

    def initialize(self, ptb: Application, secret: str) -> None:  # type: ignore[type-arg]
        """Tornado's per-request set-up."""
        self.ptb = ptb
        self.secret = secret
        self.body = bytearray()

    def prepare(self) -> None:
        """Runs once the headers are in, before the body: the secret, then the size."""
        offered = self.request.headers.get(SECRET_HEADER, "")
        if not hmac.compare_digest(offered.encode(), self.secret.encode()):
            self._refuse(HTTPStatus.FORBIDDEN)
            return
        declared = self.request.headers.get("Content-Length", "0")
        if not declared.isdigit() or int(declared) > MAX_UPDATE_BYTES:
            # (A chunked body without a length is cut off by the server at the same size.)
            self._refuse(HTTPStatus.REQUEST_ENTITY_TOO_LARGE)

    def _refuse(self, status: HTTPStatus) -> None:
        # Finishing before the body is read makes tornado close the connection unread.
        self.set_status(status)
        self.finish()

    def data_received(self, chunk: bytes) -> None:
        """A piece of an accepted body."""
        self.body.extend(chunk)

    async def post(self) -> None:
        """Parse the update and hand it to PTB, which processes it like a polled one."""
        try:
            data = json.loads(self.body)
            if not isinstance(data, dict):
                raise TypeError("not a JSON object")
            update = Update.de_json(data, self.ptb.bot)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            log.warning("webhook: refused a body that is not an update (%s)", type(exc).__name__)
            self.set_status(HTTPStatus.BAD_REQUEST)
            return
        await self.ptb.update_queue.put(update)

    def log_exception(self, *args: Any) -> None:
        """Refusals (HTTPError) in one line; anything else is a bug and keeps its traceback."""
        if isinstance(args[1] if len(args) > 1 else None, tornado.web.HTTPError):
            log.info("webhook: request refused (%s)", args[1])
            return
        super().log_exception(*args)


def webhook_server(application: Application, config: WebhookConfig) -> HTTPServer:  # type: ignore[type-arg]
    """An HTTP server, not yet listening, that feeds Telegram's posts to `application`."""
    routes = [
        (
            rf"{re.escape(config.path.rstrip('/'))}/?",
            UpdateReceiver,
            {"ptb": application, "secret": config.secret},
        )
    ]
    app = tornado.web.Application(routes, log_function=lambda handler: None)
    return HTTPServer(app, max_body_size=MAX_UPDATE_BYTES, max_buffer_size=MAX_UPDATE_BYTES)
