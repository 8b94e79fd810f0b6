"""Defences against prompt injection: retrieved text is data, and replies leak nothing.

Three layers, each simple enough to reason about:
- `quote_source` drops sentences of a retrieved chunk that address the model ("ignore previous
  instructions", "assistant: reply with ...") and chat-template markers, so a poisoned document
  cannot speak to the model in its own voice. Everything else is passed on, quoted.
- `echoes_prompt` spots a reply that repeats the system prompt, which is then withheld.
- `untappable_commands` keeps a reply from carrying a tappable /command: model output is only
  ever sent as text, and must not become a button an admin could press.
The model never sees other chats, the audit log, ids or the token, so it cannot leak them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
# Chat-template and instruction markers of common model families; a span opened by one (a
# fake "system" turn) goes with it, up to its closing marker or the end of the chunk.
_MARKER = r"<\|[^|>\n]{0,40}\|>"
_TEMPLATE_SPANS = re.compile(
    rf"{_MARKER}.*?(?:{_MARKER}|$)|\[INST\].*?(?:\[/INST\]|$)|<<SYS>>.*?(?:<</SYS>>|$)", re.S
)
_TEMPLATE_MARKERS = re.compile(rf"{_MARKER}|\[/?INST\]|<</?SYS>>|</?s>|#{{3,}}")
# Written for re.VERBOSE patterns, where a literal space would be ignored.
_ADDRESSED = r"assistant|chat\s?bot|(?:large\s+)?language\s+models?|llms?|ai(?:\s+models?)?|gpt|bot"
_ADDRESSES_THE_MODEL = re.compile(
    rf"""(?ix)
    ^\W*(?:system|assistant|user|{_ADDRESSED})\s*:           # a role label opening a line
    | \b(?:note|attention|message|instructions?)\s+(?:to|for)\s+(?:the\s+|all\s+|any\s+)?
      (?:{_ADDRESSED})\b
    | \b(?:attention|hey|dear)\s*,?\s*(?:the\s+)?(?:{_ADDRESSED})\b
    | ^\W*to\s+(?:the\s+|all\s+|any\s+)?(?:{_ADDRESSED})\b            # "To the assistant: ..."
    | \bif\s+you\s+are\s+(?:an?\s+|the\s+)?(?:{_ADDRESSED})\b
    | ^\W*(?:{_ADDRESSED})\s*,                               # "Assistant, do ..."
    | \b(?:ignore|disregard|forget)\s+(?:all\s+|any\s+|the\s+|your\s+)?(?:previous|prior|above|
      earlier|user|question|sources|instructions|rules)\b
    | \b(?:system|developer)\s+(?:prompt|override|message|notice|instructions?)\b
    | \bnew\s+(?:instructions?|task|rules?)\b
    | \bfrom\s+now\s+on\b
    | \byou\s+(?:are\s+now|must\s+(?:answer|reply|say|respond|output|print)|have\s+no\s+rules)\b
    | \byour\s+(?:reply|answer|response|output|instructions|system\s+prompt)\b
    | \b(?:reply|respond|answer)\s+(?:only\s+)?(?:with|in\s+the\s+form)\b
    | \bthe\s+correct\s+answer\s+to\s+(?:any|every|all)\b
    | \bsay\s+['"‘“]
    """
)
_COMMAND = re.compile(r"(^|\s)/(?=[A-Za-z])")
WORD_JOINER = "\u2060"


def quote_source(text: str) -> tuple[str, int]:
    """The chunk without sentences that address the model; (text, sentences dropped)."""
    kept: list[str] = []
    text, dropped = _TEMPLATE_SPANS.subn("\n", text)
    for sentence in _SENTENCE.split(text):
        if _ADDRESSES_THE_MODEL.search(sentence) or _TEMPLATE_MARKERS.search(sentence):
            dropped += 1
        elif sentence.strip():
            kept.append(sentence.strip())
    return " ".join(kept), dropped


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def echoes_prompt(reply: str, prompts: Iterable[str], run: int = 6) -> bool:
    """True when `run` words in a row of any prompt appear in the reply."""
    said = f" {' '.join(_words(reply))} "
    for prompt in prompts:
        words = _words(prompt)
        for start in range(len(words) - run + 1):
            if f" {' '.join(words[start : start + run])} " in said:
                return True
    return False


def untappable_commands(text: str) -> str:
    """Put a word joiner after each command slash, so Telegram shows it as text, not a link."""
    return _COMMAND.sub(lambda m: f"{m.group(1)}/{WORD_JOINER}", text)
