"""Ten questions about a real document nobody on the project wrote (Ollama's FAQ, MIT).

Written before the reader was changed, as a user of that project would ask them, not copied from
the FAQ's headings; never used to tune anything. Shared by the third-party test and
`python -m bench.third_party`.
"""

from __future__ import annotations

from pathlib import Path

from tests.bot.cafe_questions import Check

OLLAMA_FAQ = Path(__file__).resolve().parents[1] / "documents" / "ollama_faq.mdx"

OLLAMA_QUESTIONS: list[tuple[str, Check]] = [
    ("How do I make the context window bigger for every model?",
     Check(("OLLAMA_CONTEXT_LENGTH",))),
    ("What is the default context size?", Check(("4096", "4,096", "4k"))),
    ("Which command shows the models that are loaded in memory right now?",
     Check(("ollama ps",))),
    ("Which port does the server listen on by default?", Check(("11434",))),
    ("Which environment variable changes the folder where models are saved?",
     Check(("OLLAMA_MODELS",))),
    ("How long does a model stay loaded after I use it?", Check(("5 minutes", "five minutes"))),
    ("How can I unload a model immediately from the command line?", Check(("ollama stop",))),
    ("Which variable should I set to go through my company's proxy?",
     Check(("HTTPS_PROXY",))),
    ("How many requests will the server queue before it starts rejecting them?",
     Check(("512",))),
    ("How do I force flash attention on?", Check(("OLLAMA_FLASH_ATTENTION",))),
]  # fmt: skip
