"""Part 2 capture: the hook, its last-call semantics, and the capture's inputs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from replication.config import CaptureConfig, RunConfig
from replication.errors import ReplicationError
from replication.model.loading import LoadedModel, resolve_device
from replication.model.tokenstates import fed_states
from replication.stages.capture import (
    attention,
    capture,
    capture_one,
    encode_prompt,
    padded_attention,
    read_prompts,
    sample_seed,
)
from replication.stages.context import Context

LAYER = 10
LONG_PROMPT = "Write a Python function to reverse a linked list."


def hidden_states(loaded: LoadedModel, ids: torch.Tensor) -> tuple[torch.Tensor, ...]:
    with torch.no_grad():
        return loaded.model(ids, output_hidden_states=True).hidden_states  # type: ignore[no-any-return]


def test_sample_is_last_decode_step(tiny_model: LoadedModel) -> None:
    cfg = CaptureConfig(layer=LAYER, max_length=50)
    sample = capture_one(tiny_model.model, tiny_model.tokenizer, LONG_PROMPT, cfg, seed=0)
    assert sample.new_tokens > 2, "the prompt must decode several tokens for this test"
    assert sample.source == "decode"
    assert sample.activation.shape == (1, 1, 64)
    # One prefill call, then one decode call per new token but the last (never fed back).
    assert sample.hook_calls == sample.new_tokens
    assert sample.prompt_tokens + sample.new_tokens == len(sample.token_ids) == cfg.max_length
    # The last decode step processed the second-to-last token of the output sequence.
    ids = torch.tensor([sample.token_ids[:-1]])
    expected = hidden_states(tiny_model, ids)[LAYER + 1][:, -1:, :]
    torch.testing.assert_close(sample.activation, expected, rtol=1e-4, atol=1e-5)


def test_sample_is_prefill_when_eos_comes_first(tiny_model: LoadedModel) -> None:
    ids = encode_prompt(tiny_model.tokenizer, LONG_PROMPT, chat_template=False)["input_ids"]
    with torch.no_grad():
        first = int(tiny_model.model(ids).logits[0, -1].argmax())
    # Make the greedy first token the model's EOS: generation stops after the prefill.
    tiny_model.model.generation_config.eos_token_id = first
    sample = capture_one(tiny_model.model, tiny_model.tokenizer, LONG_PROMPT, CaptureConfig(), seed=0)
    assert sample.new_tokens == 1
    assert sample.hook_calls == 1
    assert sample.source == "prefill"
    assert sample.activation.shape == (1, ids.shape[1], 64)
    torch.testing.assert_close(sample.activation, hidden_states(tiny_model, ids)[LAYER + 1], rtol=0, atol=0)


def test_prompt_longer_than_budget_is_refused_before_generation(tiny_model: LoadedModel) -> None:
    long = " ".join(["inheritance"] * 60)
    with pytest.raises(ReplicationError, match=r"not fewer than capture\.max_length=50"):
        capture(tiny_model.model, tiny_model.tokenizer, ["short", long], CaptureConfig(), progress=False)


def test_read_prompts(tmp_path: Path, tiny_config: RunConfig) -> None:
    prompts = read_prompts(tiny_config.prompts_path())
    assert len(prompts) == 98
    assert prompts[0] == "What is the best way to learn machine learning?"
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    with pytest.raises(ReplicationError, match="holds no prompt"):
        read_prompts(empty)
    with pytest.raises(ReplicationError, match="unreadable"):
        read_prompts(tmp_path / "absent.txt")


def test_sample_seed_depends_on_seed_and_index() -> None:
    seeds = {sample_seed(s, i) for s in range(3) for i in range(50)}
    assert len(seeds) == 150
    assert sample_seed(0, 7) == sample_seed(0, 7)


def test_batched_capture_stores_what_one_at_a_time_stores(tiny_model: LoadedModel, tiny_config: RunConfig) -> None:
    prompts = read_prompts(tiny_config.prompts_path())[:12]
    # Make one prompt's greedy first token the EOS: it stops after the prefill while the others
    # decode on, some of them hitting that EOS later.
    ids = encode_prompt(tiny_model.tokenizer, prompts[3], chat_template=False)["input_ids"]
    with torch.no_grad():
        tiny_model.model.generation_config.eos_token_id = int(tiny_model.model(ids).logits[0, -1].argmax())
    single = capture(tiny_model.model, tiny_model.tokenizer, prompts, CaptureConfig(), progress=False)
    batched = capture(tiny_model.model, tiny_model.tokenizer, prompts, CaptureConfig(batch_size=5), progress=False)
    sources = [s.source for s in single]
    assert "prefill" in sources and "decode" in sources, "the batch must mix early-EOS and long samples"
    assert len({s.new_tokens for s in single}) > 2
    for one, many in zip(single, batched, strict=True):
        assert many.token_ids == one.token_ids
        assert many.generated_text == one.generated_text
        assert (many.new_tokens, many.hook_calls, many.source) == (one.new_tokens, one.hook_calls, one.source)
        assert many.activation.shape == one.activation.shape
        # Left padding changes the order of float32 sums only: equal to 1e-4 relative.
        torch.testing.assert_close(many.activation, one.activation, rtol=1e-4, atol=1e-5)


def test_a_batch_sharing_a_system_prompt_stores_what_one_at_a_time_stores(
    tiny_model: LoadedModel, tiny_config: RunConfig
) -> None:
    """Prompts in a chat template with a system prompt, of different lengths: the batch (left-padded)
    stores the same tokens as one prompt at a time, and each sample the same states, a prefill
    sample's system-prompt rows included."""
    tokenizer = tiny_model.tokenizer
    # No generation suffix: every prompt would end in the same tokens, and a random model then predicts
    # the same first token for all of them, leaving no prompt that decodes.
    messages = "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}{% endfor %}"
    tokenizer.chat_template = "<|system|>\nYou are a helpful assistant.\n" + messages
    prompts = read_prompts(tiny_config.prompts_path())[:9]
    config = CaptureConfig(chat_template=True, max_length=100)
    encoded = [encode_prompt(tokenizer, p, chat_template=True)["input_ids"][0].tolist() for p in prompts]
    system = tokenizer("<|system|>\nYou are a helpful assistant.\n", add_special_tokens=False)["input_ids"]
    assert all(ids[: len(system)] == system for ids in encoded) and len({len(ids) for ids in encoded}) > 2
    with torch.no_grad():  # one prompt's first new token is EOS: a prefill sample
        first = tiny_model.model(torch.tensor([encoded[4]])).logits[0, -1].argmax()
        tiny_model.model.generation_config.eos_token_id = int(first)
    single = capture(tiny_model.model, tokenizer, prompts, config, progress=False)
    batched = capture(tiny_model.model, tokenizer, prompts, config.replace(batch_size=4), progress=False)
    assert "prefill" in {s.source for s in single} and "decode" in {s.source for s in single}
    for one, many in zip(single, batched, strict=True):
        assert many.token_ids == one.token_ids
        assert (many.new_tokens, many.hook_calls, many.source) == (one.new_tokens, one.hook_calls, one.source)
        assert many.activation.shape == one.activation.shape
        torch.testing.assert_close(many.activation, one.activation, rtol=1e-4, atol=1e-5)


