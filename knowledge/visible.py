"""What a reader of a web page can see: hidden text is taken out before the page is indexed.

Text a page hides from its readers (a `hidden` attribute, `display: none`, white on white, a
`<template>`) is still in its HTML, and a bot that indexes it would quote it to users as the
page's word: a planted sentence nobody reviewing the page could see. Styles are read from the
element's own `style`, the page's `<style>` blocks (with tinycss2 and cssselect) and inherited
colours; stylesheets the page links to are not fetched, so text hidden only by those stays.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import cssselect
import tinycss2
from cssselect import ExpressionError, HTMLTranslator, SelectorError
from lxml import etree
from lxml.html import HtmlElement

Color = tuple[float, float, float, float]
"""Red, green, blue (0-255) and alpha (0-1)."""

WHITE: Color = (255.0, 255.0, 255.0, 1.0)
BLACK: Color = (0.0, 0.0, 0.0, 1.0)
NAMED: dict[str, Color] = {
    "transparent": (0.0, 0.0, 0.0, 0.0),
    "white": WHITE,
    "black": BLACK,
    "snow": (255, 250, 250, 1.0),
    "ivory": (255, 255, 240, 1.0),
    "ghostwhite": (248, 248, 255, 1.0),
    "whitesmoke": (245, 245, 245, 1.0),
    "floralwhite": (255, 250, 240, 1.0),
    "azure": (240, 255, 255, 1.0),
    "mintcream": (245, 255, 250, 1.0),
    "seashell": (255, 245, 238, 1.0),
    "linen": (250, 240, 230, 1.0),
    "silver": (192, 192, 192, 1.0),
    "gray": (128, 128, 128, 1.0),
    "grey": (128, 128, 128, 1.0),
    "red": (255, 0, 0, 1.0),
    "green": (0, 128, 0, 1.0),
    "blue": (0, 0, 255, 1.0),
    "yellow": (255, 255, 0, 1.0),
    "navy": (0, 0, 128, 1.0),
}
"""Colour names read here (another name is unknown, and text in it is kept)."""
MIN_CONTRAST = 1.2
"""Text whose colour contrasts less than this with its background is not readable (WCAG's
ratio: 1 is the same colour, 21 black on white; #eee on white is 1.16, #ddd 1.36)."""
OFF_SCREEN_PX = -200.0
"""A text-indent, or the left/top of a positioned element, at least this far back puts text off
the page (image replacement used -9999px; a reader sees nothing that far out)."""
TINY_PX = 1.0
"""Text smaller than this, or a box this narrow or low with its overflow hidden, shows nothing."""
HIDING = {"display": {"none"}, "visibility": {"hidden", "collapse"}}
HIDES = frozenset(
    "display visibility opacity font-size text-indent left top position transform clip-path "
    "clip width height overflow".split()
)
"""Properties that can hide text by themselves."""
READ = HIDES | {"color", "background", "background-color", "background-image"}
"""The properties read here (a rule with none of them is skipped)."""
MAX_QUERIES = 300
"""Selectors other than tag.class#id run per page for colours alone (each is a query over the
whole page, ~2 ms on 10,000 elements). Rules that can hide text are always run: a page whose
hiding rules outrun the parser's CPU limit is refused as a whole, never read with them
skipped."""
SCREEN_MEDIA = re.compile(r"^\s*(only\s+)?(screen|all)?\s*$", re.IGNORECASE)
"""@media queries taken to apply: none, `screen` or `all` (a print or width-dependent rule may
not hold for the reader)."""
_SIMPLE = re.compile(r"^([a-z][a-z0-9-]*)?((?:[.#][\w-]+)*)$")
_NUMBER = re.compile(r"^(-?[\d.]+)(px|em|rem|pt|%)?$")


@dataclass(frozen=True)
class Seen:
    """What an element inherits from its ancestors: the text colour and the background."""

    color: Color | None = BLACK
    """None: a colour not understood here (a variable, hsl(), currentcolor...)."""
    background: Color | None = WHITE
    """None: an image or gradient, whose colour under the text is unknown."""


def drop_hidden(tree: HtmlElement) -> int:
    """Remove from `tree` every element a reader would not see (keeping the text after it);
    return how many were removed."""
    styles = _stylesheet_styles(tree)
    hidden = [
        element
        for element, seen_as in _walk(tree, Seen(), styles)
        if seen_as is None and element.getparent() is not None
    ]
    for element in hidden:
        element.drop_tree()
    return len(hidden)


def _walk(
    element: HtmlElement, parent: Seen, styles: dict[HtmlElement, list[Declared]]
) -> Iterator[tuple[HtmlElement, Seen | None]]:
    """Each element with what it passes on, or None for a hidden one (not walked into)."""
    if not isinstance(element.tag, str):  # comments, processing instructions
        return
    inline = [(important, INLINE, 0, name, value)
              for name, value, important in _declarations(element.get("style", ""))]  # fmt: skip
    style = _cascade(styles.get(element, []) + inline)
    seen = _seen(element, style, parent)
    yield element, seen
    if seen is not None:
        for child in element:
            yield from _walk(child, seen, styles)


def _seen(element: HtmlElement, style: dict[str, str], parent: Seen) -> Seen | None:
    """What `element` passes on to its children, or None when it is not visible."""
    if element.tag == "template" or _hidden_attribute(element):
        return None
    if any(style.get(name) in values for name, values in HIDING.items()):
        return None
    if _number(style.get("opacity", "1")) == 0 or _shrunk(style) or _off_screen(style):
        return None
    background = _background(element, style, parent.background)
    stated = style.get("color") or (element.get("color") if element.tag == "font" else None)
    inherited = not stated or stated in ("inherit", "currentcolor")
    color = parent.color if inherited else _color(stated or "")
    if color is not None and color[3] == 0:
        return None
    if color and background and _contrast(color, background) < MIN_CONTRAST:
        return None
    return Seen(color, background)


def _shrunk(style: dict[str, str]) -> bool:
    """Text made too small to see: a tiny font, a scale of 0, a box clipped to nothing."""
    font = _px(style.get("font-size"))
    if font is not None and font < TINY_PX:
        return True
    transform = style.get("transform", "")
    if re.search(r"scale[xy]?\(\s*0*\.?0+\s*[,)]", transform):
        return True
    clip_path = style.get("clip-path", "")
    inset = re.search(r"inset\(\s*([\d.]+)%", clip_path)
    if (inset and float(inset.group(1)) >= 50) or clip_path.startswith("circle(0"):
        return True
    if re.fullmatch(r"rect\((0(px)?[\s,]*){4}\)", style.get("clip", "")):
        return True
    if style.get("overflow") in ("hidden", "clip"):
        sizes = (_px(style.get("width")), _px(style.get("height")))
        return any(size is not None and size <= TINY_PX for size in sizes)
    return False


def _off_screen(style: dict[str, str]) -> bool:
    """Text pushed off the page: a large negative indent, or a positioned box moved far out."""
    indent = _px(style.get("text-indent"))
    if indent is not None and indent <= OFF_SCREEN_PX:
        return True
    if style.get("position") not in ("absolute", "fixed"):
        return False
    offsets = (_px(style.get("left")), _px(style.get("top")))
    return any(offset is not None and offset <= OFF_SCREEN_PX for offset in offsets)


def _hidden_attribute(element: HtmlElement) -> bool:
    value = element.get("hidden")
    return value is not None and value.strip().lower() != "until-found"


def _background(
    element: HtmlElement, style: dict[str, str], inherited: Color | None
) -> Color | None:
    """The colour behind the element's text (None: unknown)."""
    value = style.get("background-color") or style.get("background") or element.get("bgcolor")
    if value is None:
        return inherited
    if "url(" in value or "gradient(" in value or style.get("background-image", "none") != "none":
        return None
    for token in value.split():
        color = _color(token)
        if color is not None:
            return inherited if color[3] == 0 else color
    return inherited


def _color(value: str) -> Color | None:
    """A CSS colour (hex, rgb()/rgba(), a common name), or None when not understood."""
    text = value.strip().lower()
    if text in NAMED:
        return NAMED[text]
    if text.startswith("#") and len(text) in (4, 5, 7, 9):
        digits = text[1:]
        if len(digits) in (3, 4):
            digits = "".join(c * 2 for c in digits)
        try:
            parts = [int(digits[i : i + 2], 16) for i in range(0, len(digits), 2)]
        except ValueError:
            return None
        alpha = parts[3] / 255 if len(parts) == 4 else 1.0
        return (parts[0], parts[1], parts[2], alpha)
    match = re.fullmatch(r"rgba?\((.*)\)", text)
    if match is None:
        return None
    fields = [f for f in re.split(r"[\s,/]+", match.group(1)) if f]
    if len(fields) not in (3, 4):
        return None
    try:
        channels = [float(f[:-1]) * 2.55 if f.endswith("%") else float(f) for f in fields[:3]]
        alpha = 1.0
        if len(fields) == 4:
            alpha = float(fields[3][:-1]) / 100 if fields[3].endswith("%") else float(fields[3])
    except ValueError:
        return None
    return (channels[0], channels[1], channels[2], alpha)


def _contrast(first: Color, second: Color) -> float:
    """WCAG's contrast ratio of two colours (alpha ignored: a faint colour is judged as drawn)."""
    lighter, darker = sorted((_luminance(first), _luminance(second)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def _luminance(color: Color) -> float:
    def linear(channel: float) -> float:
        c = min(max(channel, 0.0), 255.0) / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    red, green, blue, _ = color
    return 0.2126 * linear(red) + 0.7152 * linear(green) + 0.0722 * linear(blue)


def _number(value: str) -> float | None:
    match = _NUMBER.match(value.strip().lower())
    return float(match.group(1)) if match else None


def _px(value: str | None) -> float | None:
    """A length in pixels where it can be told (em and rem as 16 px; % only when 0)."""
    if value is None:
        return None
    match = _NUMBER.match(value.strip().lower().removesuffix("!important").strip())
    if match is None:
        return None
    number, unit = float(match.group(1)), match.group(2) or "px"
    scale = {"px": 1.0, "pt": 4 / 3, "em": 16.0, "rem": 16.0}.get(unit)
    if scale is None:
        return 0.0 if number == 0 else None
    return number * scale


Specificity = tuple[int, int, int, int]
"""(inline, ids, classes, tags), compared as CSS compares them."""
INLINE: Specificity = (1, 0, 0, 0)
Declared = tuple[bool, Specificity, int, str, str]
"""One declaration for an element: (!important, specificity, source order, name, value)."""


def _declarations(css: str) -> list[tuple[str, str, bool]]:
    """(name, value, !important) of a declaration list, names and values lower case."""
    found = []
    for item in tinycss2.parse_declaration_list(css, skip_comments=True, skip_whitespace=True):
        if item.type == "declaration" and item.lower_name in READ:
            value = tinycss2.serialize(item.value).strip().lower()
            found.append((item.lower_name, value, bool(item.important)))
    return found


def _cascade(declared: list[Declared]) -> dict[str, str]:
    """Each property's winning value: !important first, then specificity, then the later."""
    won: dict[str, tuple[tuple[bool, Specificity, int], str]] = {}
    for important, specificity, order, name, value in declared:
        rank = (important, specificity, order)
        if name not in won or rank >= won[name][0]:
            won[name] = (rank, value)
    return {name: value for name, (_, value) in won.items()}


def _stylesheet_styles(tree: HtmlElement) -> dict[HtmlElement, list[Declared]]:
    """The declarations the page's own `<style>` blocks give each element, in source order
    (rules in @media for print or for some screen sizes only are left out: they may not apply
    to the reader; @supports and @layer blocks are read)."""
    styles: dict[HtmlElement, list[Declared]] = {}
    index = _Index(tree)
    order = 0
    for block in tree.iter("style"):
        for rule in _rules(tinycss2.parse_stylesheet(block.text or "", skip_comments=True,
                                                    skip_whitespace=True)):  # fmt: skip
            declarations = _declarations(tinycss2.serialize(rule.content))
            if not declarations:
                continue
            hides = any(name in HIDES for name, _, _ in declarations)
            for element, specificity in index.select(tinycss2.serialize(rule.prelude), hides):
                order += 1
                styles.setdefault(element, []).extend(
                    (important, specificity, order, name, value)
                    for name, value, important in declarations
                )
    return styles


def _rules(nodes: list[Any]) -> Iterator[Any]:
    """The qualified rules of a stylesheet, those inside the at-rules that apply included."""
    for node in nodes:
        if node.type == "qualified-rule":
            yield node
        elif node.type == "at-rule" and node.content is not None:
            keyword = node.lower_at_keyword
            query = tinycss2.serialize(node.prelude)
            if keyword in ("supports", "layer") or (
                keyword == "media" and SCREEN_MEDIA.match(query)
            ):
                yield from _rules(tinycss2.parse_rule_list(node.content, skip_comments=True,
                                                           skip_whitespace=True))  # fmt: skip


class _Index:
    """The page's elements by tag, class and id, for the selectors most stylesheets use."""

    def __init__(self, tree: HtmlElement) -> None:
        self.tree = tree
        self.by_tag: dict[str, list[HtmlElement]] = {}
        self.by_class: dict[str, list[HtmlElement]] = {}
        self.by_id: dict[str, list[HtmlElement]] = {}
        for element in tree.iter():
            if not isinstance(element.tag, str):
                continue
            self.by_tag.setdefault(element.tag, []).append(element)
            for name in (element.get("class") or "").split():
                self.by_class.setdefault(name, []).append(element)
            if element.get("id"):
                self.by_id.setdefault(element.get("id"), []).append(element)
        self.queries = 0
        self.translator = HTMLTranslator()

    def select(self, selectors: str, hides: bool) -> list[tuple[HtmlElement, Specificity]]:
        """The elements a selector list matches, each with the specificity of the selector
        that matched it ([] for one that cannot be run here)."""
        parts = [part.strip() for part in selectors.split(",")]
        simple = [_SIMPLE.match(part) for part in parts]
        if "[" not in selectors and "(" not in selectors and ":" not in selectors and all(simple):
            return [hit for match in simple if match for hit in self._simple(match)]
        try:
            parsed = cssselect.parse(selectors)
        except SelectorError:
            return []
        found = []
        for selector in parsed:
            if not hides and self.queries >= MAX_QUERIES:
                break
            self.queries += 1
            try:
                xpath = self.translator.selector_to_xpath(selector)
                matched = self.tree.xpath(xpath)
            except (ExpressionError, etree.XPathError):
                continue  # :hover, ::before and the like: not what a reader sees at rest
            specificity = (0, *selector.specificity())
            found += [(element, specificity) for element in matched]
        return found

    def _simple(self, match: re.Match[str]) -> list[tuple[HtmlElement, Specificity]]:
        tag, rest = match.group(1), match.group(2)
        parts = re.findall(r"[.#][\w-]+", rest)
        if not tag and not parts:
            return []
        first = parts[0] if parts else None
        if first is None:
            candidates = self.by_tag.get(tag or "", [])
        elif first.startswith("."):
            candidates = self.by_class.get(first[1:], [])
        else:
            candidates = self.by_id.get(first[1:], [])
        ids = sum(part.startswith("#") for part in parts)
        specificity = (0, ids, len(parts) - ids, 1 if tag else 0)
        return [(e, specificity) for e in candidates if _matches(e, tag, parts)]


def _matches(element: HtmlElement, tag: str | None, parts: list[str]) -> bool:
    if tag and element.tag != tag:
        return False
    names = set((element.get("class") or "").split())
    for part in parts:
        if part.startswith(".") and part[1:] not in names:
            return False
        if part.startswith("#") and element.get("id") != part[1:]:
            return False
    return True
