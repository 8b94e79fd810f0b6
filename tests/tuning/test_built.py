"""A built model folder appears whole or not at all."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


class Saves:
    """Writes one file where it is saved, or fails, as a model or tokenizer would."""

    def __init__(self, name: str, fail: bool = False) -> None:
        self.name, self.fail = name, fail

    def save_pretrained(self, folder: Path) -> None:
        if self.fail:
            raise OSError("disk full")
        (folder / self.name).write_text("weights")


def test_a_build_replaces_the_old_folder_whole(tmp_path: Path) -> None:
    from tuning.built import publish

    out = tmp_path / "reader"
    out.mkdir()
    (out / "stale.bin").write_text("old")
    assert publish(out, Saves("model.bin"), Saves("tok.json"), "m.json", {"steps": 3}) == out
    assert sorted(p.name for p in out.iterdir()) == ["m.json", "model.bin", "tok.json"]
    assert json.loads((out / "m.json").read_text()) == {"steps": 3}
    assert not (tmp_path / "reader.partial").exists()


def test_a_build_that_fails_leaves_the_old_folder_as_it_was(tmp_path: Path) -> None:
    from tuning.built import publish

    out = tmp_path / "reader"
    out.mkdir()
    (out / "model.bin").write_text("old")
    with pytest.raises(OSError):
        publish(out, Saves("model.bin"), Saves("tok.json", fail=True), "m.json", {})
    assert (out / "model.bin").read_text() == "old"
