"""Loading local weights (``model.source: local``): a directory, the Hugging Face cache, and a
directory that holds a config but no weights."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from helpers import hub_cache

from replication.__main__ import main
from replication.config import ModelConfig, RunConfig, config_from_dict, load_profile
from replication.errors import ReplicationError
from replication.model import loading as models
from replication.model.loading import LoadedModel, load_model

PROMPT = "Write a Python function to reverse a linked list."
SNAPSHOT = "0123456789abcdef0123456789abcdef01234567"


def logits(loaded: LoadedModel) -> torch.Tensor:
    ids = loaded.tokenizer(PROMPT, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return loaded.model(input_ids=ids).logits


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory, tiny_config: RunConfig) -> tuple[Path, torch.Tensor]:
    """The tiny random model and its tokenizer saved with ``save_pretrained``, and its logits on PROMPT."""
    directory = tmp_path_factory.mktemp("local") / "tiny-saved"
    loaded = load_model(tiny_config.model, torch.device("cpu"))
    loaded.model.save_pretrained(directory)
    loaded.tokenizer.save_pretrained(directory)
    assert (directory / "config.json").is_file() and (directory / "model.safetensors").is_file()
    return directory, logits(loaded)


def test_local_directory_loads_the_saved_weights(saved: tuple[Path, torch.Tensor]) -> None:
    directory, expected = saved
    loaded = load_model(ModelConfig(source="local", name="x", path=str(directory)), torch.device("cpu"))
    assert loaded.weights == str(directory)
    assert loaded.tokenizer.pad_token == loaded.tokenizer.eos_token
    assert not loaded.model.training
    torch.testing.assert_close(logits(loaded), expected, rtol=0, atol=0)


def test_every_cpu_weight_is_aligned_and_ties_stay(saved: tuple[Path, torch.Tensor], tiny_model: LoadedModel) -> None:
    """Loaded from safetensors (memory-mapped at the file's offsets) or moved off alignment by hand,
    the weights end in memory of their own on 64-byte boundaries: the same values, the tied
    embedding still one parameter."""
    directory, expected = saved
    loaded = load_model(ModelConfig(source="local", name="x", path=str(directory)), torch.device("cpu"))
    assert all(p.data_ptr() % models.ALIGNMENT == 0 for p in loaded.model.parameters())
    torch.testing.assert_close(logits(loaded), expected, rtol=0, atol=0)
    model = tiny_model.model
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    with torch.no_grad():
        for p in model.parameters():  # each weight moved 4 bytes off a boundary
            buffer = torch.empty(p.numel() + 1, dtype=p.dtype)
            buffer[1:] = p.detach().reshape(-1)
            p.data = buffer[1:].view(p.shape)
    assert all(p.data_ptr() % models.ALIGNMENT for p in model.parameters())
    models.own_aligned_memory(model)
    assert all(p.data_ptr() % models.ALIGNMENT == 0 for p in model.parameters())
    assert all(torch.equal(p, before[name]) for name, p in model.named_parameters())
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight


def test_hugging_face_cache_snapshot_is_found_offline(
    saved: tuple[Path, torch.Tensor], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HF_HOME/hub/models--org--name/snapshots/<commit>/ with refs/main naming that commit; the first
    repo id is absent from the cache and skipped. huggingface_hub reads HF_HUB_CACHE into
    ``constants.HF_HUB_CACHE`` when it is imported and looks there at each call: set both."""
    directory, expected = saved
    repo = tmp_path / "hf" / "hub" / "models--org--name"
    shutil.copytree(directory, repo / "snapshots" / SNAPSHOT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(SNAPSHOT)
    hub_cache(monkeypatch, tmp_path / "hf")
    loaded = load_model(ModelConfig(source="local", name="x", repo_ids=("org/absent", "org/name")), torch.device("cpu"))
    assert Path(loaded.weights).resolve() == (repo / "snapshots" / SNAPSHOT).resolve()
    torch.testing.assert_close(logits(loaded), expected, rtol=0, atol=0)


def test_weights_missing_from_a_snapshot_is_the_incomplete_error(
    saved: tuple[Path, torch.Tensor], tmp_path: Path
) -> None:
    """A partial snapshot: config and tokenizer, no weights file."""
    partial = tmp_path / "partial"
    shutil.copytree(saved[0], partial)
    (partial / "model.safetensors").unlink()
    with pytest.raises(ReplicationError) as info:
        load_model(ModelConfig(source="local", name="x", path=str(partial)), torch.device("cpu"))
    message = str(info.value)
    assert message.startswith(f"x weights at {partial} are incomplete: ")
    assert "\n" not in message


def test_config_json_alone_is_the_incomplete_error(
    saved: tuple[Path, torch.Tensor], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    only_config = tmp_path / "only-config"
    only_config.mkdir()
    shutil.copy(saved[0] / "config.json", only_config / "config.json")
    with pytest.raises(ReplicationError, match=r"^x weights at .* are incomplete: [^\n]*$"):
        load_model(ModelConfig(source="local", name="x", path=str(only_config)), torch.device("cpu"))
    capsys.readouterr()
    out = tmp_path / "out"
    args = ["run", "--profile", "tiny", "--model.source=local", f"--model.path={only_config}"]
    assert main([*args, "--out", str(out), "--quiet"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "incomplete" in lines[0]
    assert not out.exists()


def test_device_map_auto_hands_the_local_model_to_from_pretrained(
    saved: tuple[Path, torch.Tensor], monkeypatch: pytest.MonkeyPatch
) -> None:
    """transformers' own device_map="auto" (accelerate places the weights); on a CPU the same logits."""
    directory, expected = saved
    calls: list[dict[str, object]] = []
    original = models.AutoModelForCausalLM.from_pretrained

    def spy(*args: object, **kwargs: object) -> object:
        calls.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(models.AutoModelForCausalLM, "from_pretrained", spy)
    cfg = ModelConfig(source="local", name="x", path=str(directory), device_map="auto")
    loaded = load_model(cfg, torch.device("cpu"))
    assert [c.get("device_map") for c in calls] == ["auto"]
    torch.testing.assert_close(logits(loaded), expected, rtol=0, atol=0)
    load_model(cfg.replace(device_map=None), torch.device("cpu"))
    assert [c.get("device_map") for c in calls] == ["auto", None]


def test_device_map_is_left_out_of_the_config_and_its_hash_while_unset() -> None:
    """Runs committed before the field existed keep their config hashes."""
    base = load_profile("smollm2")
    assert "device_map" not in base.to_dict()["model"]
    mapped = load_profile("smollm2", {"model.device_map": "auto"})
    assert mapped.to_dict()["model"]["device_map"] == "auto" and mapped.hash() != base.hash()
    assert config_from_dict(mapped.to_dict()) == mapped
    with pytest.raises(ReplicationError, match=r"^config model.device_map='balanced': "):
        load_profile("smollm2", {"model.device_map": "balanced"})


def test_an_accelerator_gets_the_weights_straight(
    saved: tuple[Path, torch.Tensor], monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a GPU the weights are read onto it, not staged in host memory first (32 GB for the float32
    8B model); stopped at the call, since no GPU is here."""
    directory, _ = saved
    calls: list[dict[str, object]] = []

    class Stop(Exception):
        pass

    def spy(*args: object, **kwargs: object) -> object:
        calls.append(kwargs)
        raise Stop

    monkeypatch.setattr(models.AutoModelForCausalLM, "from_pretrained", spy)
    with pytest.raises(Stop):
        load_model(ModelConfig(source="local", name="x", path=str(directory)), torch.device("cuda"))
    assert calls[0]["device_map"] == torch.device("cuda")


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_random_weights_are_the_float32_ones_rounded(dtype: str, tiny_config: RunConfig) -> None:
    """Each weight is drawn in float32 and then cast: a half-precision random model holds the float32
    one's weights, rounded, not other draws."""
    wide = load_model(tiny_config.model, torch.device("cpu")).model
    narrow = load_model(tiny_config.model.replace(dtype=dtype), torch.device("cpu")).model
    pairs = list(zip(wide.named_parameters(), narrow.named_parameters(), strict=True))
    for (name, a), (other, b) in pairs:
        assert name == other and b.dtype == getattr(torch, dtype)
        assert torch.equal(a.detach().to(b.dtype), b.detach()), name
    weights = [a for (name, a), _ in pairs if name.endswith("proj.weight")]
    assert all(0.015 < float(w.detach().std()) < 0.025 for w in weights)  # normal with initializer_range 0.02
