"""Part 2: generate an answer per prompt and keep the hooked layer's LAST forward call.

The original's hook overwrote its stored output on every call, so a sample is (1, 1, d) when a decode
step ran last -- the write-up's "(1, 1, 4096)" -- and (1, prompt_len, d) when EOS came first and only
the prefill ran (docs/method.md).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from tqdm import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from replication.config import CaptureConfig
from replication.errors import ReplicationError
from replication.model.hooks import decoder_layer, input_device, last_call_hook


@dataclass
class Sample:
    """One prompt's capture: the last call's hidden state and what produced it."""

    prompt: str
    generated_text: str
    """Decode of the whole output sequence (prompt included), special tokens skipped."""
    prompt_tokens: int
    new_tokens: int
    hook_calls: int
    token_ids: list[int] = field(repr=False)
    """The whole output sequence (prompt + new tokens), as ``generate`` returned it."""
    activation: torch.Tensor = field(repr=False)
    """(1, T, d) float32 on the CPU: T = 1 after a decode step, T = prompt_tokens after prefill."""

    @property
    def source(self) -> Literal["prefill", "decode"]:
        """Which forward call the sample comes from: only the prefill ran, or a decode step."""
        return "prefill" if self.hook_calls == 1 else "decode"

    def record(self, index: int) -> dict[str, Any]:
        return {
            "index": index,
            "prompt": self.prompt,
            "generated_text": self.generated_text,
            "prompt_tokens": self.prompt_tokens,
            "new_tokens": self.new_tokens,
            "total_tokens": self.prompt_tokens + self.new_tokens,
            "hook_calls": self.hook_calls,
            "source": self.source,
            "shape": list(self.activation.shape),
            "token_ids": self.token_ids,
        }


def read_prompts(path: Path) -> list[str]:
    """One prompt a line; blank lines are skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ReplicationError(f"prompt file {path} is unreadable: {type(exc).__name__}") from None
    prompts = [line.strip() for line in text.splitlines() if line.strip()]
    if not prompts:
        raise ReplicationError(f"prompt file {path} holds no prompt")
    return prompts