def test_batched_sampling_keeps_the_last_call_semantics(tiny_model: LoadedModel, tiny_config: RunConfig) -> None:
    """A sampling model is batched in corpus order; every sample is still its own last call:
    (1, 1, d) after hook_calls = new_tokens calls, or the unpadded prefill."""
    tiny_model.model.generation_config.do_sample = True
    tiny_model.model.generation_config.temperature = 0.6
    prompts = read_prompts(tiny_config.prompts_path())[:6]
    samples = capture(tiny_model.model, tiny_model.tokenizer, prompts, CaptureConfig(batch_size=4), progress=False)
    for prompt, sample in zip(prompts, samples, strict=True):
        assert sample.prompt == prompt
        assert sample.hook_calls == sample.new_tokens >= 1
        rows = sample.prompt_tokens if sample.source == "prefill" else 1
        assert sample.activation.shape == (1, rows, 64)
        assert len(sample.token_ids) == sample.prompt_tokens + sample.new_tokens <= 50


def test_per_token_positions_hold_every_fed_state(tiny_model: LoadedModel, tiny_config: RunConfig) -> None:
    """positions=all: one row per token the model fed itself; the last row is the last-call sample."""
    prompts = read_prompts(tiny_config.prompts_path())[:4]
    ids = encode_prompt(tiny_model.tokenizer, prompts[1], chat_template=False)["input_ids"]
    with torch.no_grad():  # one prompt stops at once (prefill-shaped), the others decode
        tiny_model.model.generation_config.eos_token_id = int(tiny_model.model(ids).logits[0, -1].argmax())
    samples = capture(tiny_model.model, tiny_model.tokenizer, prompts, CaptureConfig(), progress=False)
    last_calls = [s.activation for s in samples]
    for sample, states in zip(
        samples, fed_states(tiny_model.model, LAYER, [s.token_ids for s in samples]), strict=True
    ):
        sample.activation = states[None]
    assert {s.source for s in samples} == {"prefill", "decode"}
    for sample, last in zip(samples, last_calls, strict=True):
        fed = len(sample.token_ids) - 1
        assert sample.activation.shape == (1, fed, 64)
        torch.testing.assert_close(sample.activation[:, -last.shape[1] :], last, rtol=1e-4, atol=1e-5)
        with torch.no_grad():
            states = hidden_states(tiny_model, torch.tensor([sample.token_ids[:-1]]))
        # All four in one right-padded batch: equal to a pass of the sequence alone up to float32 sums.
        torch.testing.assert_close(sample.activation, states[LAYER + 1], rtol=1e-5, atol=1e-5)


CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def test_chat_template_encoding(tiny_model: LoadedModel) -> None:
    tokenizer = tiny_model.tokenizer
    assert tokenizer.chat_template is None  # the tiny tokenizer ships none: the test gives it one
    tokenizer.chat_template = CHAT_TEMPLATE
    encoded = encode_prompt(tokenizer, LONG_PROMPT, chat_template=True)
    ids = encoded["input_ids"][0].tolist()
    direct = tokenizer.apply_chat_template(
        [{"role": "user", "content": LONG_PROMPT}], add_generation_prompt=True, tokenize=True, return_dict=True
    )["input_ids"]
    assert ids == list(direct)
    # The template rendered by hand, then tokenized as is: the same ids.
    rendered = f"<|user|>\n{LONG_PROMPT}\n<|assistant|>\n"
    assert ids == tokenizer(rendered, add_special_tokens=False)["input_ids"]
    assert ids != encode_prompt(tokenizer, LONG_PROMPT, chat_template=False)["input_ids"][0].tolist()
    assert encoded["attention_mask"].shape == encoded["input_ids"].shape == (1, len(ids))
    assert bool(encoded["attention_mask"].all())


def test_chat_template_needs_a_tokenizer_with_one(tiny_model: LoadedModel) -> None:
    assert tiny_model.tokenizer.chat_template is None
    with pytest.raises(ReplicationError, match=r"has no chat template"):
        encode_prompt(tiny_model.tokenizer, LONG_PROMPT, chat_template=True)


