"""Questions asked after another one, each marked as a follow-up of it or a question of its own.

Written to decide the follow-up rule by measurement (bot.core.follow_ups), from chats a customer or
a user of a manual would have, before the rule was changed. A follow-up leans on the previous
question for its meaning ("and on Sunday?"); a question of its own reads whole ("I only carry
cash, is that a problem?" after a question about dogs).
"""

from __future__ import annotations

FOLLOW_UPS: list[tuple[str, str, bool]] = [
    # (previous question, question, is it a follow-up?)
    ("When do you open on weekdays?", "and on Sunday?", True),
    ("When do you open on weekdays?", "And Saturdays?", True),
    ("When do you open on weekdays?", "What about Saturday?", True),
    ("When do you open on weekdays?", "how about sundays", True),
    ("Can I bring my dog inside?", "What about on the terrace?", True),
    ("Is there a car park nearby?", "How much does it cost?", True),
    ("Is there a car park nearby?", "Is it open at night?", True),
    ("Who wrote the report?", "When did he write it?", True),
    ("What is the capital of Estonia?", "How many people live there?", True),
    ("Do you have vegan food?", "Which ones?", True),
    ("Do you have vegan food?", "Is it gluten-free too?", True),
    ("Which command shows the loaded models?", "And how do I stop one?", True),
    ("How do I set OLLAMA_HOST on Linux?", "And on Windows?", True),
    ("How do I set OLLAMA_HOST on Linux?", "same for mac?", True),
    ("What did revenue grow by in 2019?", "And in 2018?", True),
    ("What did revenue grow by in 2019?", "Why?", True),
    ("Where is the café?", "How do I get there?", True),
    ("Can I book a table?", "For how many people?", True),
    ("Can I bring my dog inside?", "I only carry cash, is that a problem?", False),
    ("Can I bring my dog inside?", "Do you have vegan food?", False),
    ("When do you open on weekdays?", "Is there wifi?", False),
    ("When do you open on weekdays?", "What is the wifi password?", False),
    ("Is there wifi?", "Where can I park my car?", False),
    ("Where can I park my car?", "That soup was great, is it vegan?", False),
    ("Who led the Panthers in sacks?", "How many points did the Broncos score?", False),
    ("What is the capital of Estonia?", "Is there a ferry to Helsinki from Tallinn?", False),
    ("Which port does the server use?", "How do I unload a model from memory?", False),
    ("Which port does the server use?", "Is it possible to change the context window size?", False),
    ("How do I use a proxy?", "Where are models stored on Linux?", False),
    ("What did revenue grow by in 2019?", "What method did the company use to adopt Topic 606?",
     False),
    ("Can I pay by card?", "Can I book a table for eight people?", False),
    ("Is there parking?", "And is there wifi?", False),
]  # fmt: skip

WRITTEN_AFTER_THE_RULE: list[tuple[str, str, bool]] = [
    ("How much is the car park?", "Per day?", True),
    ("Who is the CEO?", "How long has she been in charge?", True),
    ("What is Topic 606?", "When was it adopted?", True),
    ("Do you sell coffee beans?", "In which sizes?", True),
    ("What time does the ferry leave?", "and the last one?", True),
    ("Where are models stored on macOS?", "How do I move them?", True),
    ("Do you have vegan food?", "What time do you close on Saturdays?", False),
    ("Which port does the server use?", "How do I enable flash attention?", False),
    ("Who scored the first touchdown?", "Which team won Super Bowl 50?", False),
    ("What is the wifi password?", "Can children eat for free?", False),
    ("Is there parking?", "Are dogs allowed on the terrace?", False),
    ("How do I unload a model?", "Where can I see the server logs?", False),
]  # fmt: skip
"""Written once the rule was, and asked of it once, unchanged: how it does on questions it was
not written against."""
