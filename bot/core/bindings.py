"""Which collection and which adapter each chat uses, kept in the state database.

A chat bound to nothing searches `global` and answers with the adapter everyone gets. Bindings
are names, not ids: they read well in the state file and survive a reindex. A binding whose
collection or adapter is gone falls back to the defaults, with a warning in the log, so a chat
never fails because an admin cleaned up.
"""

from __future__ import annotations

import logging
import threading

from bot.core.adapters import AdapterSwitcher
from bot.llm.adapters import AdapterError
from bot.llm.worker import DEFAULT_ADAPTER, AdapterChoice
from bot.state import StateStore
from knowledge.migrations import GLOBAL_COLLECTION
from knowledge.store import Collection, KnowledgeStore

log = logging.getLogger(__name__)


def collection_key(chat_id: int) -> str:
    """The state fact naming a chat's collection."""
    return f"chat_collection:{chat_id}"


def adapter_key(chat_id: int) -> str:
    """The state fact naming a chat's own adapter."""
    return f"chat_adapter:{chat_id}"


class ChatBindings:
    """Binds chats to collections and adapters; answers which ones a chat uses now."""

    def __init__(self, state: StateStore, store: KnowledgeStore, adapters: AdapterSwitcher) -> None:
        self.state = state
        self.store = store  # a connection of its own: read from the chat and admin threads
        self.adapters = adapters
        self._lock = threading.Lock()

    def collection(self, chat_id: int | None) -> Collection:
        """The collection a chat searches and its admins' documents go to (default: global)."""
        name = self.state.get_fact(collection_key(chat_id)) if chat_id is not None else None
        with self._lock:
            found = self.store.find_collection(name) if name is not None else None
            if found is None and name is not None:
                log.warning("chat %s was bound to collection %s, which is gone", chat_id, name)
            return found or self.store.collection_by_id(GLOBAL_COLLECTION)

    def create_collection(self, name: str) -> Collection:
        """A new, empty collection (CollectionError if the name is taken or not valid)."""
        with self._lock:
            return self.store.create_collection(name)

    def find_collection(self, name: str) -> Collection:
        """The existing collection `name` (CollectionError naming the ones there are)."""
        with self._lock:
            return self.store.collection(name)

    def bind_collection(self, chat_id: int, collection: Collection) -> None:
        """From now on (and after a restart) the chat searches `collection`."""
        self.state.set_fact(collection_key(chat_id), collection.name)

    def adapter_name(self, chat_id: int | None) -> str | None:
        """The adapter bound to this chat (None: it gets the one everyone gets)."""
        return self.state.get_fact(adapter_key(chat_id)) if chat_id is not None else None

    def bind_adapter(self, chat_id: int, name: str | None) -> None:
        """Give the chat its own adapter (checked against the served model first), or (None)
        let it follow the global default again."""
        if name is not None:
            name = self.adapters.resolve(name).name  # AdapterError: nothing is bound
        self.state.set_fact(adapter_key(chat_id), name)

    def adapter(self, chat_id: int | None) -> AdapterChoice:
        """What the chat's answers run with: its own adapter, or the default everyone gets."""
        name = self.adapter_name(chat_id)
        if name is None:
            return DEFAULT_ADAPTER
        try:
            return self.adapters.resolve(name).path
        except AdapterError as exc:  # removed, or no longer fits the model: the default, said
            log.warning("chat %s's adapter %s cannot be used (%s); using the default", chat_id,
                        name, exc)  # fmt: skip
            return DEFAULT_ADAPTER
