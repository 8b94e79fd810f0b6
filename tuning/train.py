"""LoRA training on the CPU: chat-formatted Q/A, loss on the answer tokens only, then export.

Forgetting is real with a tiny model and a high learning rate (an adapter trained on made-up
facts answered "Tallinn" to "capital of France?"), so by default the base model's own answers to
general questions, generated once with llama.cpp, are mixed into the training data.
"""

from __future__ import annotations

import json
import math
import os
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bot.core.prompts import base_messages
from bot.llm.adapters import (
    ADAPTER_FILE,
    MANIFEST_FILE,
    PEFT_FOLDER,
    AdapterRegistry,
    Manifest,
    file_sha256,
)
from bot.llm.engine import GenerationLimits
from tuning.architectures import architecture, check_exportable
from tuning.base import BaseModel, load_base
from tuning.check import TrainingCheck, check_adapter
from tuning.data import Example, dataset_sha256, knowledge_texts, load_examples, split
from tuning.errors import TuningError
from tuning.export import export_adapter

GENERAL_QUESTIONS = Path(__file__).with_name("general_questions.txt")
DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
IGNORE = -100  # label value torch's cross-entropy skips: prompt tokens teach nothing
MIN_STEPS = 60
"""Fewest optimizer steps `--epochs` gives: 12 facts + 40 general answers for 3 epochs were 21
steps, which taught none of them (bench.small_facts)."""
SMALL_SET_ROWS = 200
"""Below this many rows of the user's own, training runs at SMALL_SET_LR, else at LARGE_SET_LR."""
SMALL_SET_LR = 1e-3
LARGE_SET_LR = 2e-4


def default_learning_rate(rows: int) -> float:
    """The learning rate for `rows` training rows when the user sets none. Measured with
    bench.small_facts (12 facts, 40 general answers, 60 steps, probe base 55): at 2e-4 none of the
    facts was learned, at 1e-3 11 of 12 (8 of 12 rephrased) with the probe at 50; the dev recipe
    (749 rows) learns at 2e-4, which forgets less over hundreds of steps."""
    return SMALL_SET_LR if rows < SMALL_SET_ROWS else LARGE_SET_LR


def default_steps(epochs: float, per_epoch: int) -> int:
    """Optimizer steps for `epochs` passes of `per_epoch` batches, never under MIN_STEPS."""
    return max(MIN_STEPS, round(epochs * per_epoch))


@dataclass
class TrainSettings:
    """Everything that shapes an adapter; recorded in its manifest."""

    data: Path
    name: str
    base: Path
    """The GGUF the bot serves (default) or a Hugging Face folder of the same model."""
    served_model: Path
    """The GGUF the adapter is for: its hash goes in the manifest."""
    corpus: Path | None = None
    steps: int | None = None
    epochs: float = 3.0
    rank: int = 8
    alpha: int = 16
    learning_rate: float | None = None
    """None: default_learning_rate of the data's size."""
    batch_size: int = 8
    seed: int = 0
    time_budget_s: float | None = None
    validation_fraction: float = 0.1
    max_tokens: int = 1024
    """Longest example in tokens (a grounded prompt with its sources is about 450)."""
    general: int = 40
    """Base-model answers to general questions mixed in against forgetting (0 = none)."""
    documents: Path | None = None
    """A knowledge base whose chunks are mixed in as plain text (continued pre-training)."""
    target_modules: Sequence[str] = field(default_factory=lambda: list(DEFAULT_TARGETS))
    replace: bool = False
    rag_prompt: str = "extractive"
    """The RAG prompt style the served model answers with (its profile, or the user's)."""
    bases_dir: Path | None = None
    """Where a GGUF's dequantized copy is cached (None = convert every time)."""
    model_threads: int = 0
    """llama.cpp threads for the general answers (RAGTUNE_MODEL_THREADS; 0 = the engine's
    default)."""
    grounding: dict[str, object] | None = None
    """How grounded examples were built (tuning.grounded.Grounding), for the manifest."""
    check: bool = True
    """Afterwards, ask the adapter its training questions and the general probe (tuning.check)."""


