"""Web pages in the knowledge base: fetched within limits, refused where they must be, re-synced.

Pages are served on 127.0.0.1 by a real HTTP server in a thread; the fetches go through httpx.
"""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest

from knowledge.ingest import Ingestor, Outcome
from knowledge.store import KnowledgeStore
from knowledge.sync import add_url, sync_pages
from knowledge.web import PageError, WebSettings, fetch_page, is_web_address
from tests.helpers import HashEmbedder
from tests.web_site import Site

HOURS = """<html><head><title>Opening hours</title></head><body>
<nav><a href="/">Home</a> | <a href="/menu">Menu</a> | <a href="/jobs">Jobs</a></nav>
<article><h1>Opening hours</h1>
<p>The café opens at 8 am and closes at 6 pm from Monday to Friday, all year round.</p>
<p>On Saturdays it opens at 9 am and closes at 4 pm; on Sundays it is closed all day.</p>
</article><footer>Copyright 2026 Café Example. All rights reserved.</footer></body></html>"""


OPEN = WebSettings(allow_private=True, timeout_s=5)
"""The tests' server is on 127.0.0.1: allowed explicitly, as RAGTUNE_WEB_ALLOW_PRIVATE does."""


def _ingestor(store: KnowledgeStore) -> Ingestor:
    return Ingestor(store, HashEmbedder(), chunk_chars=300, overlap_chars=0)


def test_a_page_is_added_with_its_main_text_and_its_address_as_source(
    store: KnowledgeStore, site: Site
) -> None:
    site.page("/hours", HOURS)
    result = add_url(_ingestor(store), site.url("/hours"), OPEN, added_by="cli")
    assert result.outcome is Outcome.ADDED, result.error
    (document,) = store.list_documents()
    assert document.title == "Opening hours"
    assert document.source == document.external_id == site.url("/hours")
    text = " ".join(c.text for c in store.document_chunks(document.id))
    assert "closes at 6 pm from Monday to Friday" in text and "Sundays it is closed" in text
    assert "Copyright" not in text and "Jobs" not in text  # the main text, not the page's frame


def test_a_changed_page_is_replaced_an_unchanged_one_kept_and_a_gone_one_forgotten(
    store: KnowledgeStore, site: Site
) -> None:
    site.page("/hours", HOURS)
    site.page("/menu", "<html><head><title>Menu</title></head><body><article><p>"
              "Espresso costs 2 euros and a croissant costs 3 euros at the counter.</p>"
              "</article></body></html>")  # fmt: skip
    site.page("/notes.txt", "Deliveries arrive on Tuesdays before noon.", "text/plain")
    ingestor = _ingestor(store)
    for path in ("/hours", "/menu", "/notes.txt"):
        assert add_url(ingestor, site.url(path), OPEN).outcome is Outcome.ADDED
    site.page("/hours", HOURS.replace("6 pm", "7 pm"))
    del site.routes["/menu"]  # now a 404
    embedder = HashEmbedder()
    ingestor = Ingestor(store, embedder, chunk_chars=300, overlap_chars=0)
    dry = sync_pages(ingestor, OPEN, dry_run=True)
    report = sync_pages(ingestor, OPEN)
    assert dry.counts() == report.counts()
    counts = report.counts()
    assert (counts["replaced"], counts["unchanged"], counts["forgotten"]) == (1, 1, 1)
    assert [d.title for d in report.forgotten] == ["Menu"]
    assert sorted(d.title for d in store.list_documents()) == ["Opening hours", "notes"]
    hours = store.find_document(site.url("/hours"))
    assert hours is not None
    assert "closes at 7 pm" in " ".join(c.text for c in store.document_chunks(hours.id))
    assert embedder.embedded == counts["chunks_embedded"] >= 1


def test_a_page_that_fails_now_keeps_its_stored_version(store: KnowledgeStore, site: Site) -> None:
    site.page("/hours", HOURS)
    add_url(_ingestor(store), site.url("/hours"), OPEN)
    site.routes["/hours"] = (500, {}, b"oops")
    report = sync_pages(_ingestor(store), OPEN)
    assert report.counts()["failed"] == 1 and report.forgotten == []
    assert "HTTP 500" in (report.ingest.failures[0].error or "")
    assert len(store.list_documents()) == 1


def test_loopback_private_link_local_and_metadata_addresses_are_refused_by_default(
    site: Site,
) -> None:
    site.page("/hours", HOURS)
    closed = WebSettings(timeout_s=5)
    for url in (
        site.url("/hours"),
        site.url("/hours", host="localhost"),
        "http://10.1.2.3/",
        "http://192.168.0.1/admin",
        "http://169.254.169.254/latest/meta-data/",  # cloud metadata
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://0.0.0.0/",
    ):
        with pytest.raises(PageError, match="local or private address"):
            fetch_page(url, closed)
    for url in ("file:///etc/passwd", "ftp://example.com/x", "gopher://127.0.0.1/"):
        with pytest.raises(PageError, match="Only http and https"):
            fetch_page(url, closed)
    assert site.asked == []  # nothing reached the server


