"""The GGUF export is checked against peft itself: same tokens, same logit changes in llama.cpp."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bot.llm.model_files import packaged_gguf_path
from tuning.base import load_base
from tuning.export import export_adapter

pytestmark = pytest.mark.slow


def cosines(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Row-wise cosine similarity; position 0 is skipped (q/k cannot change it)."""
    a, b = a[1:], b[1:]
    return np.asarray((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1))


def test_llama_cpp_with_the_exported_adapter_matches_peft(tmp_path: Path) -> None:
    import llama_cpp
    import torch
    from peft import LoraConfig, get_peft_model

    model_path = packaged_gguf_path()
    assert model_path is not None
    base = load_base(model_path)
    text = base.tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the password of the blue door?"}],
        add_generation_prompt=True,
        tokenize=False,
    )
    ids = base.tokenizer(text, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        hf_base = base.model(torch.tensor([ids])).logits[0].numpy()
    torch.manual_seed(0)
    # Random A and B (peft's default B is zero) on q and k only: the projections whose rows the
    # GGUF stores permuted, so a wrong export shows.
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
    ours, unpermuted = tmp_path / "ours.gguf", tmp_path / "unpermuted.gguf"
    assert export_adapter(tuned, base.shape, 4, ours) == 60  # q and k in 30 layers
    export_adapter(tuned, base.shape, 4, unpermuted, permute_qk=False)
    cpp_ours, cpp_unpermuted = llama_logits(ours), llama_logits(unpermuted)

    hf_change = hf_tuned - hf_base
    ours_match = cosines(hf_change, cpp_ours - cpp_base)
    unpermuted_match = cosines(hf_change, cpp_unpermuted - cpp_base)
    assert np.median(ours_match) > 0.9, ours_match
    assert np.mean(hf_tuned.argmax(1) == cpp_ours.argmax(1)) > 0.9
    # The same check fails without the q/k permutation: it tests what it claims to.
    assert np.median(unpermuted_match) < 0.7, unpermuted_match
