"""The dequantized copy of a GGUF that `tune train` keeps: same model, read back, never half."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from bot.config import Settings
from bot.llm.model_files import packaged_gguf_path
from tuning.base import _cached_copy, _try_load_folder, load_base


@pytest.mark.slow
def test_the_second_load_reads_the_cached_copy_and_gives_the_same_logits() -> None:
    import torch

    model_path = packaged_gguf_path()
    assert model_path is not None
    cache = Settings(_env_file=None).bases_dir  # the one `tune train` uses, warm after a run
    first = load_base(model_path, cache)  # converts and saves, or reads a copy
    copy = _cached_copy(model_path, "llama", cache)
    assert (copy / "model.safetensors").is_file() and (copy / "config.json").is_file()
    assert not list(cache.glob(".partial-*"))
    second = load_base(model_path, cache)
    assert Path(second.model.name_or_path) == copy  # read from the copy, not the GGUF
    assert second.tokenizer.chat_template == first.tokenizer.chat_template
    ids = torch.tensor([first.tokenizer("The blue door's password is")["input_ids"]])
    with torch.no_grad():
        assert torch.equal(first.model(ids).logits, second.model(ids).logits)
    assert second.shape == first.shape


def test_a_damaged_copy_is_dropped_so_the_gguf_is_converted_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    damaged = tmp_path / "llama-0123456789abcdef-transformers-x"
    damaged.mkdir()
    (damaged / "config.json").write_text("{not json")
    with caplog.at_level(logging.WARNING):
        assert _try_load_folder(damaged) is None
    assert not damaged.exists()
    assert "ignoring the cached base model" in caplog.text
