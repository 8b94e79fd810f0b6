"""Building the reranker: the packaged MiniLM encoder trained to read a question with a passage.

    ragtune reranker build      # or `make reranker`; once per machine, cached outside the repo

The training set ships with the code (tuning/reranker_data/, README there): the span reader's
questions (TAT-QA's test split and XQuAD articles 0-35) over every paragraph of their reports and
articles, each with the paragraphs hybrid search ranked highest that do not answer it. Each step
shows the encoder a question with its answer's paragraph and a few of those and teaches it to put
the answer's first (a softmax over the group), so it learns the first stage's mistakes, on two
domains. The questions it trained on are listed in its manifest; `eval retrieval` leaves them out.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from knowledge.chunking import embedding_input
from knowledge.embeddings import packaged_model_dir
from knowledge.errors import KnowledgeError
from knowledge.rerank import MANIFEST, MAX_TOKENS, RERANKER_RECIPE, reranker_info
from tuning.built import publish
from tuning.train import native_bf16

DATA_DIR = Path(__file__).resolve().parent / "reranker_data"
DATA_FILES = ("questions.jsonl", "passages.jsonl")


@dataclass(frozen=True)
class RerankerRecipe:
    """How the reranker is trained (recorded in its manifest)."""

    epochs: float = 2.0
    learning_rate: float = 7e-5
    questions_per_batch: int = 4
    group_size: int = 4
    """The answer's paragraph and this many minus one that are not, per question and step."""
    hard_share: float = 0.75
    """Share of a group's negatives drawn from the first stage's best non-answers (the rest are
    other paragraphs of the pool, so that easy cases stay easy)."""
    seed: int = 0


@dataclass(frozen=True)
class Group:
    """One training question with its answer's passage first and passages that do not answer."""

    question_id: str
    question: str
    passages: tuple[str, ...]


def data_hash() -> str:
    """sha256 of the training files: a built reranker whose manifest differs is rebuilt."""
    digest = hashlib.sha256()
    for name in DATA_FILES:
        digest.update((DATA_DIR / name).read_bytes())
    return digest.hexdigest()


def load_rows() -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The questions and every passage's model input (title, then text) by id."""
    passages = {
        row["id"]: embedding_input(row["title"], row["text"])
        for row in map(json.loads, (DATA_DIR / "passages.jsonl").open(encoding="utf-8"))
    }
    questions = [json.loads(line) for line in (DATA_DIR / "questions.jsonl").open()]
    return questions, passages


def sample_groups(
    questions: list[dict[str, Any]],
    passages: dict[str, str],
    recipe: RerankerRecipe,
    chance: random.Random,
) -> list[Group]:
    """One group per question, negatives drawn afresh (each epoch calls this again)."""
    pool = list(passages)
    groups = []
    for row in questions:
        gold = set(row["positive_ids"])
        wanted = recipe.group_size - 1
        hard = [pid for pid in row["negatives"] if pid not in gold]
        take = min(len(hard), round(wanted * recipe.hard_share))
        chosen = chance.sample(hard, take)
        while len(chosen) < wanted:
            pick = chance.choice(pool)
            if pick not in gold and pick not in chosen:
                chosen.append(pick)
        positive = chance.choice(sorted(gold))
        groups.append(Group(row["id"], row["question"],
                            tuple(passages[pid] for pid in [positive, *chosen])))  # fmt: skip
    return groups


def _batches(groups: list[Group], size: int, chance: random.Random) -> Iterator[list[Group]]:
    shuffled = groups[:]
    chance.shuffle(shuffled)
    for start in range(0, len(shuffled), size):
        yield shuffled[start : start + size]


def build_reranker(
    out: Path,
    recipe: RerankerRecipe | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Train the reranker into `out` (a manifest beside the weights); returns `out`."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    recipe = recipe or RerankerRecipe()
    started = time.monotonic()
    torch.manual_seed(recipe.seed)
    base = packaged_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1)
    # As for the span reader: 1,300 questions would only overfit the word embeddings, and their
    # optimizer step is half of each step's time.
    model.bert.embeddings.word_embeddings.weight.requires_grad_(False)
    questions, passages = load_rows()
    per_epoch = -(-len(questions) // recipe.questions_per_batch)
    total = int(per_epoch * recipe.epochs)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=recipe.learning_rate,
        weight_decay=0.01,
    )  # fmt: skip
    warmup = max(1, total // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / warmup) * max(0.0, (total - step) / total)
    )
    chance = random.Random(recipe.seed + 1)
    bf16 = native_bf16()  # where the CPU multiplies bfloat16 natively; weights stay float32
    model.train()
    step = 0
    while step < total:
        groups = sample_groups(questions, passages, recipe, chance)
        for batch in _batches(groups, recipe.questions_per_batch, chance):
            if step >= total:
                break
            encoded = tokenizer(
                [g.question for g in batch for _ in g.passages],
                [p for g in batch for p in g.passages],
                truncation="only_second", max_length=MAX_TOKENS, padding=True,
                return_tensors="pt",
            )  # fmt: skip
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                logits = model(**encoded).logits.float().view(len(batch), recipe.group_size)
            # Each group's answer is its first passage.
            loss = torch.nn.functional.cross_entropy(
                logits, torch.zeros(len(batch), dtype=torch.long)
            )
            loss.backward()  # type: ignore[no-untyped-call]  # torch leaves it untyped
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            step += 1
            if progress is not None:
                progress(step, total)
    model.eval()
    manifest = {
        "recipe": RERANKER_RECIPE,
        "training": asdict(recipe),
        "data_sha256": data_hash(),
        "questions": len(questions),
        "steps": total,
        "bfloat16_autocast": bf16,
        "train_s": round(time.monotonic() - started, 1),
        "trained_question_ids": sorted(row["id"] for row in questions),
    }
    return publish(out, model, tokenizer, MANIFEST, manifest)


def is_current(folder: Path) -> bool:
    """Whether `folder` holds a reranker built from today's training data and recipe."""
    try:
        info = reranker_info(folder)
    except KnowledgeError:  # missing or unreadable: not current, built again
        return False
    return info.details.get("data_sha256") == data_hash() and info.details.get(
        "training"
    ) == asdict(RerankerRecipe())
