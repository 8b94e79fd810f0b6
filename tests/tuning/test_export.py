"""The GGUF export is checked against peft itself: same tokens, same logit changes in llama.cpp.

Both architectures ragtune exports for are checked the same way, and each check also fails with
the other q/k row order, so it tests what it claims to: llama's GGUF stores q/k rows permuted,
qwen2's does not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bot.config import Settings
from bot.llm.model_files import packaged_gguf_path
from tests.helpers import qwen_gguf_path
from tuning.base import load_base
from tuning.errors import TuningError
from tuning.export import BaseShape, export_adapter

QUESTION = "What is the password of the blue door?"


def cosines(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Row-wise cosine similarity; position 0 is skipped (q/k cannot change it)."""
    a, b = a[1:], b[1:]
    return np.asarray((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1))


def check_against_peft(model_path: Path, tmp_path: Path, adapted: int) -> tuple[float, float]:
    """(median cosine of logit changes, ours vs peft; the same with the other q/k row order)."""
    import llama_cpp
    import torch
    from peft import LoraConfig, get_peft_model

    # The same cache `ragtune tune train` uses: the Qwen training test then loads in seconds.
    base = load_base(model_path, Settings(_env_file=None).bases_dir)
    text = base.tokenizer.apply_chat_template(
        [{"role": "user", "content": QUESTION}], add_generation_prompt=True, tokenize=False
    )
    ids = base.tokenizer(text, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        hf_base = base.model(torch.tensor([ids])).logits[0].numpy()
    torch.manual_seed(0)
    # Random A and B (peft's default B is zero) on q and k only: the projections whose row
    # order differs between architectures, so a wrong export shows.
    config = LoraConfig(r=4, lora_alpha=4, target_modules=["q_proj", "k_proj"],
                        init_lora_weights=False)  # fmt: skip
    tuned = get_peft_model(base.model, config)
    with torch.no_grad():
        hf_tuned = tuned(torch.tensor([ids])).logits[0].numpy()

    def llama_logits(adapter: Path | None) -> np.ndarray[Any, Any]:
        llama = llama_cpp.Llama(str(model_path), logits_all=True, n_ctx=256, verbose=False,
                                lora_path=str(adapter) if adapter else None)  # fmt: skip
        llama.eval(ids)
        return np.array(llama.scores[: len(ids)])

    cpp_base = llama_logits(None)
    ours, other = tmp_path / "ours.gguf", tmp_path / "other-order.gguf"
    assert export_adapter(tuned, base.shape, 4, ours) == adapted
    permuted = base.shape.arch == "llama"
    export_adapter(tuned, base.shape, 4, other, permute_qk=not permuted)
    cpp_ours, cpp_other = llama_logits(ours), llama_logits(other)
    hf_change = hf_tuned - hf_base
    assert np.mean(hf_tuned.argmax(1) == cpp_ours.argmax(1)) > 0.9
    return (
        float(np.median(cosines(hf_change, cpp_ours - cpp_base))),
        float(np.median(cosines(hf_change, cpp_other - cpp_base))),
    )


@pytest.mark.slow
def test_llama_cpp_with_the_exported_llama_adapter_matches_peft(tmp_path: Path) -> None:
    model_path = packaged_gguf_path()
    assert model_path is not None
    ours, unpermuted = check_against_peft(model_path, tmp_path, adapted=60)  # q, k × 30 layers
    assert ours > 0.9 and unpermuted < 0.7, (ours, unpermuted)


@pytest.mark.slow
def test_llama_cpp_with_the_exported_qwen2_adapter_matches_peft(tmp_path: Path) -> None:
    ours, permuted = check_against_peft(qwen_gguf_path(), tmp_path, adapted=48)  # 24 layers
    assert ours > 0.9 and permuted < 0.7, (ours, permuted)


def test_an_architecture_without_a_checked_mapping_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TuningError, match=r"cannot export LoRA adapters for the 'phi3' arch"):
        export_adapter(object(), BaseShape("phi3", 2, 2, 2), 8, tmp_path / "a.gguf")
    assert not (tmp_path / "a.gguf").exists()


def test_tune_train_refuses_an_unknown_architecture_before_any_training(tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    import gguf

    model = tmp_path / "phi3-like.gguf"
    writer = gguf.GGUFWriter(str(model), "phi3")
    writer.add_context_length(4096)
    writer.add_tensor("token_embd.weight", np.zeros((4, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    data = tmp_path / "qa.jsonl"
    data.write_text(json.dumps({"question": "Q?", "answer": "A"}) + "\n")
    env = {**os.environ, "RAGTUNE_MODEL_PATH": str(model),
           "RAGTUNE_ADAPTERS_DIR": str(tmp_path / "adapters")}  # fmt: skip
    ragtune = str(Path(sys.executable).parent / "ragtune")
    proc = subprocess.run([ragtune, "tune", "train", "--data", str(data), "--name", "x"],
                          env=env, capture_output=True, text=True, timeout=120,
                          check=False)  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "error: ragtune cannot export LoRA adapters for the 'phi3' architecture (only for "
        "llama and qwen2), so it will not train one; nothing was trained."
    ]
    assert "training" not in proc.stdout and not (tmp_path / "adapters").exists()


def test_more_general_answers_than_ship_is_refused_not_silently_cut(tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    questions = (Path(__file__).parents[2] / "tuning" / "general_questions.txt").read_text()
    assert len([q for q in questions.splitlines() if q.strip()]) == 40  # the option's maximum
    data = tmp_path / "qa.jsonl"
    data.write_text(json.dumps({"question": "Q?", "answer": "A"}) + "\n")
    env = {**os.environ, "RAGTUNE_ADAPTERS_DIR": str(tmp_path / "adapters"), "COLUMNS": "200"}
    ragtune = str(Path(sys.executable).parent / "ragtune")
    proc = subprocess.run([ragtune, "tune", "train", "--data", str(data), "--name", "x",
                           "--general", "80"], env=env, capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip
    assert proc.returncode == 2
    assert "less than or equal to 40" in " ".join(proc.stderr.split())
    assert not (tmp_path / "adapters").exists()
