"""Building the span reader: the packaged MiniLM encoder trained to point at answers.

    ragtune reader build        # or `make reader`; once per machine, cached outside the repo

The training set ships with the code (tuning/reader_data/, README there): questions over
annual-report paragraphs (TAT-QA's test split) and over Wikipedia paragraphs (XQuAD articles
0-35), each with its answer span, and for some questions a paragraph of the same document that
does not answer it (taught as "no answer here"). Two domains, so the reader learns to read, not
one kind of text. The questions it trained on are listed in its manifest, and `eval answers`
leaves them out. Training is seeded and takes about 10.5 minutes on 2 cores (634 s).
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bot.llm.engine import ModelError
from bot.llm.span_reader import MANIFEST, READER_RECIPE, WINDOW_STRIDE, WINDOW_TOKENS, reader_info
from knowledge.chunking import sentence_bounds
from knowledge.embeddings import packaged_model_dir
from tuning.built import publish
from tuning.train import native_bf16

DATA_DIR = Path(__file__).resolve().parent / "reader_data"
DATA_FILES = ("questions.jsonl", "passages.jsonl")


@dataclass(frozen=True)
class ReaderRecipe:
    """How the reader is trained (recorded in its manifest)."""

    epochs: float = 4.0
    learning_rate: float = 3e-4
    batch_size: int = 16
    negative_share: float = 0.3
    """Share of questions also taught "no answer" on another paragraph of their document."""
    overflow_share: float = 0.3
    """Share of a long paragraph's answerless windows kept as "no answer" examples."""
    crop_share: float = 1.0
    """Share of questions also taught on a crop of their paragraph: the answer's sentence with
    up to one sentence either side. Users' chunks are often that short (an FAQ entry), and a
    reader trained on whole paragraphs only answered "What is the capital of Estonia?" with
    "medieval old town" from "The capital of Estonia is Tallinn. Tallinn has a medieval old
    town." (it had learnt where in a paragraph answers tend to be, not how to find them)."""
    crop_negative_share: float = 0.3
    """Share of questions also taught "no answer" on one sentence of their paragraph that lacks
    the answer."""
    seed: int = 0


@dataclass(frozen=True)
class Example:
    """One training question: its paragraph and answer, or a paragraph without it."""

    question_id: str
    question: str
    context: str
    answer: str | None


def data_hash() -> str:
    """sha256 of the training files: a built reader whose manifest differs is rebuilt."""
    digest = hashlib.sha256()
    for name in DATA_FILES:
        digest.update((DATA_DIR / name).read_bytes())
    return digest.hexdigest()


def load_examples(recipe: ReaderRecipe) -> list[Example]:
    """Each training question with its paragraph, and a share of "no answer" pairs."""
    passages = {row["id"]: row for row in map(json.loads, (DATA_DIR / "passages.jsonl").open())}
    by_document: dict[str, list[str]] = defaultdict(list)
    for passage in passages.values():
        by_document[passage["document"]].append(passage["text"])
    chance = random.Random(recipe.seed)
    examples: list[Example] = []
    for row in map(json.loads, (DATA_DIR / "questions.jsonl").open()):
        passage = passages[row["passage"]]
        examples.append(Example(row["id"], row["question"], passage["text"], row["answer"]))
        others = [t for t in by_document[passage["document"]] if row["answer"] not in t]
        if others and chance.random() < recipe.negative_share:
            examples.append(Example(row["id"], row["question"], chance.choice(others), None))
        examples.extend(_crops(row, passage["text"], recipe, chance))
    return examples


def _crops(
    row: dict[str, str], text: str, recipe: ReaderRecipe, chance: random.Random
) -> list[Example]:
    """Short contexts cut from a question's paragraph: around its answer, and without it."""
    sentences = [text[start:end] for start, end in sentence_bounds(text)]
    holding = [i for i, sentence in enumerate(sentences) if row["answer"] in sentence]
    crops = []
    if holding and chance.random() < recipe.crop_share:
        at = holding[0]
        first, last = at - chance.randint(0, 1), at + chance.randint(0, 1)
        context = " ".join(sentences[max(0, first) : last + 1])
        crops.append(Example(row["id"], row["question"], context, row["answer"]))
    lacking = [s for s in sentences if row["answer"] not in s and len(s.split()) >= 4]
    if lacking and chance.random() < recipe.crop_negative_share:
        crops.append(Example(row["id"], row["question"], chance.choice(lacking), None))
    return crops


