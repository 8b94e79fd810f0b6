"""`ragtune models`, RAGTUNE_MODEL and the prompt profile, with the two real catalogue models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot import app
from bot.config import Settings
from bot.core.profiles import PROFILES, profile_for
from bot.llm.catalogue import CATALOGUE
from bot.llm.model_files import packaged_gguf_path
from bot.llm.model_info import ModelInfo
from tests.helpers import QWEN, qwen_gguf_path

RAGTUNE = str(Path(sys.executable).parent / "ragtune")
KEYS = {"name", "installed", "path", "architecture", "size_bytes", "sha256"}


def ragtune(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v for k, v in os.environ.items() if k not in {"RAGTUNE_MODEL", "RAGTUNE_MODEL_PATH"}
    }
    return subprocess.run([RAGTUNE, *args], env=clean | env, capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip


def test_list_json_has_both_packaged_models_installed_and_marks_the_served_one() -> None:
    qwen_gguf_path()  # skips (or under CI fails) where it is not installed
    listed = ragtune("models", "list", "--json", RAGTUNE_MODEL=QWEN)
    assert listed.returncode == 0, listed.stderr
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    for model in CATALOGUE:
        row = rows[model.name]
        assert row.keys() >= KEYS
        assert row["installed"] is True, row  # `make test` installs both
        assert (row["architecture"], row["size_bytes"], row["sha256"]) == (
            model.architecture, model.size_bytes, model.sha256,
        )  # fmt: skip
        assert Path(row["path"]).stat().st_size == model.size_bytes
    assert rows[QWEN]["served"] and not rows["smollm2-135m"]["served"]


def test_show_checks_the_file_and_reads_its_header() -> None:
    qwen = qwen_gguf_path()
    shown = ragtune("models", "show", QWEN)
    assert shown.returncode == 0, shown.stderr
    row = json.loads(shown.stdout)
    assert row["checked"] is True and row["architecture"] == "qwen2"
    assert row["context_length"] == 32768 and row["path"] == str(qwen)


def test_doctor_names_the_served_model_and_model_path_wins_over_model() -> None:
    qwen_gguf_path()
    doctor = ragtune("doctor", RAGTUNE_MODEL=QWEN)
    assert doctor.returncode == 0, doctor.stderr
    assert "qwen2.5-coder-0.5b (qwen2, 630M parameters, context 32,768, 491 MB" in doctor.stdout
    assert "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32" in doctor.stdout
    assert "prompt profile         small" in doctor.stdout
    smollm2 = packaged_gguf_path()
    assert smollm2 is not None
    both = ragtune("doctor", RAGTUNE_MODEL=QWEN, RAGTUNE_MODEL_PATH=str(smollm2))
    assert f"chat model file        {smollm2}" in both.stdout
    assert "(llama, " in both.stdout and "prompt profile         tiny" in both.stdout


def test_an_unknown_or_uninstalled_model_is_one_sentence(tmp_path: Path) -> None:
    unknown = ragtune("ask", "--mode", "base", "Hi", RAGTUNE_MODEL="gpt-5")
    assert unknown.returncode == 1
    assert unknown.stderr.strip().splitlines() == [
        "error: There is no model called 'gpt-5' in the catalogue (known: smollm2-135m, "
        "qwen2.5-coder-0.5b)."
    ]
    empty = ragtune("ask", "--mode", "base", "Hi", RAGTUNE_MODEL=QWEN,
                    RAGTUNE_MODELS_DIR=str(tmp_path))  # fmt: skip
    assert empty.returncode == 1
    assert empty.stderr.strip().splitlines() == [
        f"error: The model {QWEN} is not installed: run `ragtune models install {QWEN}`."
    ]


def info(parameters: int) -> ModelInfo:
    return ModelInfo("m", Path("m.gguf"), "llama", 8192, parameters, 1, "0" * 64)


def test_the_profile_follows_the_model_and_settings_the_user_gives_win(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert profile_for(info(135_000_000)).name == "tiny"
    assert profile_for(info(1_500_000_000)).name == "small"
    assert profile_for(None).name == "tiny"  # a remote server of unknown size: cautious
    assert profile_for(info(135_000_000), "small").name == "small"  # the catalogue's word wins
    small = PROFILES["small"]
    derived = app.answer_settings(Settings(_env_file=None), small)
    assert (derived.search_k, derived.context_tokens, derived.history_tokens,
            derived.limits.max_tokens, derived.rag_prompt) == (
        small.answer_k, small.context_tokens, small.history_tokens, small.max_answer_tokens,
        small.rag_prompt,
    )  # fmt: skip
    monkeypatch.setenv("RAGTUNE_ANSWER_K", "4")
    monkeypatch.setenv("RAGTUNE_MAX_ANSWER_TOKENS", "50")
    monkeypatch.setenv("RAGTUNE_RAG_PROMPT", "extractive")
    given = app.answer_settings(Settings(_env_file=None), small)
    assert (given.search_k, given.limits.max_tokens, given.rag_prompt) == (4, 50, "extractive")
    assert given.context_tokens == small.context_tokens  # what was not given still follows


def test_served_model_picks_by_name_and_the_catalogue_profile() -> None:
    qwen_gguf_path()
    served = app.served_model(Settings(_env_file=None, model=QWEN))
    assert served is not None
    assert served.info.architecture == "qwen2" and served.profile.name == "small"
    default = app.served_model(Settings(_env_file=None))
    assert default is not None
    assert default.info.name == "smollm2-135m" and default.profile.name == "tiny"