def sample_seed(seed: int, index: int) -> int:
    """The generator seed of prompt ``index``: independent of the other prompts and their order."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def encode_prompt(tokenizer: PreTrainedTokenizerBase, prompt: str, chat_template: bool) -> dict[str, torch.Tensor]:
    """input_ids and attention_mask, (1, T): the raw prompt, as the original, or chat-wrapped."""
    if chat_template:
        if getattr(tokenizer, "chat_template", None) is None:
            raise ReplicationError("capture.chat_template=true but this tokenizer has no chat template")
        messages = [{"role": "user", "content": prompt}]
        encoded: Any = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_dict=True, return_tensors="pt"
        )
    else:
        encoded = tokenizer(prompt, return_tensors="pt")
    return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}


def new_token_budget(tokenizer: PreTrainedTokenizerBase, prompt: str, cfg: CaptureConfig) -> int:
    """The new tokens a prompt may get: max_length counts the prompt as the original fed it, raw. In
    the chat template each prompt gets what its raw prompt would, the template's own tokens not
    counted (Llama 3.1's always adds a system block of about 30 tokens, which would leave at most 8)."""
    raw = encode_prompt(tokenizer, prompt, chat_template=False)["input_ids"].shape[1]
    if raw >= cfg.max_length:
        raise ReplicationError(
            f"prompt {prompt[:40]!r} has {raw} tokens, not fewer than capture.max_length={cfg.max_length}"
        )
    return cfg.max_length - raw


def capture_one(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompt: str,
    cfg: CaptureConfig,
    seed: int,
) -> Sample:
    """Generate as the original did and return the hooked layer's last-call hidden state."""
    device = input_device(model)
    encoded = {k: v.to(device) for k, v in encode_prompt(tokenizer, prompt, cfg.chat_template).items()}
    prompt_tokens = encoded["input_ids"].shape[1]
    budget = new_token_budget(tokenizer, prompt, cfg)
    # The original's own call (max_length counting the prompt), or the same budget past a template.
    limit = {"max_new_tokens": budget} if cfg.chat_template else {"max_length": cfg.max_length}
    torch.manual_seed(seed)
    with last_call_hook(decoder_layer(model, cfg.layer)) as store, torch.no_grad():
        # No sampling arguments: the model's own generation config decides, as in the original.
        eos = tokenizer.eos_token_id
        output = model.generate(**encoded, **limit, pad_token_id=eos)  # type: ignore[operator]
    assert store.hidden is not None  # generate always runs the prefill
    return Sample(
        prompt=prompt,
        generated_text=str(tokenizer.decode(output[0], skip_special_tokens=True)),
        prompt_tokens=prompt_tokens,
        new_tokens=output.shape[1] - prompt_tokens,
        hook_calls=store.calls,
        token_ids=output[0].tolist(),
        activation=store.hidden.to("cpu", torch.float32).clone(),
    )


def eos_ids(model: PreTrainedModel) -> set[int]:
    eos = model.generation_config.eos_token_id
    return set(eos) if isinstance(eos, list) else {int(eos)} if eos is not None else set()


def padded_attention(device: torch.device, dtype: torch.dtype, padded: bool) -> str | None:
    """The attention a left-padded batch needs, where the model's own could fail it: in half precision
    on CUDA, SDPA kernels can give NaN for a pad row that may attend to nothing, and 0 x NaN then
    reaches every row; eager attention masks with a finite minimum instead."""
    if padded and device.type == "cuda" and dtype in (torch.float16, torch.bfloat16):
        return "eager"
    return None


@contextmanager
def attention(model: PreTrainedModel, implementation: str | None) -> Iterator[None]:
    """The model's attention set to ``implementation`` for the block (unchanged for None)."""
    own = model.config._attn_implementation
    if implementation is None or implementation == own:
        yield
        return
    model.set_attn_implementation(implementation)
    try:
        yield
    finally:
        model.set_attn_implementation(own)


def check_rows(prompts: Sequence[str], samples: list[Sample]) -> None:
    """NaN or inf in a batch's sample is named with its prompt, before anything is written."""
    for prompt, sample in zip(prompts, samples, strict=True):
        if not torch.isfinite(sample.activation).all():
            raise ReplicationError(
                f"the batched capture of prompt {prompt[:40]!r} holds NaN or inf: capture with --batch-size 1"
            )


def capture_batch(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    cfg: CaptureConfig,
    seed: int,
) -> list[Sample]:
    """Several prompts in one ``generate``, each sample what ``capture_one`` would store: the state of the
    call that produced the row's last token (decode call n - 1, or the prefill when EOS came first)."""
    # Left padding with an attention mask (pad = EOS, as the original). The batch decodes up to the
    # largest budget and each row is cut at its own budget or first EOS. Greedy rows decode the same
    # tokens as one at a time; a sampling model draws from one stream for the whole batch.
    device = input_device(model)
    encoded = [encode_prompt(tokenizer, p, cfg.chat_template)["input_ids"][0] for p in prompts]
    lengths = [len(ids) for ids in encoded]
    budgets = [new_token_budget(tokenizer, p, cfg) for p in prompts]
    module = decoder_layer(model, cfg.layer)
    t_pad, pad = max(lengths), int(tokenizer.eos_token_id)  # type: ignore[arg-type]
    input_ids = torch.full((len(prompts), t_pad), pad, dtype=torch.long)
    mask = torch.zeros((len(prompts), t_pad), dtype=torch.long)
    for row, ids in enumerate(encoded):
        input_ids[row, t_pad - len(ids) :], mask[row, t_pad - len(ids) :] = ids, 1
    torch.manual_seed(seed)
    implementation = padded_attention(device, model.dtype, min(lengths) < t_pad)
    with attention(model, implementation), last_call_hook(module, keep_all=True) as store, torch.no_grad():
        output = model.generate(  # type: ignore[operator]
            input_ids=input_ids.to(device),
            attention_mask=mask.to(device),
            max_new_tokens=max(budgets),
            pad_token_id=pad,
        )
    stops, samples = eos_ids(model), []
    for row, (prompt, ids, budget) in enumerate(zip(prompts, encoded, budgets, strict=True)):
        new = output[row, t_pad:].tolist()[:budget]
        n = next((j + 1 for j, token in enumerate(new) if token in stops), len(new))
        call = store.every[n - 1]
        # A decode step's state, or the prefill's (without its padding) when EOS came first.
        hidden = call[row : row + 1, -1:] if n > 1 else call[row : row + 1, t_pad - len(ids) :]
        tokens = ids.tolist() + new[:n]
        samples.append(
            Sample(
                prompt=prompt,
                generated_text=str(tokenizer.decode(tokens, skip_special_tokens=True)),
                prompt_tokens=len(ids),
                new_tokens=n,
                hook_calls=n,
                token_ids=tokens,
                activation=hidden.to("cpu", torch.float32).clone(),
            )
        )
    check_rows(prompts, samples)
    return samples


def capture(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    cfg: CaptureConfig,
    progress: bool = True,
) -> list[Sample]:
    """One sample per prompt, in corpus order (the train/validation split is positional);
    ``cfg.batch_size`` prompts per ``generate`` (1, the original's way, by default)."""
    # Batched and greedy, prompts of similar length share a batch (a greedy row's tokens do not depend
    # on its neighbours), so little of the prefill is padding; a row that stops early costs a decode
    # step almost nothing (a step reads the weights once for the batch). A sampling model batches in
    # corpus order, each batch seeded from its first prompt's index.
    decoder_layer(model, cfg.layer)  # fail before any generation
    lengths = []
    for prompt in prompts:
        lengths.append(encode_prompt(tokenizer, prompt, cfg.chat_template)["input_ids"].shape[1])
        new_token_budget(tokenizer, prompt, cfg)  # refuses a prompt that leaves no new token
    done: dict[int, Sample] = {}
    size = cfg.batch_size
    with tqdm(total=len(prompts), desc="capture", unit="prompt", disable=not progress) as bar:
        if size == 1:
            for index, prompt in enumerate(prompts):
                done[index] = capture_one(model, tokenizer, prompt, cfg, sample_seed(cfg.sampling_seed, index))
                bar.update()
            return [done[i] for i in range(len(prompts))]
        pending = list(range(len(prompts)))
        if not model.generation_config.do_sample:
            pending.sort(key=lambda i: lengths[i])
        for start in range(0, len(pending), size):
            batch = pending[start : start + size]
            seed = sample_seed(cfg.sampling_seed, batch[0])
            samples = capture_batch(model, tokenizer, [prompts[i] for i in batch], cfg, seed)
            done.update(zip(batch, samples, strict=True))
            bar.update(len(batch))
    return [done[i] for i in range(len(prompts))]


def samples_of(records: Sequence[dict[str, Any]]) -> list[Sample]:
    """The samples another capture stored (``Sample.record``'s fields), their activations left empty
    for the fed states to fill."""
    return [
        Sample(
            prompt=r["prompt"],
            generated_text=r["generated_text"],
            prompt_tokens=r["prompt_tokens"],
            new_tokens=r["new_tokens"],
            hook_calls=r["hook_calls"],
            token_ids=list(r["token_ids"]),
            activation=torch.empty(0),
        )
        for r in records
    ]


def generation_settings(model: PreTrainedModel) -> dict[str, Any]:
    """The decoding rule the model's own generation config sets (what the original ran)."""
    gen = model.generation_config
    return {
        "do_sample": bool(gen.do_sample),
        "temperature": gen.temperature,
        "top_p": gen.top_p,
        "top_k": gen.top_k,
        "eos_token_id": gen.eos_token_id,
    }
