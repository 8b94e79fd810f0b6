"""A local Telegram Bot API emulator on 127.0.0.1, for tests and for trying the bot with no token.

It speaks the methods the bot uses over real HTTP, so the bot runs through python-telegram-bot's
own request stack. The control side (methods of `BotAPIEmulator`) injects updates and faults and
reads what the bot sent.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

BOT_USER = {
    "id": 777000,
    "is_bot": True,
    "first_name": "ragtune",
    "username": "ragtune_bot",
    "can_join_groups": True,
    "can_read_all_group_messages": False,
    "supports_inline_queries": False,
}

JSON = dict[str, Any]


@dataclass
class Fault:
    """Make the next `times` calls of `method` fail with `status` (429 carries retry_after)."""

    method: str
    status: int
    times: int = 1
    retry_after: int = 1
    delay_s: float = 0.0


@dataclass
class SentCall:
    """A Bot API call the bot made, with when it arrived."""

    method: str
    params: JSON
    at: float = field(default_factory=time.monotonic)


class BotAPIEmulator:
    """The Bot API's state: updates to deliver, messages sent, files, faults."""

    def __init__(self, token: str = "123456:TEST-token") -> None:
        self.token = token
        self.calls: list[SentCall] = []
        self.faults: list[Fault] = []
        self.files: dict[str, bytes] = {}
        self.gone_files: set[str] = set()
        """Files whose download answers 404 (Telegram keeps files for a limited time)."""
        self._updates: list[JSON] = []
        self._update_ids = itertools.count(1)
        self._message_ids = itertools.count(1)
        self._messages: dict[tuple[int, int], JSON] = {}
        self._changed = threading.Condition()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.webhook_url: str | None = None
        self.webhook_secret: str | None = None
        self.webhook_statuses: list[int] = []
        """HTTP status of each update posted to the bot's webhook."""
        self.migrated: dict[int, int] = {}
        """Groups that became supergroups: old id -> new id (sends to the old id are refused)."""

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self, port: int = 0) -> None:
        """Serve on 127.0.0.1 (a free port by default) in a background thread."""
        self._server = _QuietServer(("127.0.0.1", port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self._changed:
            self._changed.notify_all()

    @property
    def port(self) -> int:
        """The port it listens on."""
        assert self._server is not None, "start() first"
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """Value for RAGTUNE_TELEGRAM_API_URL (PTB's base_url)."""
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def base_file_url(self) -> str:
        """Value for RAGTUNE_TELEGRAM_FILE_URL (PTB's base_file_url)."""
        return f"http://127.0.0.1:{self.port}/file/bot"

    # --- control side: what users do ---------------------------------------------------------

    def _push(self, update: JSON) -> JSON:
        """Queue an update for getUpdates, or post it to the webhook if the bot set one."""
        with self._changed:
            update["update_id"] = next(self._update_ids)
            if self.webhook_url is None:
                self._updates.append(update)
                self._changed.notify_all()
                return update
        self.post_webhook(update, self.webhook_secret)
        return update

    def post_webhook(self, update: JSON, secret: str | None) -> int:
        """POST one update to the bot's webhook, as Telegram does; return the HTTP status."""
        assert self.webhook_url is not None, "the bot has not called setWebhook"
        headers = {"Content-Type": "application/json"}
        if secret is not None:
            headers["X-Telegram-Bot-Api-Secret-Token"] = secret
        request = urllib.request.Request(
            self.webhook_url, data=json.dumps(update).encode(), headers=headers, method="POST"
        )
        deadline = time.monotonic() + 10
        while True:  # like Telegram, retry while the bot's server is not up yet
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    status = int(response.status)
                break
            except urllib.error.HTTPError as exc:
                status = exc.code
                break
            except urllib.error.URLError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self.webhook_statuses.append(status)
        return status

    def send_text(
        self,
        text: str,
        *,
        user_id: int = 1001,
        chat_id: int | None = None,
        chat_type: str = "private",
        first_name: str = "Ada",
        reply_to: JSON | None = None,
        forwarded_from: int | None = None,
    ) -> JSON:
        """A user sends a text message (commands are text starting with /), or forwards one
        first written by user `forwarded_from`."""
        chat_id = user_id if chat_id is None else chat_id
        message: JSON = {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": chat_type, "title": "group"}
            if chat_type != "private"
            else {"id": chat_id, "type": "private", "first_name": first_name},
            "from": {"id": user_id, "is_bot": False, "first_name": first_name},
            "text": text,
        }
        if text.startswith("/"):
            command = text.split()[0]
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
        if reply_to is not None:
            message["reply_to_message"] = reply_to
        if forwarded_from is not None:
            message["forward_origin"] = {
                "type": "user",
                "date": int(time.time()),
                "sender_user": {"id": forwarded_from, "is_bot": False, "first_name": "Admin"},
            }
        return self._push({"message": message})

    def send_document(
        self,
        data: bytes,
        file_name: str,
        *,
        user_id: int = 1001,
        caption: str | None = None,
        chat_id: int | None = None,
        chat_type: str = "private",
        downloadable: bool = True,
    ) -> JSON:
        """A user sends a file; the bot can fetch it with getFile (a 404 if not `downloadable`,
        as for a file Telegram no longer has)."""
        file_id = f"file-{len(self.files) + 1}"
        self.files[file_id] = data
        if not downloadable:
            self.gone_files.add(file_id)
        chat_id = user_id if chat_id is None else chat_id
        message: JSON = {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": chat_type, "title": "group"}
            if chat_type != "private"
            else {"id": chat_id, "type": "private", "first_name": "Ada"},
            "from": {"id": user_id, "is_bot": False, "first_name": "Ada"},
            "document": {
                "file_id": file_id,
                "file_unique_id": f"u{file_id}",
                "file_name": file_name,
                "file_size": len(data),
            },
        }
        if caption:
            message["caption"] = caption
            if caption.startswith("/"):
                length = len(caption.split()[0])
                message["caption_entities"] = [{"type": "bot_command", "offset": 0,
                                                "length": length}]  # fmt: skip
        return self._push({"message": message})

    @contextmanager
    def together(self) -> Iterator[None]:
        """Updates pushed in the block reach the bot in one getUpdates answer (as a burst of
        messages does), so it starts handling them at once."""
        with self._changed:  # re-entrant: _push takes it too
            yield

    def migrate_group(self, old_id: int, new_id: int, *, user_id: int = 1001) -> None:
        """The group `old_id` becomes the supergroup `new_id`, as Telegram does it: a service
        message in each chat naming the other, and from then on the old id refuses messages
        with 400 and `migrate_to_chat_id` (python-telegram-bot's ChatMigrated)."""
        self.migrated[old_id] = new_id
        user = {"id": user_id, "is_bot": False, "first_name": "Ada"}
        for chat, kind, field_name, other in (
            (old_id, "group", "migrate_to_chat_id", new_id),
            (new_id, "supergroup", "migrate_from_chat_id", old_id),
        ):
            message = {"message_id": next(self._message_ids), "date": int(time.time()),
                       "chat": {"id": chat, "type": kind, "title": "group"}, "from": user,
                       field_name: other}  # fmt: skip
            self._push({"message": message})

    def press_button(self, message: JSON, data: str, *, user_id: int = 1001) -> JSON:
        """A user presses an inline button under a message the bot sent."""
        return self._push(
            {
                "callback_query": {
                    "id": str(next(self._update_ids)),
                    "from": {"id": user_id, "is_bot": False, "first_name": "Ada"},
                    "message": message,
                    "chat_instance": "1",
                    "data": data,
                }
            }
        )

    # --- control side: what the bot did --------------------------------------------------------

    def sent(self, method: str | None = None, chat_id: int | None = None) -> list[SentCall]:
        """Calls the bot made, optionally of one method and to one chat."""
        return [
            c
            for c in list(self.calls)
            if (method is None or c.method == method)
            and (chat_id is None or int(c.params.get("chat_id", 0)) == chat_id)
        ]

    def wait_for(
        self, predicate: Callable[[], bool], timeout: float = 30.0, interval: float = 0.02
    ) -> None:
        """Wait until `predicate()` holds (raises TimeoutError)."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError("the bot did not do what was expected in time")
            time.sleep(interval)

    def messages(self, chat_id: int) -> list[JSON]:
        """Messages the bot sent to a chat, oldest first, as they read now (after edits)."""
        return [self._messages[key] for key in sorted(k for k in list(self._messages)
                                                      if k[0] == chat_id)]  # fmt: skip

    def message(self, chat_id: int, message_id: int) -> JSON:
        """A copy of one message the bot sent, as it reads now."""
        return dict(self._messages[(chat_id, message_id)])

    def last_message(self, chat_id: int) -> JSON:
        """The latest message the bot sent to a chat."""
        latest = max(m for c, m in self._messages if c == chat_id)
        return self._messages[(chat_id, latest)]

    def message_text(self, chat_id: int, message_id: int) -> str:
        """Current text of a message the bot sent (after its edits)."""
        return str(self._messages[(chat_id, message_id)].get("text", ""))

    # --- the Bot API side ----------------------------------------------------------------------

    def call(self, method: str, params: JSON) -> tuple[int, JSON]:
        """Answer one Bot API call: (HTTP status, response body)."""
        for fault in self.faults:
            if fault.method == method and fault.times > 0:
                fault.times -= 1
                time.sleep(fault.delay_s)
                self.calls.append(SentCall(method, params))
                if fault.status == 429:
                    return 429, {
                        "ok": False,
                        "error_code": 429,
                        "description": f"Too Many Requests: retry after {fault.retry_after}",
                        "parameters": {"retry_after": fault.retry_after},
                    }
                return fault.status, {"ok": False, "error_code": fault.status,
                                      "description": "Internal Server Error"}  # fmt: skip
        if method != "getUpdates":
            self.calls.append(SentCall(method, params))
        chat_id = _chat_id(params)
        moved_to = self.migrated.get(chat_id) if chat_id is not None else None
        if moved_to is not None:
            return 400, {"ok": False, "error_code": 400,
                         "description": "Bad Request: group chat was upgraded to a supergroup chat",
                         "parameters": {"migrate_to_chat_id": moved_to}}  # fmt: skip
        handler = getattr(self, f"_api_{method}", None)
        if handler is None:
            return 404, {"ok": False, "error_code": 404, "description": "Not Found: method"}
        try:
            return 200, {"ok": True, "result": handler(params)}
        except _BadRequestError as exc:
            return 400, {"ok": False, "error_code": 400, "description": f"Bad Request: {exc}"}

    def _api_getMe(self, params: JSON) -> JSON:
        return BOT_USER

    def _api_deleteWebhook(self, params: JSON) -> bool:
        self.webhook_url = self.webhook_secret = None
        return True

    def _api_setWebhook(self, params: JSON) -> bool:
        self.webhook_url = str(params["url"]) or None
        secret = params.get("secret_token")
        self.webhook_secret = str(secret) if secret else None
        return True

    def _api_getWebhookInfo(self, params: JSON) -> JSON:
        return {"url": self.webhook_url or "", "has_custom_certificate": False,
                "pending_update_count": len(self._updates)}  # fmt: skip

    def _api_setMyCommands(self, params: JSON) -> bool:
        return True

    def _api_sendChatAction(self, params: JSON) -> bool:
        return True

    def _api_answerCallbackQuery(self, params: JSON) -> bool:
        return True

    def _api_getFile(self, params: JSON) -> JSON:
        file_id = str(params["file_id"])
        if file_id not in self.files:
            raise _BadRequestError("invalid file_id")
        return {"file_id": file_id, "file_unique_id": f"u{file_id}",
                "file_size": len(self.files[file_id]), "file_path": file_id}  # fmt: skip

    def _api_getUpdates(self, params: JSON) -> list[JSON]:
        offset = int(params.get("offset", 0) or 0)
        timeout = min(float(params.get("timeout", 0) or 0), 5.0)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                self._updates = [u for u in self._updates if u["update_id"] >= offset]
                if self._updates or time.monotonic() >= deadline or self._server is None:
                    return list(self._updates)
                self._changed.wait(max(0.0, deadline - time.monotonic()))

    def _new_message(self, params: JSON, text: str) -> JSON:
        chat_id = int(params["chat_id"])
        if (
            len(text.encode("utf-16-le", "surrogatepass")) // 2 > 4096
        ):  # Telegram counts UTF-16 units
            raise _BadRequestError("message is too long")
        if not text.strip():
            raise _BadRequestError("message text is empty")
        if params.get("parse_mode") == "HTML":
            _check_html(text)
        message_id = next(self._message_ids)
        message = {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "group"},
            "from": BOT_USER,
            "text": text,
        }
        if "reply_markup" in params:
            message["reply_markup"] = params["reply_markup"]
        self._messages[(chat_id, message_id)] = message
        return message

    def _api_sendMessage(self, params: JSON) -> JSON:
        return self._new_message(params, str(params.get("text", "")))

    def _api_sendPhoto(self, params: JSON) -> JSON:
        return self._new_file_message(params, "photo")

    def _api_sendDocument(self, params: JSON) -> JSON:
        return self._new_file_message(params, "document")

    def _new_file_message(self, params: JSON, kind: str) -> JSON:
        data = params.get(kind)
        if not isinstance(data, bytes) or not data:
            raise _BadRequestError(f"there is no {kind} in the request")
        chat_id = int(params["chat_id"])
        message_id = next(self._message_ids)
        self.files[f"{kind}-{message_id}"] = data  # the bot could fetch it back with getFile
        attachment = {"file_id": f"{kind}-{message_id}", "file_unique_id": f"u{kind}-{message_id}",
                      "file_size": len(data)}  # fmt: skip
        message = {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "group"},
            "from": BOT_USER,
            kind: [{**attachment, "width": 960, "height": 540}] if kind == "photo" else attachment,
            "caption": str(params.get("caption", "")),
        }
        self._messages[(chat_id, message_id)] = message
        return message

    def _api_sendMessageDraft(self, params: JSON) -> bool:
        text = str(params.get("text", ""))
        if (
            len(text.encode("utf-16-le", "surrogatepass")) // 2 > 4096
        ):  # Telegram counts UTF-16 units
            raise _BadRequestError("message is too long")
        return True

    def _api_editMessageText(self, params: JSON) -> JSON:
        key = (int(params["chat_id"]), int(params["message_id"]))
        if key not in self._messages:
            raise _BadRequestError("message to edit not found")
        text = str(params.get("text", ""))
        if (
            len(text.encode("utf-16-le", "surrogatepass")) // 2 > 4096
        ):  # Telegram counts UTF-16 units
            raise _BadRequestError("message is too long")
        if params.get("parse_mode") == "HTML":
            _check_html(text)
        message = self._messages[key]
        markup = params.get("reply_markup")
        if message["text"] == text and message.get("reply_markup") == markup:
            raise _BadRequestError("message is not modified")
        message["text"] = text
        # Like Telegram: an edit without reply_markup removes the buttons.
        if markup:
            message["reply_markup"] = markup
        else:
            message.pop("reply_markup", None)
        return message


class _BadRequestError(Exception):
    pass


class _QuietServer(ThreadingHTTPServer):
    """A client hanging up mid-long-poll (the bot stopping) is normal, not an error to print."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


_ALLOWED_TAGS = {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "code", "pre", "a",
                 "blockquote", "tg-spoiler", "span"}  # fmt: skip


def _check_html(text: str) -> None:
    """Reject what Telegram rejects: unknown or unbalanced tags, bare `<` and `&`."""
    from html.parser import HTMLParser

    stack: list[str] = []

    class Checker(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            if tag not in _ALLOWED_TAGS:
                raise _BadRequestError(f'can\'t parse entities: unsupported start tag "{tag}"')
            stack.append(tag)

        def handle_endtag(self, tag: str) -> None:
            if not stack or stack.pop() != tag:
                raise _BadRequestError(f'can\'t parse entities: unexpected end tag "{tag}"')

    Checker(convert_charrefs=True).feed(text)
    if stack:
        raise _BadRequestError("can't parse entities: unclosed tag")


def _handler_for(emulator: BotAPIEmulator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes; with Nagle's algorithm on, the body waits for
        # the client's delayed ACK (~40 ms on keep-alive connections), which no real server has.
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            return  # quiet: tests read calls, not logs (and URLs hold the token)

        def _reply(self, status: int, body: bytes, content_type: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _route(self) -> None:
            # Clients may percent-encode the token's colon in file URLs.
            path = urllib.parse.unquote(urllib.parse.urlparse(self.path).path)
            prefix = f"/bot{emulator.token}/"
            file_prefix = f"/file/bot{emulator.token}/"
            if path.startswith(file_prefix):
                file_id = path.removeprefix(file_prefix)
                data = emulator.files.get(file_id)
                if data is None or file_id in emulator.gone_files:
                    self._reply(404, b"not found", "text/plain")
                else:
                    self._reply(200, data, "application/octet-stream")
                return
            if not path.startswith(prefix):
                body = {"ok": False, "error_code": 401, "description": "Unauthorized"}
                self._reply(401, json.dumps(body).encode())
                return
            status, body = emulator.call(path.removeprefix(prefix), self._params())
            self._reply(status, json.dumps(body).encode())

        def _params(self) -> JSON:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            kind = self.headers.get("Content-Type", "")
            if kind.startswith("application/json"):
                return dict(json.loads(raw or b"{}"))
            if kind.startswith("multipart/form-data"):
                message = BytesParser(policy=HTTP).parsebytes(
                    f"Content-Type: {kind}\r\n\r\n".encode() + raw
                )
                fields: JSON = {}
                for part in message.iter_parts():
                    name = part.get_param("name", header="content-disposition")
                    payload = part.get_payload(decode=True)
                    data = payload if isinstance(payload, bytes) else b""
                    fields[str(name)] = data if part.get_filename() else _value(data.decode())
                return fields
            return {k: _value(v) for k, v in urllib.parse.parse_qsl(raw.decode())}

        do_GET = _route
        do_POST = _route

    return Handler


def _chat_id(params: JSON) -> int | None:
    """A call's numeric chat id, or None (none given, or a @username)."""
    try:
        return int(params["chat_id"])
    except (KeyError, TypeError, ValueError):
        return None


def _value(text: str) -> Any:
    """Form fields carry JSON for structured values and plain strings otherwise."""
    try:
        return json.loads(text)
    except ValueError:
        return text
