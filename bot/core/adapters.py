"""Switching LoRA adapters on the served model: checked, done between generations, remembered."""

from __future__ import annotations

import logging
from pathlib import Path

from bot.llm.adapters import Adapter, AdapterError, AdapterRegistry
from bot.llm.engine import ModelError
from bot.llm.worker import ModelWorker
from bot.state import StateStore

log = logging.getLogger(__name__)
ACTIVE_ADAPTER = "active_adapter"


class AdapterSwitcher:
    """Applies adapters from the registry to the worker's engine, without reloading the model."""

    def __init__(
        self,
        worker: ModelWorker,
        registry: AdapterRegistry,
        served_model: Path | None,
        state: StateStore | None = None,
    ) -> None:
        self.worker = worker
        self.registry = registry
        self.served_model = served_model
        self.state = state
        self.active: str | None = None

    def use(self, name: str | None) -> Adapter | None:
        """Make adapter `name` (None: none) what users get; waits for the running answer."""
        if name is None:
            self.worker.set_default_adapter(None)
            self._remember(None)
            return None
        adapter = self.resolve(name)
        self.worker.set_default_adapter(adapter.path)
        self._remember(adapter.name)
        return adapter

    def resolve(self, name: str) -> Adapter:
        """The adapter called `name`, checked against the served model (nothing is switched)."""
        adapter = self.registry.get(name)
        if not self.worker.supports_lora:
            raise AdapterError(
                "Adapters need the in-process model (RAGTUNE_LLM_BACKEND=llama), llama-server or "
                "vLLM; this model cannot apply them."
            )
        if self.served_model is not None:
            adapter.check_base(self.served_model)
        # else a model server: llama-server holds only the adapters `ragtune serve` checked
        # against its model, and the engine asks it for this one when it is switched on.
        return adapter

    def restore(self) -> str | None:
        """Re-apply the adapter active before a restart; raise AdapterError if it no longer loads.

        An adapter an admin removed is forgotten with a warning (the bot starts on the base
        model); one that is still there but corrupt or made for another model stops start-up,
        so nobody silently gets answers from a model they did not choose.
        """
        name = self.state.get_fact(ACTIVE_ADAPTER) if self.state else None
        if name is None:
            return None
        if not self.registry.folder(name).exists():
            self._remember(None)
            log.warning("adapter %s, active before the restart, was removed; using none", name)
            return f"adapter {name} was removed"
        try:
            self.use(name)
        except ModelError as exc:  # AdapterError, or llama.cpp refusing the file
            raise AdapterError(
                f"The adapter active before the restart, {name}, does not load ({exc}); "
                f"fix it, or run `ragtune adapters remove {name}` to start without it."
            ) from None
        return None

    def _remember(self, name: str | None) -> None:
        self.active = name
        if self.state is not None:
            self.state.set_fact(ACTIVE_ADAPTER, name)
