"""The converted-model cache's mechanism, with the tiny random model standing in for a converted
GGUF (SmolLM2 itself, through ``load_model``, is in test_smollm2.py): written whole or not at all,
checked on every read, a damaged entry rebuilt with a notice, keyed by the source's bytes."""

from __future__ import annotations

import json
from pathlib import Path

import platformdirs
import pytest
import torch
from safetensors import SafetensorError
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from replication.model import cache as modelcache
from replication.model.loading import LoadedModel
from replication.rundir.artifacts import sha256_file

PROMPT = "Write a Python function to reverse a linked list."


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv(modelcache.ENV_VAR, str(root))
    return root


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A stand-in for a GGUF file: the cache only reads its bytes."""
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF stand-in, version 1")
    return path


def logits(model: PreTrainedModel, tokenizer: object, prompt: str = PROMPT) -> torch.Tensor:
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"]  # type: ignore[operator]
    with torch.no_grad():
        return model(input_ids=ids).logits


def notices(capsys: pytest.CaptureFixture[str]) -> list[str]:
    """The cache's lines on stderr (saving a model also draws a progress bar there)."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line.startswith("model cache: ")]


def stored(source: Path, tiny_model: LoadedModel) -> modelcache.Entry:
    entry = modelcache.Entry(source, "float32-test")
    assert entry.lookup() is None and entry.status == "built"
    entry.store(tiny_model.model, tiny_model.tokenizer)
    return entry


def test_cache_root_is_the_variable_else_the_user_cache_directory(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert modelcache.cache_root() == cache
    monkeypatch.delenv(modelcache.ENV_VAR)
    assert modelcache.cache_root() == Path(platformdirs.user_cache_dir("replication"))


def test_stored_entry_is_a_plain_directory_that_loads_the_same_model(
    cache: Path, source: Path, tiny_model: LoadedModel, capsys: pytest.CaptureFixture[str]
) -> None:
    entry = stored(source, tiny_model)
    assert entry.status == "built"
    assert entry.path == cache / "converted" / sha256_file(source) / "float32-test"
    files = {p.name for p in entry.path.iterdir()}
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "manifest.json"} <= files
    manifest = json.loads((entry.path / "manifest.json").read_text())
    assert manifest["source_sha256"] == sha256_file(source)
    assert manifest["files"]["model.safetensors"] == sha256_file(entry.path / "model.safetensors")
    assert set(manifest["files"]) == files - {"manifest.json"}
    # Nothing but the entry is left beside it (the temporary build directory was renamed).
    assert [p.name for p in entry.path.parent.iterdir()] == ["float32-test"]

    again = modelcache.Entry(source, "float32-test")
    assert again.lookup() == entry.path and again.status == "hit"
    model = AutoModelForCausalLM.from_pretrained(entry.path, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(entry.path, local_files_only=True)
    expected = logits(tiny_model.model, tiny_model.tokenizer)
    torch.testing.assert_close(logits(model, tokenizer), expected, rtol=0, atol=0)
    assert model.generation_config.to_dict() == tiny_model.model.generation_config.to_dict()
    assert notices(capsys) == []


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        (lambda e: (e / "model.safetensors").write_bytes(b"not the weights"), "model.safetensors does not match"),
        (lambda e: (e / "tokenizer.json").unlink(), "tokenizer.json is missing"),
        (lambda e: (e / "extra.bin").write_bytes(b"x"), "extra.bin is not in its manifest.json"),
        (lambda e: (e / "manifest.json").write_text("{"), "manifest.json unreadable"),
    ],
    ids=["changed", "missing", "added", "manifest"],
)
def test_damaged_entry_is_removed_and_rebuilt_with_a_one_line_notice(
    cache: Path,
    source: Path,
    tiny_model: LoadedModel,
    capsys: pytest.CaptureFixture[str],
    damage: object,
    named: str,
) -> None:
    entry = stored(source, tiny_model)
    damage(entry.path)  # type: ignore[operator]
    again = modelcache.Entry(source, "float32-test")
    assert again.lookup() is None and again.status == "rebuilt"
    assert not entry.path.exists()
    lines = notices(capsys)
    assert len(lines) == 1 and named in lines[0] and "rebuilding" in lines[0]
    again.store(tiny_model.model, tiny_model.tokenizer)
    assert again.status == "rebuilt" and again.damage() is None
    assert modelcache.Entry(source, "float32-test").lookup() == entry.path


@pytest.mark.parametrize(
    "full",
    [
        OSError(28, "No space left on device"),
        # what safetensors raises where the disk fills under save_pretrained
        SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)"),
    ],
)
def test_a_failed_store_leaves_no_entry_and_no_temporary_directory(
    full: Exception, cache: Path, source: Path, tiny_model: LoadedModel, capsys: pytest.CaptureFixture[str]
) -> None:
    """The weights are written, then the tokenizer's save fails (a full disk): no half entry, and
    the run goes on without the cache."""

    class FullDisk:
        def save_pretrained(self, directory: Path) -> None:
            raise full

    entry = modelcache.Entry(source, "float32-test")
    entry.store(tiny_model.model, FullDisk())  # type: ignore[arg-type]
    assert entry.status == "not stored"
    assert list(entry.path.parent.iterdir()) == []
    lines = notices(capsys)
    assert len(lines) == 1 and "cannot store" in lines[0] and "No space left" in lines[0]
    assert modelcache.Entry(source, "float32-test").lookup() is None


def test_key_is_the_source_bytes_not_its_path(cache: Path, source: Path, tmp_path: Path) -> None:
    first = modelcache.Entry(source, "v").path
    moved = tmp_path / "elsewhere.gguf"
    moved.write_bytes(source.read_bytes())
    assert modelcache.Entry(moved, "v").path == first
    source.write_bytes(b"GGUF stand-in, version 2")
    changed = modelcache.Entry(source, "v").path
    assert changed != first and changed.parent.name == sha256_file(source)
    assert modelcache.Entry(source, "w").path.parent == changed.parent


def test_entry_made_for_other_bytes_is_damaged(cache: Path, source: Path, tiny_model: LoadedModel) -> None:
    """An entry copied under another source's key is caught by its manifest."""
    entry = stored(source, tiny_model)
    other = source.with_name("other.gguf")
    other.write_bytes(b"another file")
    wrong = modelcache.Entry(other, "float32-test")
    wrong.path.parent.mkdir(parents=True)
    entry.path.rename(wrong.path)
    assert wrong.damage() == "manifest.json names another source file"
