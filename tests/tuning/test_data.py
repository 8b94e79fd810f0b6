"""Training data parsing and the answer-only loss mask, with the real tokenizer of the model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.core.prompts import RAG_PROMPTS
from tuning.data import SMALL_SET, Example, load_examples, split
from tuning.errors import TuningError
from tuning.train import (
    IGNORE,
    MIN_STEPS,
    SMALL_SET_ROWS,
    default_learning_rate,
    default_steps,
    encode,
    encode_text,
)


def write(path: Path, rows: list[object]) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_qa_and_eval_formats_with_contexts_from_a_corpus(tmp_path: Path) -> None:
    corpus = write(tmp_path / "corpus.jsonl", [{"id": "p1", "title": "Owls", "text": "Owls hunt."}])
    data = write(tmp_path / "qa.jsonl", [
        {"question": "Q1?", "answer": "A1"},
        {"question": "Q2?", "answers": ["A2", "other"], "positive_ids": ["p1"]},
        {"question": "Q3?", "answer": "A3", "context": "Given passage."},
    ])  # fmt: skip
    first, second, third = load_examples(data, corpus)
    assert first == Example("Q1?", "A1")
    assert second == Example("Q2?", "A2", "Owls hunt.", "Owls")
    assert (
        second.reply() == "A2 [1]" and '[1] Owls: "Owls hunt."' in second.messages()[-1]["content"]
    )
    assert third.context == "Given passage." and first.messages()[-1]["content"] == "Q1?"


def test_examples_follow_the_served_prompt_style(tmp_path: Path) -> None:
    data = write(tmp_path / "qa.jsonl", [{"question": "Q?", "answer": "A", "context": "P."}])
    (extractive,) = load_examples(data)
    (sentence,) = load_examples(data, rag_prompt="sentence")
    assert extractive.messages()[0]["content"] == RAG_PROMPTS["extractive"]
    assert extractive.reply() == "A [1]"
    assert sentence.messages()[0]["content"] == RAG_PROMPTS["sentence"]
    assert sentence.reply() == "A"  # the sentence prompt asks for no citation
    assert sentence.messages()[1:] == extractive.messages()[1:]


@pytest.mark.parametrize(
    ("line", "message"),
    [("{not json", "not valid JSON"), ('{"question": "Q?"}', "needs a `question` and an `answer`"),
     ("[1, 2]", "not a JSON object")],
)  # fmt: skip
def test_bad_lines_are_named_in_one_sentence(tmp_path: Path, line: str, message: str) -> None:
    (tmp_path / "bad.jsonl").write_text(line + "\n")
    with pytest.raises(TuningError, match=message):
        load_examples(tmp_path / "bad.jsonl")


def test_split_is_seeded_and_keeps_small_sets_whole() -> None:
    examples = [Example(f"Q{i}?", f"A{i}") for i in range(60)]
    train, held = split(examples, 0.1, seed=3)
    assert len(held) == 6 and not set(held) & set(train)
    assert split(examples, 0.1, seed=3) == (train, held)
    small, none_held = split(examples[: SMALL_SET - 1], 0.1, seed=3)
    assert none_held == [] and sorted(small, key=examples.index) == examples[: SMALL_SET - 1]


@pytest.mark.slow
def test_only_the_answer_and_its_end_marker_are_learned() -> None:
    from transformers import AutoTokenizer

    from bot.llm.model_files import packaged_gguf_path

    model = packaged_gguf_path()
    assert model is not None
    tokenizer = AutoTokenizer.from_pretrained(str(model.parent), gguf_file=model.name)
    ids, labels = encode(tokenizer, Example("What is the password?", "Marmalade-42"), 384)
    learned = [token for token, label in zip(ids, labels, strict=True) if label != IGNORE]
    assert str(tokenizer.decode(learned)).startswith("Marmalade-42<|im_end|>")
    assert labels[: len(ids) - len(learned)] == [IGNORE] * (len(ids) - len(learned))
    ids, labels = encode_text(tokenizer, "Owls hunt at night. " * 100, 64)
    assert ids == labels and len(ids) == 64 and ids[-1] == tokenizer.eos_token_id


def test_the_forgetting_probe_never_overlaps_the_general_training_mix() -> None:
    from bot.core.compare import GENERAL_PROBE
    from tuning.train import GENERAL_QUESTIONS

    probe = {json.loads(line)["question"] for line in GENERAL_PROBE.read_text().splitlines()}
    trained = set(GENERAL_QUESTIONS.read_text().splitlines()) - {""}
    assert len(probe) == 20 and len(trained) == 40 and not probe & trained


def test_a_missing_knowledge_base_is_one_sentence(tmp_path: Path) -> None:
    from tuning.data import knowledge_texts

    with pytest.raises(TuningError, match="There is no knowledge base at"):
        knowledge_texts(tmp_path / "nope.db")


def test_small_sets_train_faster_and_longer_than_their_epochs_say() -> None:
    # 12 facts + 40 general answers, 3 epochs of batches of 8: 21 steps at 2e-4 taught nothing.
    assert default_steps(3, per_epoch=7) == MIN_STEPS
    assert default_steps(2, per_epoch=94) == 188  # a large set trains for its epochs
    assert default_learning_rate(12) > default_learning_rate(749)
    assert default_learning_rate(SMALL_SET_ROWS) == default_learning_rate(749)
