"""Fetching one web page for the knowledge base, without becoming a way into the network.

A URL an admin pastes is fetched by the machine the bot runs on, which can often reach what the
internet cannot: the router, a database on localhost, a cloud's metadata service. So every
address a request would go to — the first one and every redirect's — is resolved first, and one
that is loopback, private, link-local (metadata services live there), multicast, reserved or
unspecified is refused unless `allow_private` says otherwise. Only http and https, a bounded
number of redirects, a timeout on every step, and a size cap checked while the body streams.

Known limit: the name is resolved again when httpx connects, so a DNS server that answers
differently the second time (DNS rebinding) is not stopped here; run the bot where private
services need authentication anyway.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import httpx

from knowledge.errors import BadDocumentError

PAGE_TYPES = ("text/html", "application/xhtml+xml", "text/plain")
"""Content types read as pages (anything else is refused in one sentence)."""
USER_AGENT = "ragtune (knowledge-base page fetch)"
GONE = (404, 410)
"""Statuses that mean the page is no more (a sync forgets its document)."""
WHOLE_FETCH_TIMEOUTS = 4
"""A whole fetch, redirects and body, may take this many timeouts (checked between hops and
while the body streams; headers are bounded by the timeout of each wait only)."""


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
    """True for an http(s) URL (what `kb add` and `/add` treat as a page, not a file or text)."""
    parts = urlsplit(text.strip())
    return parts.scheme in ("http", "https") and bool(parts.hostname) and " " not in text.strip()


def _forbidden(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
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
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PageError(f"Only http and https addresses can be added, not {url[:200]!r}.")
    if settings.allow_private or parts.hostname.lower() in settings.trusted_hosts:
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(parts.hostname, port, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError) as exc:
        raise PageError(f"{parts.hostname} cannot be found ({exc}).") from None
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if _forbidden(address):
            raise PageError(
                f"{parts.hostname} is a local or private address ({address}): pages there are "
                "not fetched (RAGTUNE_WEB_ALLOW_PRIVATE=true allows it)."
            )


def fetch_page(url: str, settings: WebSettings) -> Page:
    """GET one page within the limits; PageError (PageGoneError for 404/410) otherwise."""
    # identity: the size cap then counts what is read; a compressed body could expand past it
    # inside one decode call.
    headers = {
        "User-Agent": USER_AGENT,
        "Accept": ", ".join(PAGE_TYPES),
        "Accept-Encoding": "identity",
    }
    timeout = httpx.Timeout(settings.timeout_s)
    # The timeout bounds each wait; this bounds the whole fetch, so a server that drips a byte
    # just inside every timeout cannot hold the caller (an admin's /add, a cron sync) for long.
    deadline = time.monotonic() + settings.timeout_s * WHOLE_FETCH_TIMEOUTS
    with httpx.Client(follow_redirects=False, timeout=timeout, headers=headers) as client:
        for _ in range(settings.max_redirects + 1):
            check_url(url, settings)
            if time.monotonic() > deadline:
                raise PageError(f"{url} took too long: redirects used up the time for the fetch.")
            try:
                with client.stream("GET", url) as response:
                    if response.is_redirect and "location" in response.headers:
                        url = urljoin(url, response.headers["location"])
                        continue
                    return _read(url, response, settings, deadline)
            except httpx.TimeoutException:
                raise PageError(f"{url} did not answer within {settings.timeout_s:g} s.") from None
            except httpx.HTTPError as exc:
                raise PageError(f"{url} could not be fetched ({type(exc).__name__}).") from None
    raise PageError(f"{url} redirected more than {settings.max_redirects} times.")


def _read(url: str, response: httpx.Response, settings: WebSettings, deadline: float) -> Page:
    """The body of a final (non-redirect) response, streamed up to the size cap."""
    if response.status_code in GONE:
        raise PageGoneError(f"{url} does not exist (HTTP {response.status_code}).")
    if response.status_code != 200:
        raise PageError(f"{url} answered HTTP {response.status_code}; nothing was added.")
    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in PAGE_TYPES:
        raise PageError(f"{url} is {content_type or 'of no stated type'}, not a web page.")
    if response.headers.get("content-encoding", "identity").lower() != "identity":
        raise PageError(f"{url} was sent compressed although it was asked not to be.")
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > settings.max_bytes:
        raise PageError(f"{url} is over the {settings.max_bytes / 1e6:.1f} MB limit.")
    body = bytearray()
    for piece in response.iter_raw():
        body += piece
        if len(body) > settings.max_bytes:
            raise PageError(f"{url} is over the {settings.max_bytes / 1e6:.1f} MB limit.")
        if time.monotonic() > deadline:
            whole = settings.timeout_s * WHOLE_FETCH_TIMEOUTS
            raise PageError(f"{url} was sent too slowly (not whole within {whole:g} s).")
    return Page(url, bytes(body), content_type)
