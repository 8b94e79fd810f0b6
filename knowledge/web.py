"""Fetching one web page for the knowledge base, without becoming a way into the network.

A URL an admin pastes is fetched by the machine the bot runs on, which can often reach what the
internet cannot: the router, a database on localhost, a cloud's metadata service. So every
address a request would go to — the first one and every redirect's — is resolved first, and one
that is loopback, private, link-local (metadata services live there), multicast, reserved or
unspecified is refused unless `allow_private` says otherwise. Only http and https, a bounded
number of redirects, a timeout on every wait and a deadline on the whole fetch (headers
included), and a size cap checked while the body streams.

Every connection goes to an address checked at the moment it is made, so a DNS server that
answers differently the second time (DNS rebinding) gets nowhere. Known limits: name resolution
itself (the system resolver's own timeouts) is not cut by the deadline, and HTTP(S)_PROXY is
not used (a proxy would resolve names where they cannot be checked).
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpcore
import httpx

from knowledge.errors import BadDocumentError

PAGE_TYPES = ("text/html", "application/xhtml+xml", "text/plain")
"""Content types read as pages (anything else is refused in one sentence)."""
USER_AGENT = "ragtune (knowledge-base page fetch)"
GONE = (404, 410)
"""Statuses that mean the page is no more (a sync forgets its document)."""
WHOLE_FETCH_TIMEOUTS = 4
"""A whole fetch (connects, headers, redirects and body) may take this many timeouts: every
wait on the network ends at that deadline at the latest."""


class PageError(BadDocumentError):
    """A page cannot be fetched or is refused; the message is one sentence."""


class PageGoneError(PageError):
    """The server says the page does not exist (404 or 410)."""


@dataclass(frozen=True)
class WebSettings:
    """Limits of a page fetch (RAGTUNE_WEB_* and RAGTUNE_MAX_DOCUMENT_BYTES)."""

    timeout_s: float = 15.0
    max_bytes: int = 20_000_000
    max_redirects: int = 5
    allow_private: bool = False
    """Allow loopback, private and link-local addresses (tests serve pages from 127.0.0.1)."""
    trusted_hosts: frozenset[str] = frozenset()
    """Host names fetched whatever they resolve to (an intranet wiki); a redirect from one to
    another host is checked like any address."""


@dataclass(frozen=True)
class Page:
    """A fetched page: where it ended up, its body and its content type."""

    url: str
    body: bytes
    content_type: str


def is_web_address(text: str) -> bool:
    """True for what `kb add` and `/add` treat as a page, not a file or text: one word that
    begins with http:// or https:// and names a host. A malformed one ("http://[") counts too,
    so that the fetch refuses it in one sentence (after the admin check), never a traceback."""
    word = text.strip()
    if not word.lower().startswith(("http://", "https://")) or any(c.isspace() for c in word):
        return False
    try:
        return bool(urlsplit(word).hostname)
    except ValueError:  # an unclosed IPv6 bracket: malformed, but meant as an address
        return True


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one leads to (mapped, or 6to4's `2002::/16`), if any. (NAT64's
    `64:ff9b::/96` and Teredo's `2001::/32` are not global to `ipaddress`: refused as they are.)"""
    return address.ipv4_mapped or address.sixtofour


