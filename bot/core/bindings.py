"""Which collection and which adapter each chat uses, kept in the state database.

A chat bound to nothing searches `global` and answers with the adapter everyone gets. Bindings
are names, not ids: they read well in the state file and survive a reindex. A chat whose
collection is gone (a restored older backup) is refused until an admin binds another: falling
back to `global` would show a group documents it was never meant to see. A chat whose adapter
is gone answers with the default, with a warning in the log: that shows nobody anything new.

Isolation fails closed. When the state cannot say which collection a chat is bound to (the file
unreadable, a read failing), the chat is refused in one sentence, never served from `global`,
unless the knowledge base holds no collection but `global` (then there is nothing else to
show). A binding that cannot be stored is said to the admin, never reported as done. When
Telegram moves a group to a new id (it becomes a supergroup), its bindings move with it.
"""

from __future__ import annotations

import logging
import threading

from bot.core.adapters import AdapterSwitcher
from bot.llm.adapters import AdapterError
from bot.llm.worker import DEFAULT_ADAPTER, AdapterChoice
from bot.state import StateStore, StateUnavailableError
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


UNKNOWN_BINDING = (
    "I cannot tell which knowledge collection this chat uses right now (the bot's state "
    "database cannot be read), so nothing was searched or added; please try again later."
)


class ChatBindings:
    """Binds chats to collections and adapters; answers which ones a chat uses now."""

    def __init__(self, state: StateStore, store: KnowledgeStore, adapters: AdapterSwitcher) -> None:
        self.state = state
        self.store = store  # a connection of its own: read from the chat and admin threads
        self.adapters = adapters
        self._lock = threading.Lock()
        self._moving = threading.Lock()  # Telegram says a move in both chats, maybe at once
        self._unsaved: dict[str, str | None] = {}
        """Facts of a chat move that could not be stored: held here until the next start, so the
        moved group keeps its collection meanwhile."""
        self._pending_moves: dict[int, int] = {}
        """New chat id -> old one, for moves whose bindings could not even be read."""

    def collection(self, chat_id: int | None) -> Collection:
        """The collection a chat searches and its admins' documents go to (default: global);
        CollectionError when the one it is bound to is gone, or when the binding cannot be
        read."""
        name = self._bound_collection(chat_id) if chat_id is not None else None
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

    def _bound_collection(self, chat_id: int) -> str | None:
        """The name of the collection the chat is bound to (None: global), as the state says."""
        try:
            if chat_id in self._pending_moves:
                self.move_chat(self._pending_moves[chat_id], chat_id)
            return self._fact(collection_key(chat_id))
        except CollectionError:
            raise CollectionError(UNKNOWN_BINDING) from None
        except StateUnavailableError as exc:
            with self._lock:
                only_global = [c.id for c in self.store.collections()] == [GLOBAL_COLLECTION]
            if only_global:  # no chat can be bound to anything else: global shows nothing new
                return None
            log.warning("chat %s refused: its binding cannot be read (%s)", chat_id, exc)
            raise CollectionError(UNKNOWN_BINDING) from None

    def bind_collection(self, chat_id: int, collection: Collection) -> None:
        """From now on (and after a restart) the chat searches `collection`; CollectionError
        (nothing changed) when that cannot be stored."""
        self._store_facts(
            {collection_key(chat_id): collection.name},
            f"This chat could not be bound to {collection.name}",
            "it searches what it searched before",
        )

    def adapter_name(self, chat_id: int | None) -> str | None:
        """The adapter bound to this chat (None: it gets the one everyone gets)."""
        if chat_id is None:
            return None
        key = adapter_key(chat_id)
        return self._unsaved[key] if key in self._unsaved else self.state.get_fact(key)

    def bind_adapter(self, chat_id: int, name: str | None) -> None:
        """Give the chat its own adapter (checked against the served model first), or (None)
        let it follow the global default again; CollectionError when that cannot be stored."""
        if name is not None:
            name = self.adapters.resolve(name).name  # AdapterError: nothing is bound
        self._store_facts(
            {adapter_key(chat_id): name},
            "This chat's adapter could not be changed",
            "it answers as it did before",
        )

    def move_chat(self, old_id: int, new_id: int) -> bool:
        """Telegram gave a chat a new id (a group became a supergroup): its collection and
        adapter go with it, unless the new id has its own already. Idempotent (Telegram says it
        in both chats); True when something moved. If the move cannot be stored it is held in
        memory until the next start and CollectionError says so (for the admins' alert)."""
        with self._moving:
            return self._move(old_id, new_id)

    def _move(self, old_id: int, new_id: int) -> bool:
        moved: dict[str, str | None] = {}
        try:
            for fact in (collection_key, adapter_key):
                old, new = fact(old_id), fact(new_id)
                value = self._fact(old)
                if value is not None:
                    if self._fact(new) is None:
                        moved[new] = value
                    moved[old] = None
            if not moved:
                self._pending_moves.pop(new_id, None)
                return False
            self.state.write_facts(moved)
        except StateUnavailableError as exc:
            if not moved:  # not even read: tried again before the new chat's next lookup
                self._pending_moves[new_id] = old_id
                raise CollectionError(
                    f"Chat {old_id} became chat {new_id}, but its bindings could not be read "
                    f"({exc}); the new chat is refused until they can be, then they move."
                ) from None
            self._unsaved.update(moved)
            raise CollectionError(
                f"Chat {old_id} became chat {new_id}, but its bindings could not be moved in "
                f"the state database ({exc}); they are held in memory until the bot restarts."
            ) from None
        for key in moved:
            self._unsaved.pop(key, None)
        self._pending_moves.pop(new_id, None)
        log.info("chat %s is now %s: its bindings moved with it", old_id, new_id)
        return True

    def _fact(self, key: str) -> str | None:
        """A binding fact: one held in memory first, else the state's (strict)."""
        return self._unsaved[key] if key in self._unsaved else self.state.read_fact(key)

    def _store_facts(self, values: dict[str, str | None], failed: str, instead: str) -> None:
        """Store binding facts, or raise CollectionError: "`failed`: why; `instead`." """
        try:
            self.state.write_facts(values)
        except StateUnavailableError as exc:
            raise CollectionError(f"{failed}: {exc}; {instead}.") from None
        for key in values:
            self._unsaved.pop(key, None)

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