@dataclass(frozen=True)
class TrainResult:
    """What training did."""

    adapter_dir: Path
    steps: int
    first_loss: float
    last_loss: float
    validation_loss: float | None
    seconds: float
    check: TrainingCheck | None = None


def native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX512-BF16 or AMX). Training then runs
    under bfloat16 autocast, the LoRA weights and the optimizer staying float32: a forward and
    backward pass of SmolLM2-135M on 8 x 450 tokens took 15 s instead of 29 on 2 Zen 4 cores, the
    loss equal to 4 digits. Without it bfloat16 is emulated and slower, so float32 stays."""
    import torch

    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def encode(tokenizer: Any, example: Example, max_tokens: int) -> tuple[list[int], list[int]]:
    """(input ids, labels) with the prompt's labels ignored: only the answer is learned."""
    messages = example.messages()
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    full = tokenizer.apply_chat_template(
        [*messages, {"role": "assistant", "content": example.reply()}], tokenize=False
    )
    if not full.startswith(prompt):
        raise TuningError("The chat template renders the prompt differently with an answer.")
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(full[len(prompt) :], add_special_tokens=False)["input_ids"]
    keep = max(0, max_tokens - len(answer_ids))
    prompt_ids = prompt_ids[-keep:] if keep else []
    ids = (prompt_ids + answer_ids)[-max_tokens:]
    labels = ([IGNORE] * len(prompt_ids) + answer_ids)[-max_tokens:]
    return ids, labels


