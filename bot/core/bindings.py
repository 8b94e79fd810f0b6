"""Which collection and which adapter each chat uses, kept in the state database.

A chat bound to nothing searches `global` and answers with the adapter everyone gets. Bindings
are names, not ids: they read well in the state file and survive a reindex. A chat whose
collection is gone (a restored older backup) is refused until an admin binds another: falling
back to `global` would show a group documents it was never meant to see. A chat whose adapter
is gone answers with the default, with a warning in the log: that shows nobody anything new.
"""

from __future__ import annotations

import logging
import threading

from bot.core.adapters import AdapterSwitcher
from bot.llm.adapters import AdapterError
from bot.llm.worker import DEFAULT_ADAPTER, AdapterChoice
from bot.state import StateStore
from knowledge.errors import CollectionError
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
        """The collection a chat searches and its admins' documents go to (default: global);
        CollectionError when the one it is bound to is gone."""
        name = self.state.get_fact(collection_key(chat_id)) if chat_id is not None else None
        with self._lock:
            if name is None:
                return self.store.collection_by_id(GLOBAL_COLLECTION)
            found = self.store.find_collection(name)
        if found is None:
            log.warning("chat %s is bound to collection %s, which is gone", chat_id, name)
            raise CollectionError(
                f"This chat's knowledge collection {name!r} no longer exists; an admin can "
                "bind another with /kb use NAME or /kb new NAME."
            )
        return found

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