def test_fed_states_are_computed_once_per_context_and_sequences(tiny_config: RunConfig) -> None:
    """The per_token ablation and the cards ask one context for the same sequences' states: one pass
    of the model; other sequences (or another layer) are computed anew."""
    ctx = Context()
    device = resolve_device("cpu")
    model = ctx.model(tiny_config.model, device).model
    passes = []
    handle = model.get_input_embeddings().register_forward_hook(lambda *args: passes.append(1))
    try:
        first, second = [[5, 6, 7, 8], [9, 10, 11]], [[5, 6, 7, 9]]
        states = ctx.fed_states(tiny_config, device, first)
        again = ctx.fed_states(tiny_config, device, first)
        assert len(passes) == 1 and all(a is b for a, b in zip(again, states, strict=True))
        other = ctx.fed_states(tiny_config, device, second)
        deeper = ctx.fed_states(tiny_config.replace(capture=tiny_config.capture.replace(layer=11)), device, first)
        assert len(passes) == 3
    finally:
        handle.remove()
    for got, want in ((states, fed_states(model, LAYER, first)), (other, fed_states(model, LAYER, second))):
        assert [s.shape for s in got] == [w.shape for w in want]
        torch.testing.assert_close(torch.cat(got), torch.cat(want), rtol=0, atol=0)
        for ids, state in zip(first if got is states else second, got, strict=True):
            with torch.no_grad():  # a pass of the sequence alone, through the whole model
                alone = model(torch.tensor([ids[:-1]]), output_hidden_states=True).hidden_states[LAYER + 1][0]
            torch.testing.assert_close(state, alone, rtol=1e-5, atol=1e-5)
    assert not torch.equal(deeper[0], states[0])


def test_a_batch_row_gone_nan_is_named(tiny_model: LoadedModel, tiny_config: RunConfig) -> None:
    """NaN in a pad position of the prefill, as CUDA's half-precision SDPA kernels can give (a pad row
    attends to nothing), reaches the row's real positions through 0 x NaN: the prompt is named."""
    prompts = read_prompts(tiny_config.prompts_path())[:4]
    lengths = [encode_prompt(tiny_model.tokenizer, p, chat_template=False)["input_ids"].shape[1] for p in prompts]
    shortest = lengths.index(min(lengths))
    assert min(lengths) < max(lengths), "the batch must be padded for this test"

    def pad_goes_nan(_module: torch.nn.Module, _inputs: object, output: object) -> None:
        hidden = output if isinstance(output, torch.Tensor) else output[0]  # type: ignore[index]
        if hidden.shape[1] > 1:  # the prefill; a greedy batch runs shortest first: row 0 starts padded
            hidden[0, 0] = float("nan")

    handle = tiny_model.model.model.layers[0].register_forward_hook(pad_goes_nan)
    try:
        with pytest.raises(ReplicationError, match="holds NaN or inf: capture with --batch-size 1") as raised:
            capture(tiny_model.model, tiny_model.tokenizer, prompts, CaptureConfig(batch_size=4), progress=False)
    finally:
        handle.remove()
    assert prompts[shortest][:40] in str(raised.value)


def test_attention_is_set_for_the_block_and_restored(tiny_model: LoadedModel) -> None:
    """Eager attention hands back its weights, the tiny model's own (SDPA) none: inside the block only."""
    model = tiny_model.model

    def eager() -> bool:
        with torch.no_grad():
            attentions = model(torch.tensor([[1, 2, 3, 4]]), output_attentions=True).attentions
        return bool(attentions) and all(a is not None for a in attentions)

    assert not eager(), "the tiny model must run another attention for this test"
    with attention(model, "eager"):
        assert eager()
    assert not eager()
    with attention(model, None):
        assert not eager()


@pytest.mark.parametrize(
    ("device", "dtype", "padded", "expected"),
    [
        ("cuda", torch.bfloat16, True, "eager"),
        ("cuda", torch.float16, True, "eager"),
        ("cuda", torch.float32, True, None),
        ("cuda", torch.bfloat16, False, None),
        ("cpu", torch.bfloat16, True, None),
    ],
)
def test_left_padded_half_precision_batches_on_cuda_use_eager_attention(
    device: str, dtype: torch.dtype, padded: bool, expected: str | None
) -> None:
    assert padded_attention(torch.device(device), dtype, padded) == expected
