"""Part 2: generate an answer per prompt and keep the hooked layer's LAST forward call.

The original registered a forward hook on ``model.model.layers[10]`` that overwrote its stored
output on every call. During ``generate`` the first call is the prefill over the whole prompt,
(1, prompt_len, d); every later call is one decode step, (1, 1, d). The stored sample is therefore
the hidden state of the last call: (1, 1, d) when a decode step ran last -- the write-up's
"(1, 1, 4096)" -- and (1, prompt_len, d) when EOS was the first new token, so only the prefill ran.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from tqdm import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from replication.config import CaptureConfig
from replication.errors import ReplicationError


@dataclass
class LastCall:
    """What a last-call hook holds: the latest hidden state (batch, seq, d) and the call count."""

    hidden: torch.Tensor | None = None
    calls: int = 0


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


def hidden_state(output: Any) -> torch.Tensor:
    """The (batch, seq, d) tensor of a decoder layer's output, whichever form the library returns.

    transformers 4.x returned a tuple whose first item is the hidden state (the original's
    ``output[0]``); 5.x returns the tensor itself, where ``output[0]`` would drop the batch axis.
    """
    tensor = output if isinstance(output, torch.Tensor) else output[0]
    if not isinstance(tensor, torch.Tensor) or tensor.dim() != 3:
        raise ReplicationError(f"unexpected decoder-layer output: {type(output).__name__}")
    return tensor


@contextmanager
def last_call_hook(module: nn.Module) -> Iterator[LastCall]:
    """A forward hook on ``module`` that keeps only its most recent output; removed on exit."""
    store = LastCall()

    def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
        store.hidden = hidden_state(output).detach()
        store.calls += 1

    handle = module.register_forward_hook(hook)
    try:
        yield store
    finally:
        handle.remove()


def num_layers(model: PreTrainedModel) -> int:
    return len(model.model.layers)  # type: ignore[union-attr, arg-type]


def decoder_layer(model: PreTrainedModel, layer: int) -> nn.Module:
    """``model.model.layers[layer]``, or a one-line error naming the layer and the model's depth."""
    depth = num_layers(model)
    if not 0 <= layer < depth:
        raise ReplicationError(
            f"capture.layer={layer} is beyond the model: it has {depth} decoder layers (0..{depth - 1})"
        )
    return model.model.layers[layer]  # type: ignore[union-attr, index, no-any-return]


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


def check_budget(prompt: str, prompt_tokens: int, cfg: CaptureConfig) -> None:
    """max_length counts the prompt: a prompt of max_length tokens or more leaves no new token."""
    if prompt_tokens >= cfg.max_length:
        raise ReplicationError(
            f"prompt {prompt[:40]!r} has {prompt_tokens} tokens, not fewer than capture.max_length={cfg.max_length}"
        )


def capture_one(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompt: str,
    cfg: CaptureConfig,
    seed: int,
) -> Sample:
    """Generate as the original did and return the hooked layer's last-call hidden state."""
    device = next(model.parameters()).device
    encoded = {k: v.to(device) for k, v in encode_prompt(tokenizer, prompt, cfg.chat_template).items()}
    prompt_tokens = encoded["input_ids"].shape[1]
    check_budget(prompt, prompt_tokens, cfg)
    torch.manual_seed(seed)
    with last_call_hook(decoder_layer(model, cfg.layer)) as store, torch.no_grad():
        # No sampling arguments: the model's own generation config decides, as in the original.
        eos = tokenizer.eos_token_id
        output = model.generate(**encoded, max_length=cfg.max_length, pad_token_id=eos)  # type: ignore[operator]
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


def capture(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    cfg: CaptureConfig,
    progress: bool = True,
) -> list[Sample]:
    """One sample per prompt, in corpus order (the train/validation split is positional)."""
    decoder_layer(model, cfg.layer)  # fail before any generation
    for prompt in prompts:
        check_budget(prompt, encode_prompt(tokenizer, prompt, cfg.chat_template)["input_ids"].shape[1], cfg)
    return [
        capture_one(model, tokenizer, prompt, cfg, sample_seed(cfg.sampling_seed, index))
        for index, prompt in enumerate(tqdm(prompts, desc="capture", unit="prompt", disable=not progress))
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
