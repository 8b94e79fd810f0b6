"""Ten questions a café customer asks about cafe_faq.md, each with what makes its answer right.

Written as a customer would ask them, not copied from the FAQ's headings. Shared by the café test
(through the bot) and `python -m bench.cafe_chat`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

CAFE_FAQ = Path(__file__).resolve().parents[2] / "knowledge" / "examples" / "cafe_faq.md"


@dataclass(frozen=True)
class Check:
    """Right when the answer has one of `any_of` and none of `none_of` (whole words, any case)."""

    any_of: tuple[str, ...]
    none_of: tuple[str, ...] = ()


CAFE_QUESTIONS: list[tuple[str, Check]] = [
    ("What time do you open on weekdays?", Check(("8 am", "8am", "8:00", "eight"))),
    ("Are you open on Sundays?", Check(("closed", "not open", "no"), ("yes",))),
    ("What's your address?", Check(("12 harbour street",))),
    ("What is the wifi password?", Check(("receipt",))),
    ("Can I bring my dog inside?", Check(("guide dog", "guide dogs"))),
    ("Do you have vegan food?", Check(("lentil", "falafel", "cinnamon", "yes"), ("no", "not"))),
    ("Can I pay with cash?", Check(("not", "no", "doesn't", "cannot"), ("yes",))),
    ("How do I book a table?", Check(("555-0142",))),
    ("Where can I park my car?", Check(("ferry terminal",))),
    ("How much is the car park per hour?", Check(("2 euros", "€2", "2 eur"))),
]


UNANSWERABLE = [
    ("Who founded the Harbour Street Café?", "Dogs",
     "Dogs are welcome on the terrace. Only guide dogs are allowed inside."),
    ("How many seats does the ferry have?", "Timetable",
     "The ferry to Lunholm leaves at noon. Tickets cost 12 crowns."),
    ("What is the name of the chef?", "Vegan food",
     "The lentil soup, the falafel wrap and the oat-milk cinnamon bun are vegan."),
    ("In which year was the lighthouse built?", "Lighthouse",
     "The lighthouse is 40 metres tall and its lamp can be seen from 20 kilometres away."),
]  # fmt: skip
"""(question, title, a source that does not answer it): a grounded adapter should say so."""

NEW_CAFE_QUESTIONS: list[tuple[str, Check]] = [
    ("What time do you close on Saturdays?", Check(("4 pm", "4pm", "4:00", "four"))),
    ("What is the name of the wifi network?", Check(("harbourguest",))),
    ("Is the lentil soup vegan?", Check(("yes", "vegan"), ("no", "not"))),
    ("Can I pay with my phone?", Check(("phone", "yes"), ("cannot", "can't"))),
    ("Can my dog sit with me on the terrace?", Check(("welcome", "yes", "terrace"), ("no",))),
    ("Which number do I call to reserve a table?", Check(("555-0142",))),
    ("How many people do you need to book a table?", Check(("six", "6"))),
    ("What is the café next to?", Check(("ferry terminal",))),
    ("When do you open on Saturday?", Check(("9 am", "9am", "9:00", "nine"))),
    ("Which street is the café on?", Check(("harbour street",))),
]
"""Ten more, not the café test's: asked of grounded adapters, which never trained on this domain."""

REWORDED_CAFE_QUESTIONS: list[tuple[str, Check]] = [
    ("How early can I get a coffee on a Tuesday?", Check(("8 am", "8am", "8:00", "eight"))),
    ("Any chance you're open on a Sunday afternoon?",
     Check(("closed", "not open", "no"), ("yes",))),
    ("Where exactly are you located?", Check(("12 harbour street",))),
    ("I need to get online: how do I find the wifi password?", Check(("receipt",))),
    ("Is it okay to bring my labrador indoors?",
     Check(("guide dog", "guide dogs", "terrace"), ("yes",))),
    ("I don't eat animal products, what can I order?",
     Check(("lentil", "falafel", "cinnamon"))),
    ("Do you accept banknotes and coins?",
     Check(("not", "no", "doesn't", "cannot"), ("yes",))),
    ("We are a group of eight, can we reserve?", Check(("555-0142",))),
    ("Is there somewhere to leave the car nearby?", Check(("ferry terminal",))),
    ("What does parking cost?", Check(("2 euros", "€2", "2 eur"))),
]  # fmt: skip
"""The café test's questions in new wording, written before the reader of issue 37 was built and
never tuned on: what the café test asks since."""


def is_right(answer: str, check: Check) -> bool:
    """Whether `answer` passes `check`."""

    def has(word: str) -> bool:
        return re.search(rf"(?<!\w){re.escape(word)}(?!\w)", answer, re.IGNORECASE) is not None

    return any(map(has, check.any_of)) and not any(map(has, check.none_of))