def _forbidden(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and (inner := embedded_ipv4(address)):
        if _forbidden(inner):
            return True
        if address.ipv4_mapped is not None:
            return False
    return (
        not address.is_global
        or address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


def check_url(url: str, settings: WebSettings) -> None:
    """Refuse a URL that is not http(s), or whose host resolves to an address not allowed."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:  # "Invalid IPv6 URL", "Port out of range 0-65535"
        raise PageError(f"{url[:200]!r} is not a valid web address ({exc}).") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PageError(f"Only http and https addresses can be added, not {url[:200]!r}.")
    allowed_addresses(parts.hostname, port, settings)


def allowed_addresses(host: str, port: int, settings: WebSettings) -> list[str]:
    """The addresses `host` resolves to, all of them allowed (else PageError), or `[host]`
    itself where every address is allowed (RAGTUNE_WEB_ALLOW_PRIVATE, a trusted host)."""
    if settings.allow_private or host.lower() in settings.trusted_hosts:
        return [host]
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError) as exc:
        raise PageError(f"{host} cannot be found ({exc}).") from None
    addresses = [str(info[4][0]).split("%")[0] for info in infos]
    for text in addresses:
        address = ipaddress.ip_address(text)
        if _forbidden(address):
            raise PageError(
                f"{host} is a local or private address ({address}): pages there are not "
                "fetched (RAGTUNE_WEB_ALLOW_PRIVATE=true allows it)."
            )
    return addresses


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every wait ends at the fetch's deadline at the latest."""

    def __init__(self, stream: httpcore.NetworkStream, deadline: float) -> None:
        self.stream = stream
        self.deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self.stream.read(max_bytes, _left(self.deadline, timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.stream.write(buffer, _left(self.deadline, timeout))

    def close(self) -> None:
        self.stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        wrapped = self.stream.start_tls(ssl_context, server_hostname, _left(self.deadline, timeout))
        return _DeadlineStream(wrapped, self.deadline)

    def get_extra_info(self, info: str) -> Any:
        return self.stream.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's own sockets, each wait cut to the time left before `deadline`: a server
    that drips its headers (or its TLS handshake) a byte inside every timeout cannot stretch
    the fetch past it, as it could when only each wait was bounded. Each connection goes to an
    address checked here, at connect time: a name that resolved to a public address for the
    check and to a private one for the connection (DNS rebinding) is refused."""

    def __init__(self, deadline: float, settings: WebSettings) -> None:
        self.deadline = deadline
        self.settings = settings
        self.sockets = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        address = allowed_addresses(host, port, self.settings)[0]
        stream = self.sockets.connect_tcp(
            address, port, _left(self.deadline, timeout), local_address, socket_options
        )
        return _DeadlineStream(stream, self.deadline)


def _left(deadline: float, timeout: float | None) -> float:
    """The time this wait may take: its own timeout, or less if the deadline is nearer."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise httpcore.ReadTimeout("the whole fetch took too long")
    return left if timeout is None else min(timeout, left)


def fetch_page(url: str, settings: WebSettings) -> Page:
    """GET one page within the limits; PageError (PageGoneError for 404/410) otherwise.

    The timeout bounds each wait; a deadline of WHOLE_FETCH_TIMEOUTS of them bounds the whole
    fetch, connects, headers, redirects and body together, so a server that drips a byte just
    inside every timeout cannot hold the caller (an admin's /add, a cron sync) for long.
    """
    # identity: the size cap then counts what is read; a compressed body could expand past it
    # inside one decode call.
    headers = [
        (b"User-Agent", USER_AGENT.encode()),
        (b"Accept", ", ".join(PAGE_TYPES).encode()),
        (b"Accept-Encoding", b"identity"),
    ]
    waits = {"connect": settings.timeout_s, "read": settings.timeout_s,
             "write": settings.timeout_s, "pool": settings.timeout_s}  # fmt: skip
    whole = settings.timeout_s * WHOLE_FETCH_TIMEOUTS
    deadline = time.monotonic() + whole
    backend = _DeadlineBackend(deadline, settings)
    with httpcore.ConnectionPool(network_backend=backend, retries=0) as pool:
        for _ in range(settings.max_redirects + 1):
            check_url(url, settings)
            target, host = _request_url(url)
            try:
                with pool.stream(
                    "GET", target, headers=[(b"Host", host), *headers],
                    extensions={"timeout": waits},
                ) as response:  # fmt: skip
                    location = _header(response, "location")
                    if response.status in REDIRECTS and location:
                        url = urljoin(url, location)
                        continue
                    return _read(url, response, settings, deadline)
            except httpcore.TimeoutException:
                if time.monotonic() >= deadline:  # the last wait was cut to the deadline
                    raise PageError(f"{url} took too long: not whole within {whole:g} s.") from None
                raise PageError(f"{url} did not answer within {settings.timeout_s:g} s.") from None
            except FETCH_ERRORS as exc:
                raise PageError(f"{url} could not be fetched ({type(exc).__name__}).") from None
    raise PageError(f"{url} redirected more than {settings.max_redirects} times.")


REDIRECTS = (301, 302, 303, 307, 308)
FETCH_ERRORS = (
    httpcore.NetworkError,
    httpcore.ProtocolError,
    httpcore.ProxyError,
    httpcore.UnsupportedProtocol,
)


def _request_url(url: str) -> tuple[httpcore.URL, bytes]:
    """`url` as httpcore sends it (httpx's parser: IDNA host names, percent-encoded path) and
    its Host header (an IPv6 address in brackets, which httpcore would leave out)."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError) as exc:
        raise PageError(
            f"{url[:200]!r} is not a web address that can be fetched ({exc})."
        ) from None
    target = httpcore.URL(
        scheme=parsed.raw_scheme, host=parsed.raw_host, port=parsed.port, target=parsed.raw_path
    )
    return target, parsed.netloc


def _header(response: httpcore.Response, name: str) -> str:
    """A response header's value ("" if absent), decoded as Latin-1 like HTTP's own bytes."""
    wanted = name.encode().lower()
    for key, value in response.headers:
        if key.lower() == wanted:
            return value.decode("latin-1").strip()
    return ""


def _read(url: str, response: httpcore.Response, settings: WebSettings, deadline: float) -> Page:
    """The body of a final (non-redirect) response, streamed up to the size cap."""
    if response.status in GONE:
        raise PageGoneError(f"{url} does not exist (HTTP {response.status}).")
    if response.status != 200:
        raise PageError(f"{url} answered HTTP {response.status}; nothing was added.")
    content_type = _header(response, "content-type").split(";")[0].strip().lower()
    if content_type not in PAGE_TYPES:
        raise PageError(f"{url} is {content_type or 'of no stated type'}, not a web page.")
    if (_header(response, "content-encoding") or "identity").lower() != "identity":
        raise PageError(f"{url} was sent compressed although it was asked not to be.")
    declared = _header(response, "content-length")
    if declared.isdigit() and int(declared) > settings.max_bytes:
        raise PageError(f"{url} is over the {settings.max_bytes / 1e6:.1f} MB limit.")
    body = bytearray()
    try:
        for piece in response.iter_stream():
            body += piece
            if len(body) > settings.max_bytes:
                raise PageError(f"{url} is over the {settings.max_bytes / 1e6:.1f} MB limit.")
    except httpcore.TimeoutException:
        if time.monotonic() < deadline:
            raise  # one wait ran out: the server stopped sending
        whole = settings.timeout_s * WHOLE_FETCH_TIMEOUTS
        raise PageError(f"{url} was sent too slowly (not whole within {whole:g} s).") from None
    return Page(url, bytes(body), content_type)