def _features(
    examples: list[Example], tokenizer: Any, recipe: ReaderRecipe
) -> list[tuple[list[int], list[int], list[int], int, int]]:
    """(input ids, attention mask, token types, start, end) per window; 0/0 is "no answer"."""
    chance = random.Random(recipe.seed + 1)
    features = []
    for example in examples:
        at = example.context.find(example.answer) if example.answer else -1
        end_at = at + len(example.answer or "")
        encoded = tokenizer(
            example.question, example.context, truncation="only_second",
            max_length=WINDOW_TOKENS, stride=WINDOW_STRIDE, return_overflowing_tokens=True,
            return_offsets_mapping=True,
        )  # fmt: skip
        for window, offsets in enumerate(encoded["offset_mapping"]):
            start = end = 0
            for token, (sequence, (first, last)) in enumerate(
                zip(encoded.sequence_ids(window), offsets, strict=True)
            ):
                if sequence == 1 and at >= 0:
                    if first <= at < last:
                        start = token
                    if first < end_at <= last:
                        end = token
            answered = start > 0 and end >= start
            if answered or example.answer is None or chance.random() < recipe.overflow_share:
                features.append((
                    encoded["input_ids"][window], encoded["attention_mask"][window],
                    encoded["token_type_ids"][window],
                    start if answered else 0, end if answered else 0,
                ))  # fmt: skip
    return features


def _batches(features: list[Any], size: int, chance: random.Random) -> Iterator[list[Any]]:
    """Batches of windows of similar length (less padding), in a random order."""
    shuffled = features[:]
    chance.shuffle(shuffled)
    groups = [sorted(shuffled[i : i + size * 8], key=lambda f: len(f[0]))
              for i in range(0, len(shuffled), size * 8)]  # fmt: skip
    batches = [g[i : i + size] for g in groups for i in range(0, len(g), size)]
    chance.shuffle(batches)
    yield from batches


def build_reader(
    out: Path,
    recipe: ReaderRecipe | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Train the reader into `out` (a manifest beside the weights); returns `out`."""
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    recipe = recipe or ReaderRecipe()
    started = time.monotonic()
    torch.manual_seed(recipe.seed)
    base = packaged_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForQuestionAnswering.from_pretrained(base)
    # Word embeddings stay as the encoder learned them: 1,300 questions would only overfit them,
    # and their optimizer step is half of each step's time.
    model.bert.embeddings.word_embeddings.weight.requires_grad_(False)
    examples = load_examples(recipe)
    features = _features(examples, tokenizer, recipe)
    per_epoch = -(-len(features) // recipe.batch_size)
    total = int(per_epoch * recipe.epochs)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=recipe.learning_rate,
        weight_decay=0.01,
    )  # fmt: skip
    warmup = max(1, total // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / warmup) * max(0.0, (total - step) / total)
    )
    chance = random.Random(recipe.seed + 2)
    bf16 = native_bf16()  # where the CPU multiplies bfloat16 natively; weights stay float32
    model.train()
    step = 0
    while step < total:
        for batch in _batches(features, recipe.batch_size, chance):
            if step >= total:
                break
            longest = max(len(f[0]) for f in batch)

            def column(i: int, batch: list[Any] = batch, longest: int = longest) -> Any:
                return torch.tensor([f[i] + [0] * (longest - len(f[i])) for f in batch])

            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = model(
                    input_ids=column(0), attention_mask=column(1), token_type_ids=column(2),
                    start_positions=torch.tensor([f[3] for f in batch]),
                    end_positions=torch.tensor([f[4] for f in batch]),
                ).loss  # fmt: skip
            loss.backward()
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            step += 1
            if progress is not None:
                progress(step, total)
    model.eval()
    manifest = {
        "recipe": READER_RECIPE,
        "training": asdict(recipe),
        "data_sha256": data_hash(),
        "examples": len(examples),
        "windows": len(features),
        "steps": total,
        "bfloat16_autocast": bf16,
        "train_s": round(time.monotonic() - started, 1),
        "trained_question_ids": sorted({e.question_id for e in examples}),
    }
    return publish(out, model, tokenizer, MANIFEST, manifest)


def is_current(folder: Path) -> bool:
    """Whether `folder` holds a reader built from today's training data and recipe."""
    try:
        info = reader_info(folder)
    except ModelError:  # missing or unreadable: not current, built again
        return False
    return info.details.get("data_sha256") == data_hash() and info.details.get(
        "training"
    ) == asdict(ReaderRecipe())
