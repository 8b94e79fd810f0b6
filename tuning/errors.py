"""Errors of the tuning tools: one sentence for a person (the CLI prints it and exits 1)."""

from bot.llm.engine import ModelError


class TuningError(ModelError):
    """Training data, base model or export cannot be used."""
