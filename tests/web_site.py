"""A small real web site on 127.0.0.1 for the tests of page fetching (the `site` fixture)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Site:
    """Routes of the test server: path -> (status, headers, body); and the paths asked for."""

    port: int = 0
    routes: dict[str, tuple[int, dict[str, str], bytes]] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)
    drips: dict[str, float] = field(default_factory=dict)
    """path -> seconds between the bytes of its body (a server that sends a page slowly)."""
    header_drips: dict[str, tuple[float, int]] = field(default_factory=dict)
    """path -> (seconds between bytes, bytes of padding header): a server that sends even its
    headers a byte at a time, for a bounded number of bytes."""

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        """The address of `path` on this server."""
        return f"http://{host}:{self.port}{path}"

    def page(self, path: str, html: str, content_type: str = "text/html; charset=utf-8") -> None:
        """Serve `html` at `path`."""
        self.routes[path] = (200, {"Content-Type": content_type}, html.encode("utf-8"))


@contextmanager
def serving() -> Iterator[Site]:
    """Serve a Site's routes on 127.0.0.1 (an ephemeral port) for the block."""
    served = Site()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            served.asked.append(self.path)
            status, headers, body = served.routes.get(self.path, (404, {}, b"not here"))
            if self.path in served.header_drips:
                self._drip_headers(*served.header_drips[self.path])
                return  # a client that waited this long has given up: nothing more to send
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            pause = served.drips.get(self.path)
            if pause is None:
                self.wfile.write(body)
                return
            for byte in body:
                time.sleep(pause)
                self.wfile.write(bytes([byte]))
                self.wfile.flush()

        def _drip_headers(self, pause: float, padding: int) -> None:
            head = f"HTTP/1.1 200 OK\r\nX-Padding: {'a' * padding}\r\n".encode()
            try:
                for byte in head:
                    time.sleep(pause)
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
            except OSError:  # the client gave up: as it should
                return

        def log_message(self, *args: object) -> None:
            """Quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    served.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield served
    finally:
        server.shutdown()
        server.server_close()
