"""Prompt profiles: how much of the prompt a model gets, chosen by the model, measured per model.

A 135M model loses the answer when given more than one source (XQuAD answer-contains 56 -> 16);
a 0.5B model uses two (mean of XQuAD and TAT-QA 42 -> 50) and gains nothing from a third. The
figures behind each profile are in the README (`python -m bench.profile_sweep`).
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.llm.model_info import ModelInfo


@dataclass(frozen=True)
class PromptProfile:
    """Prompt budget for one class of model; any field the user sets in Settings wins."""

    name: str
    answer_k: int
    """Chunks given to the model."""
    context_tokens: int
    """Token budget for those chunks."""
    history_tokens: int
    """Token budget for earlier turns of the chat."""
    max_answer_tokens: int
    rag_prompt: str
    """Style of the RAG system prompt (bot.core.prompts.RAG_PROMPTS)."""


TINY = PromptProfile("tiny", answer_k=1, context_tokens=300, history_tokens=200,
                     max_answer_tokens=128, rag_prompt="extractive")  # fmt: skip
SMALL = PromptProfile("small", answer_k=2, context_tokens=600, history_tokens=300,
                      max_answer_tokens=160, rag_prompt="sentence")  # fmt: skip
PROFILES = {profile.name: profile for profile in (TINY, SMALL)}
TINY_PARAMETERS = 300_000_000
"""Models below this size get the tiny profile; larger ones the small one."""


def profile_for(info: ModelInfo | None, named: str | None = None) -> PromptProfile:
    """The catalogue's profile for the model when it names one, else one chosen by its size."""
    if named is not None:
        return PROFILES[named]
    if info is None or info.parameters < TINY_PARAMETERS:
        return PROFILES["tiny"]  # unknown size (a remote server): the cautious budget
    return PROFILES["small"]
