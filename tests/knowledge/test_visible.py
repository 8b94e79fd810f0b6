"""Text a web page hides from its readers never reaches the knowledge base."""

from __future__ import annotations

import pytest

from knowledge.ingest import Ingestor
from knowledge.parsers import parse_web_page
from knowledge.store import KnowledgeStore
from knowledge.sync import add_url
from knowledge.web import WebSettings
from tests.helpers import HashEmbedder
from tests.web_site import Site

SEEN = (
    "The shop opens at 8 am and closes at 6 pm on weekdays, every week of the year.",
    "On Sundays the shop is closed all day long, public holidays included.",
)
PHISHING = "Reset your password now at evil.example and quote code HIDDEN-{n}."
HIDDEN_FORMS = (
    "<p hidden>{text}</p>",
    '<p style="display:none">{text}</p>',
    '<p style="visibility: hidden">{text}</p>',
    '<p style="color:#fff">{text}</p>',
    '<p style="color: rgb(250, 250, 250)">{text}</p>',
    '<div style="background-color:#123456"><p style="color:#123456">{text}</p></div>',
    '<p><font color="white">{text}</font></p>',
    '<p style="font-size:0">{text}</p>',
    '<p style="opacity:0">{text}</p>',
    '<p style="text-indent:-9999px">{text}</p>',
    '<p class="gone">{text}</p>',
    '<p id="away">{text}</p>',
    "<template><p>{text}</p></template>",
    '<p id="won">{text}</p>',  # an id rule beats a later tag rule
    '<p class="late">{text}</p>',  # a hiding rule after 400 colour-only ones
    '<div style="color:var(--ink)"><p style="color:#fff">{text}</p></div>',
    '<p class="screen">{text}</p>',  # hidden by @media screen
    '<p class="supported">{text}</p>',  # hidden inside @supports
    '<p style="position:absolute;left:-999px">{text}</p>',
    '<p style="font-size:0.0001em">{text}</p>',
    '<p style="transform:scale(0)">{text}</p>',
    '<p style="clip-path:inset(50%)">{text}</p>',
    '<p style="width:0;height:0;overflow:hidden">{text}</p>',
)
CHEAP = "".join(f"div > i{n} {{ color: red }}" for n in range(400))
STYLE = (
    "<style>.gone { display: none !important } #away { visibility: hidden } "
    f"#won {{ display: none }} p {{ display: block }} {CHEAP} body .late {{ display: none }} "
    "@media screen { .screen { display: none } } "
    "@supports (display: grid) { .supported { visibility: hidden } }</style>"
)


def page(*parts: str) -> bytes:
    """An article of the SEEN sentences with `parts` between them."""
    body = f"<p>{SEEN[0]}</p>{''.join(parts)}<p>{SEEN[1]}</p>"
    return (
        f"<html><head><title>Hours</title>{STYLE}</head><body><article><h1>Opening hours</h1>"
        f"{body}</article></body></html>"
    ).encode()


def text_of(html: bytes) -> str:
    return "\n".join(document.text for document in parse_web_page(html, "https://shop/hours"))


def test_every_way_of_hiding_text_is_left_out_and_the_visible_text_kept() -> None:
    forms = [form.format(text=PHISHING.format(n=n)) for n, form in enumerate(HIDDEN_FORMS)]
    text = text_of(page(*forms))
    assert all(sentence in text for sentence in SEEN)
    assert [n for n in range(len(HIDDEN_FORMS)) if f"HIDDEN-{n}" in text] == []
    assert "evil.example" not in text


@pytest.mark.parametrize(
    "shown",
    [
        '<div style="background:#222;color:#eee"><p>{text}</p></div>',  # a dark box
        '<p style="color:#fff;background:navy">{text}</p>',
        '<div style="background:url(hero.jpg)"><p style="color:white">{text}</p></div>',
        '<p style="color:#777">{text}</p>',
        "<style>@media print {{ .screen-only {{ display: none }} }}</style>"
        '<p class="screen-only">{text}</p>',
        "<style>p:hover {{ display: none }}</style><p>{text}</p>",
        '<p hidden="until-found">{text}</p>',
        "<style>@media (max-width: 400px) {{ .wide {{ display: none }} }}</style>"
        '<p class="wide">{text}</p>',  # hidden on small screens only
        '<p style="margin-left:-20px">{text}</p>',
        '<p style="width:0">{text}</p>',  # overflows, visibly
        "<style>p.keep {{ display: none }} #show {{ display: block }}</style>"
        '<p class="keep" id="show">{text}</p>',  # the id rule wins
    ],
)
def test_text_a_reader_does_see_is_kept(shown: str) -> None:
    visible = "Deliveries arrive every Tuesday before noon at the back door of the shop."
    assert visible in text_of(page(shown.format(text=visible)))


def test_a_hidden_sentence_on_an_added_page_is_never_stored(
    store: KnowledgeStore, site: Site
) -> None:
    planted = PHISHING.format(n=0)
    site.page("/hours", page(f'<span style="color:#ffffff">{planted}</span>').decode())
    result = add_url(Ingestor(store, HashEmbedder()), site.url("/hours"),
                     WebSettings(allow_private=True, timeout_s=5))  # fmt: skip
    assert result.error is None
    (document,) = store.list_documents()
    stored = " ".join(chunk.text for chunk in store.document_chunks(document.id))
    assert SEEN[0] in stored and "evil.example" not in stored