def test_a_redirect_to_a_private_address_is_refused_before_it_is_followed(site: Site) -> None:
    """A trusted host (as an intranet wiki would be) redirects to a host that is not trusted."""
    site.page("/secret", "<html><body><p>The router's admin password is hunter2.</p></body></html>")
    site.routes["/moved"] = (302, {"Location": site.url("/secret")}, b"")
    trusted = WebSettings(timeout_s=5, trusted_hosts=frozenset({"localhost"}))
    with pytest.raises(PageError, match=r"127\.0\.0\.1 is a local or private address"):
        fetch_page(site.url("/moved", host="localhost"), trusted)
    assert site.asked == ["/moved"]  # the redirect was read, its target never asked


def test_limits_size_redirects_and_types(site: Site) -> None:
    site.routes["/big"] = (200, {"Content-Type": "text/html"}, b"<p>" + b"x" * 5000 + b"</p>")
    site.routes["/loop"] = (302, {"Location": "/loop"}, b"")
    site.routes["/image"] = (200, {"Content-Type": "image/png"}, b"\x89PNG")
    small = WebSettings(allow_private=True, timeout_s=5, max_bytes=1000, max_redirects=3)
    with pytest.raises(PageError, match=r"over the 0\.0 MB limit"):
        fetch_page(site.url("/big"), small)
    with pytest.raises(PageError, match="redirected more than 3 times"):
        fetch_page(site.url("/loop"), small)
    with pytest.raises(PageError, match="is image/png, not a web page"):
        fetch_page(site.url("/image"), small)
    assert site.asked.count("/loop") == 4


def test_a_page_sent_too_slowly_is_refused_within_the_whole_fetch_deadline(site: Site) -> None:
    site.page("/drip", "<html><body><p>" + "slow " * 20 + "</p></body></html>")
    site.drips["/drip"] = 0.05  # every byte well inside the 0.4 s timeout; the page takes 6 s
    started = time.monotonic()
    with pytest.raises(PageError, match="was sent too slowly"):
        fetch_page(site.url("/drip"), WebSettings(allow_private=True, timeout_s=0.4))
    assert time.monotonic() - started < 3  # 4 timeouts = 1.6 s, and the byte in hand


def test_headers_sent_a_byte_at_a_time_are_cut_off_at_the_whole_fetch_deadline(
    site: Site,
) -> None:
    site.page("/slow-head", "<html><body><p>never read</p></body></html>")
    # 0.05 s a byte, each well inside the 0.4 s timeout: 430 bytes of headers would take 21 s.
    site.header_drips["/slow-head"] = (0.05, 400)
    started = time.monotonic()
    with pytest.raises(PageError, match=r"took too long: not whole within 1\.6 s"):
        fetch_page(site.url("/slow-head"), WebSettings(allow_private=True, timeout_s=0.4))
    assert time.monotonic() - started < 2.5  # 4 timeouts = 1.6 s, whatever the server does


def test_malformed_addresses_and_tunnels_to_local_ones_are_refused_in_one_sentence() -> None:
    closed = WebSettings(timeout_s=5)
    for url in ("http://[", "http://[::1", "http://example.com:99999/"):
        assert is_web_address(url)
        with pytest.raises(PageError, match="is not a valid web address"):
            fetch_page(url, closed)
    for url in (
        "http://[2002:7f00:1::]/",  # 6to4 of 127.0.0.1
        "http://[2002:a9fe:a9fe::]/",  # 6to4 of 169.254.169.254, the metadata service
        "http://[64:ff9b::7f00:1]/",  # NAT64 of 127.0.0.1
        "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/",  # Teredo, its client 127.0.0.1
    ):
        with pytest.raises(PageError, match="local or private address"):
            fetch_page(url, closed)


def test_a_name_that_resolves_elsewhere_when_connecting_is_refused(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: the check sees a public address, the connection would get 127.0.0.1."""
    site.page("/secret", "<html><body><p>The router's admin password is hunter2.</p></body></html>")
    answers = iter(["93.184.216.34", "127.0.0.1", "127.0.0.1"])

    def rebinding(host: str, port: object, *args: object, **kwargs: object) -> list[Any]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)  # a DNS server that lies the second time
    with pytest.raises(PageError, match=r"local or private address \(127\.0\.0\.1\)"):
        fetch_page(site.url("/secret", host="rebind.example"), WebSettings(timeout_s=5))
    assert site.asked == []


def test_what_counts_as_a_web_address() -> None:
    assert is_web_address("https://example.com/faq") and is_web_address("http://wiki.local:8080/")
    for text in ("example.com", "docs/faq.md", "https://", "see https://example.com for more"):
        assert not is_web_address(text)
