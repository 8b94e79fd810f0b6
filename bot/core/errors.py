"""The one error tree: everything ragtune tells a person in one sentence.

    RagtuneError                    knowledge.errors: the root, in the lowest package
    ├── KnowledgeError              the knowledge base (knowledge.errors has its subclasses)
    │   └── KnowledgeWriteError     (here) a write failed for want of space or permission
    ├── ModelError                  the chat model cannot be used (bot.llm.engine)
    │   ├── AdapterError            an adapter cannot be found, read or applied (bot.llm.adapters)
    │   ├── QueueFullError          every place in the model's queue is taken (bot.llm.worker)
    │   └── TuningError             training data, base model or export (tuning.errors)
    ├── NotAdminError               (here) an admin command from someone not one (audited)
    └── ServeError                  (here) the bot cannot serve, e.g. its webhook port is taken

A front end catches `RagtuneError` and shows its message; it catches a subclass only where it
must act differently (a refused button press is an alert, not a reply). The Telegram layer
imports these names from here, never from the packages that define them.
"""

from __future__ import annotations

from bot.llm.adapters import AdapterError
from bot.llm.engine import ModelError
from bot.llm.worker import QueueFullError
from knowledge.errors import KnowledgeError, RagtuneError

__all__ = [
    "AdapterError",
    "KnowledgeError",
    "KnowledgeWriteError",
    "ModelError",
    "NotAdminError",
    "QueueFullError",
    "RagtuneError",
    "ServeError",
]


class NotAdminError(RagtuneError):
    """The user is not an admin; the attempt was audited."""


class KnowledgeWriteError(KnowledgeError):
    """The knowledge base could not be written (a full disk, a read-only file)."""


class ServeError(RagtuneError):
    """The bot cannot serve (e.g. its webhook port is taken)."""