def encode_text(tokenizer: Any, text: str, max_tokens: int) -> tuple[list[int], list[int]]:
    """(input ids, labels) for plain text: every token is learned (continued pre-training)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"][: max_tokens - 1]
    ids = [*ids, tokenizer.eos_token_id]
    return ids, list(ids)


def general_examples(
    served_model: Path, count: int, cache_dir: Path, threads: int = 0
) -> list[Example]:
    """The served model's own greedy answers to `count` general questions (cached per model),
    generated with `threads` llama.cpp threads and a progress bar."""
    if count <= 0:
        return []
    questions = [q for q in GENERAL_QUESTIONS.read_text().splitlines() if q.strip()][:count]
    cache = cache_dir / f".general-{file_sha256(served_model)[:16]}.jsonl"
    answers: dict[str, str] = {}
    if cache.is_file():
        for line in cache.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                answers[str(row["question"])] = str(row["answer"])
    missing = [q for q in questions if q not in answers]
    if missing:
        from tqdm import tqdm

        from bot.llm.llama import LlamaCppEngine

        engine = LlamaCppEngine(served_model, threads=threads)
        limits = GenerationLimits(max_tokens=48)
        for question in tqdm(missing, desc="general answers", unit="q", file=sys.stderr):
            text = "".join(engine.stream(base_messages(question, []), limits, lambda: False))
            answers[question] = text.strip()
        cache_dir.mkdir(parents=True, exist_ok=True)
        cache.write_text(
            "\n".join(json.dumps({"question": q, "answer": a}) for q, a in answers.items()) + "\n"
        )
    return [Example(q, answers[q]) for q in questions if answers[q]]


def train(
    settings: TrainSettings, registry: AdapterRegistry, examples: list[Example] | None = None
) -> TrainResult:
    """Train, validate, export and register one adapter, on `examples` when given (grounded
    training builds them), else on `settings.data`."""
    import torch
    from peft import LoraConfig, get_peft_model
    from tqdm import tqdm

    destination = registry.folder(settings.name)
    if destination.exists() and not settings.replace:
        raise TuningError(f"An adapter called {settings.name} exists; pass --replace or rename.")
    check_exportable(architecture(settings.base))  # an adapter we could not export: refuse now
    if examples is None:
        examples = load_examples(settings.data, settings.corpus, settings.rag_prompt)
    train_set, validation = split(examples, settings.validation_fraction, settings.seed)
    own_examples = train_set
    general = general_examples(
        settings.served_model, settings.general, registry.root, settings.model_threads
    )
    train_set = train_set + general
    random.seed(settings.seed)
    torch.manual_seed(settings.seed)
    torch.set_num_threads(len(os.sched_getaffinity(0)))  # the cores this process may use

    base: BaseModel = load_base(settings.base, settings.bases_dir)
    lora = LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha,
        target_modules=list(settings.target_modules),
        lora_dropout=0.0,
        bias="none",
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(base.model, lora)
    encoded = [encode(base.tokenizer, e, settings.max_tokens) for e in train_set]
    texts = knowledge_texts(settings.documents) if settings.documents else []
    encoded += [encode_text(base.tokenizer, t, settings.max_tokens) for t in texts]
    held_out = [encode(base.tokenizer, e, settings.max_tokens) for e in validation]
    per_epoch = math.ceil(len(encoded) / settings.batch_size)
    steps = settings.steps or default_steps(settings.epochs, per_epoch)
    learning_rate = settings.learning_rate or default_learning_rate(len(own_examples))
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=learning_rate
    )
    pad = base.tokenizer.pad_token_id
    pad = pad if pad is not None else base.tokenizer.eos_token_id
    order = random.Random(settings.seed)
    bf16 = native_bf16()
    queue: list[int] = []
    losses: list[float] = []
    started = time.monotonic()
    model.train()
    bar = tqdm(range(steps), desc=f"training {settings.name}", unit="step")
    for _ in bar:
        if not queue:
            queue = list(range(len(encoded)))
            order.shuffle(queue)
        batch = [encoded[queue.pop()] for _ in range(min(settings.batch_size, len(queue)))]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(**_collate(batch, pad)).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
        if settings.time_budget_s and time.monotonic() - started > settings.time_budget_s:
            bar.close()
            break
    model.eval()
    validation_loss = _mean_loss(model, held_out, pad, bf16) if held_out else None
    seconds = time.monotonic() - started

    with tempfile.TemporaryDirectory(dir=_parent(registry.root)) as scratch:
        folder = Path(scratch) / settings.name
        folder.mkdir()
        export_adapter(model, base.shape, settings.alpha, folder / ADAPTER_FILE)
        model.save_pretrained(str(folder / PEFT_FOLDER))  # what vLLM and LoRAX load
        check = (
            check_adapter(settings.served_model, folder / ADAPTER_FILE, own_examples,
                          settings.model_threads, settings.seed)
            if settings.check
            else None
        )  # fmt: skip
        manifest = Manifest(
            name=settings.name,
            base_model_file=settings.served_model.name,
            base_model_sha256=file_sha256(settings.served_model),
            rank=settings.rank,
            alpha=settings.alpha,
            target_modules=list(settings.target_modules),
            dataset_sha256=dataset_sha256(examples),
            dataset_examples=len(examples),
            training={
                **{k: str(v) if isinstance(v, Path) else v for k, v in asdict(settings).items()},
                "steps_run": len(losses),
                "learning_rate_used": learning_rate,
                "bfloat16_autocast": bf16,
                "train_examples": len(train_set),
                "general_examples": len(general),
                "document_chunks": len(texts),
                "validation_examples": len(validation),
                "first_loss": losses[0],
                "last_loss": losses[-1],
                "seconds": round(seconds, 1),
            },
            eval_scores={
                "validation_loss": validation_loss,
                **(check.as_dict() if check is not None else {}),
            },
        )
        (folder / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2))
        if destination.exists():
            registry.remove(settings.name)
        folder.rename(destination)  # whole adapters only: the folder appears complete
    return TrainResult(
        destination, len(losses), losses[0], losses[-1], validation_loss, round(seconds, 1), check
    )


def _parent(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    return root


def _collate(batch: list[tuple[list[int], list[int]]], pad: int) -> dict[str, Any]:
    import torch

    width = max(len(ids) for ids, _ in batch)
    ids = [i + [pad] * (width - len(i)) for i, _ in batch]
    labels = [lab + [IGNORE] * (width - len(lab)) for _, lab in batch]
    mask = [[1] * len(i) + [0] * (width - len(i)) for i, _ in batch]
    return {
        "input_ids": torch.tensor(ids),
        "labels": torch.tensor(labels),
        "attention_mask": torch.tensor(mask),
    }


def _mean_loss(
    model: Any, examples: list[tuple[list[int], list[int]]], pad: int, bf16: bool
) -> float:
    import torch

    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        losses = [float(model(**_collate([e], pad)).loss) for e in examples]
    return sum(losses) / len(losses)
