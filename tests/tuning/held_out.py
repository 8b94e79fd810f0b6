"""Dev questions a CI-size grounded adapter never trained on, each with a passage of another
article: a source that does not hold the answer; and how a model replies given one source.
Shared by tests/tuning/test_grounded_adapter.py and `python -m bench.grounded_knobs`."""

from __future__ import annotations

import json
from pathlib import Path

from bot.core.prompts import RAG_PROMPTS, pack_sources, rag_messages
from bot.llm.engine import GenerationLimits
from bot.llm.llama import LlamaCppEngine


def one_source_reply(
    engine: LlamaCppEngine,
    adapter: Path | None,
    prompt: tuple[str, str, str],
    rag_prompt: str,
    context_tokens: int,
) -> str:
    """The reply to `prompt` (question, title, text) in the `rag_prompt` style, with `adapter`."""
    question, title, text = prompt
    packed = pack_sources([(title, text)], engine.count_tokens, context_tokens)
    messages = rag_messages(question, packed.blocks, [], RAG_PROMPTS[rag_prompt])
    limits = GenerationLimits(max_tokens=48)
    return "".join(engine.stream(messages, limits, lambda: False, adapter))


def other_article_prompts(dev_dir: Path, skip: int, count: int = 10) -> list[tuple[str, str, str]]:
    """(question, title, text) for `count` English questions after the first `skip`, spread over
    the set, each with an English passage whose title is not that of the question's passage."""
    rows = [json.loads(line) for line in (dev_dir / "questions.jsonl").open()]
    passages = [json.loads(line) for line in (dev_dir / "corpus.jsonl").open()]
    title = {str(p["id"]): p["title"] for p in passages}
    english = [p for p in passages if p["text"].isascii()]
    asked = [r for r in rows[skip:] if r["question"].isascii()][::37][:count]
    prompts = []
    for number, row in enumerate(asked):
        gold_title = title[str(row["positive_ids"][0])]
        other = next(p for p in english[number * 7 :] if p["title"] != gold_title)
        prompts.append((row["question"], other["title"], other["text"]))
    assert len(prompts) == count, f"{dev_dir} has too few questions after the first {skip}"
    return prompts
