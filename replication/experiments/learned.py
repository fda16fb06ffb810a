"""An SAE that learns, beside the write-up's method (``learned/learned.json``): EleutherAI's sparsify
trains a TopK SAE on the hooked layer's per-token states over text every Python ships (its standard
library's sources), is scored on held-out text as the field scores SAEs, then reads the run's 98
prompts with the feature test of ``power``, beside its own initialisation.

The recipe is sparsify's (its Trainer, its defaults but the few set here), so it is the field's and not
this package's; the write-up's method is elsewhere in the run, untouched.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import platform
import sysconfig
import tempfile
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from replication.errors import ReplicationError
from replication.evaluation import topics
from replication.evaluation.metrics.part4 import sample_types
from replication.evaluation.metrics.parts12 import prompt_topics
from replication.experiments import power
from replication.model.hooks import decoder_layer, hidden_state, only_layers
from replication.model.loading import resolve_device
from replication.rundir import artifacts, layout
from replication.rundir.reader import RunData
from replication.sae.data import sample_rows
from replication.stages.context import Context
from replication.stages.splice import cross_entropy, mean_replacement, zero_replacement

CONTEXT = 256
"""Tokens a sequence."""
TOKENS = 250_000
"""Training tokens (whole sequences of ``CONTEXT``): 122 steps of ``BATCH`` sequences."""
HELD_OUT = 32
"""Sequences after the training text that score the SAE (8,192 tokens)."""
EXPANSION = 8
K = 32
"""Latents on per token (TopK)."""
BATCH = 8
"""Sequences a step."""
WARMUP = 50
"""Steps of learning-rate warm-up (sparsify's default, 1,000, is longer than the run)."""


def corpus() -> tuple[str, dict[str, Any]]:
    """The running Python's standard library sources (its top-level ``*.py`` files, sorted), joined by
    newlines; and their name, version, file count and sha256."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(root.glob("*.py"))
    text = "\n".join(path.read_text(encoding="utf-8", errors="replace") for path in files)
    info = {
        "name": "the Python standard library's top-level *.py sources",
        "version": platform.python_version(),
        "files": len(files),
        "sha256": hashlib.sha256(text.encode()).hexdigest(),
    }
    return text, info


def sequences(tokenizer: PreTrainedTokenizerBase, text: str, tokens: int) -> tuple[list[list[int]], list[list[int]]]:
    """The text's tokens cut into sequences of ``CONTEXT``: the training ones (``tokens`` of them in
    all), then ``HELD_OUT`` more."""
    ids = tokenizer(text)["input_ids"]
    train = tokens // CONTEXT
    if (train + HELD_OUT) * CONTEXT > len(ids):
        raise ReplicationError(f"the corpus has {len(ids)} tokens, fewer than the {tokens} asked plus the held-out")
    cut = [ids[i * CONTEXT : (i + 1) * CONTEXT] for i in range(train + HELD_OUT)]
    return cut[:train], cut[train:]


def layer_states(model: PreTrainedModel, seqs: list[list[int]], layer: int) -> torch.Tensor:
    """(sequences, CONTEXT, d): the layer's output on each sequence."""
    states: list[torch.Tensor] = []
    hook = decoder_layer(model, layer).register_forward_hook(lambda m, i, o: states.append(hidden_state(o).detach()))
    try:
        with only_layers(model, slice(0, layer + 1)), torch.no_grad():
            for start in range(0, len(seqs), BATCH):
                model(input_ids=torch.tensor(seqs[start : start + BATCH], device=model.device))
    finally:
        hook.remove()
    return torch.cat(states).float().cpu()


def train(model: PreTrainedModel, seqs: list[list[int]], layer: int, seed: int, progress: bool) -> Any:
    """sparsify's Trainer on the layer (TopK ``K``, ``EXPANSION`` times the width, its FVU loss and its
    optimiser), one pass over ``seqs``; the trained ``SparseCoder``. The model runs up to the layer only."""
    from sparsify import SaeConfig, TrainConfig, Trainer  # noqa: PLC0415 -- the optional extra

    with tempfile.TemporaryDirectory() as scratch, contextlib.ExitStack() as stack:
        cfg = TrainConfig(
            SaeConfig(expansion_factor=EXPANSION, k=K),
            batch_size=BATCH,
            hookpoints=[f"layers.{layer}"],  # relative to the base model; with only_layers, its stack is shorter
            init_seeds=[seed],
            lr_warmup_steps=WARMUP,
            log_to_wandb=False,
            save_dir=scratch,
            save_every=10**9,
        )
        if not progress:  # sparsify prints, and draws a bar of its own on stderr
            stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
            stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
        stack.enter_context(only_layers(model, slice(0, layer + 1)))
        trainer = Trainer(cfg, [{"input_ids": torch.tensor(ids)} for ids in seqs], model)
        trainer.fit()
    (sae,) = trainer.saes.values()
    return sae


def untrained(sae: Any, first_batch: torch.Tensor, seed: int) -> Any:
    """The SAE as sparsify starts it: built after ``torch.manual_seed(seed)``, its decoder bias the
    first batch's mean (``first_batch``: its tokens' states)."""
    from sparsify import SparseCoder  # noqa: PLC0415

    torch.manual_seed(seed)
    start = SparseCoder(sae.d_in, sae.cfg, dtype=torch.float32)
    with torch.no_grad():
        start.b_dec.copy_(first_batch.reshape(-1, sae.d_in).mean(0))
    return start


def codes(sae: Any, x: torch.Tensor) -> np.ndarray:
    """(rows, latents): the SAE's dense code of each row of ``x``."""
    with torch.no_grad():
        encoded = sae.encode(x)
        dense = torch.zeros(x.shape[0], sae.num_latents)
        dense.scatter_(1, encoded.top_indices, encoded.top_acts.float())
    return dense.numpy()


def scores(model: PreTrainedModel, saes: dict[str, Any], held_out: list[list[int]], layer: int) -> dict[str, Any]:
    """Each SAE's measures on held-out text, as the field scores SAEs: FVU, L0, the share of latents that
    never fire, and the cross-entropy recovered with the SAE spliced in, against the layer zeroed and
    mean-ablated (those baselines computed once for all). The first position of each sequence (an
    attention sink, with outsized norms) is left out of FVU, L0 and the mean."""
    d = next(iter(saes.values())).d_in
    states = layer_states(model, held_out, layer)[:, 1:].reshape(-1, d)
    mean = states.mean(0)
    baseline = {
        name: cross_entropy(model, held_out, layer, replace)[0]
        for name, replace in (
            ("clean", None),
            ("zero", zero_replacement),
            ("mean", mean_replacement(mean)),
        )
    }

    def one(sae: Any) -> dict[str, float]:
        with torch.no_grad():
            recon = sae(states).sae_out.float()
        dense = codes(sae, states)

        def spliced(h: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                out: torch.Tensor = sae(h.reshape(-1, d).float().cpu()).sae_out
            return out.reshape(h.shape).to(h.device, h.dtype)

        ce = {**baseline, "sae": cross_entropy(model, held_out, layer, spliced)[0]}
        return {
            "fvu": float(((states - recon) ** 2).sum() / ((states - mean) ** 2).sum()),
            "l0": float((dense > 0).sum(axis=1).mean()),
            "dead": float((dense.max(axis=0) <= 0).mean()),
            **{f"ce_{name}": ce[name] for name in ("clean", "sae", "zero", "mean")},
            "ce_recovered_zero": (ce["zero"] - ce["sae"]) / (ce["zero"] - ce["clean"]),
            "ce_recovered_mean": (ce["mean"] - ce["sae"]) / (ce["mean"] - ce["clean"]),
            "tokens": int(states.shape[0]),
        }

    return {name: one(sae) for name, sae in saes.items()}


def reading(run: RunData, saes: dict[str, Any], progress: bool = False) -> dict[str, Any]:
    """The 98 prompts' rows (those the run's analysis encodes) through each SAE: per topic, the feature
    test, its power (the smallest planted strength it detects) and the best feature's top prompts."""
    x = sample_rows(run.activations)[0]
    strata, labels = sample_types(run), prompt_topics(run)
    dense = {name: codes(sae, x) for name, sae in saes.items()}
    tests = {name: power.feature_flags(_encoder(sae), strata) for name, sae in saes.items()}
    result: dict[str, Any] = {}
    for topic in tqdm(topics.TESTED, desc="learned: reading", unit="topic", disable=not progress):
        is_topic = np.array([label == topic for label in labels])
        rates = power.detection_rates(x.numpy(), is_topic, strata, tests)
        found = {name: power.feature_test(c, is_topic, strata) for name, c in dense.items()}
        result[topic] = {
            "prompts": int(is_topic.sum()),
            "features": {name: vars(test) for name, test in found.items()},
            "detected": {name: power.smallest_detected(power.STRENGTHS, r) for name, r in rates.items()},
            "top": {
                name: _top(dense[name], test.feature, labels)
                for name, test in found.items()
                if test.feature is not None
            },
        }
    return result


def _encoder(sae: Any) -> Callable[[np.ndarray], np.ndarray]:
    """Rows (numpy) -> the SAE's dense codes, as ``power``'s tests take an encoder."""
    return lambda x: codes(sae, torch.from_numpy(x))


def _top(dense: np.ndarray, feature: int, labels: list[str], k: int = 5) -> list[dict[str, Any]]:
    order = np.argsort(-dense[:, feature], kind="stable")[:k]
    return [{"prompt": int(i), "value": float(dense[i, feature]), "topic": labels[i]} for i in order]


def run_learned(
    run_dir: Path, tokens: int = TOKENS, *, ctx: Context | None = None, progress: bool = False
) -> dict[str, Any]:
    """Train, score and read; ``learned/learned.json`` and the SAE beside it (not committed)."""
    run = RunData(run_dir)
    layer, seed = run.config.capture.layer, run.config.train.seed
    loaded = (ctx or Context()).model(run.config.model, resolve_device(run.config.capture.device))
    model, tokenizer = loaded.model, loaded.tokenizer
    text, source = corpus()
    train_seqs, held_out = sequences(tokenizer, text, tokens)
    sae = train(model, train_seqs, layer, seed, progress).cpu()  # scored and read on the CPU, as the states are
    start = untrained(sae, layer_states(model, train_seqs[:BATCH], layer), seed)
    result = {
        "corpus": {**source, "tokens": len(train_seqs) * CONTEXT, "context": CONTEXT, "held_out": len(held_out)},
        "sae": {
            "kind": "topk",
            "k": K,
            "latents": sae.num_latents,
            "steps": len(train_seqs) // BATCH,
            "library": f"eai-sparsify {version('eai-sparsify')}",
        },
        "scores": scores(model, {"learned": sae, "untrained": start}, held_out, layer),
        "topics": reading(run, {"learned": sae, "untrained": start}, progress),
    }
    out = run_dir / layout.LEARNED
    sae.save_to_disk(out / layout.LEARNED_SAE)
    artifacts.write_json(run_dir / layout.LEARNED_JSON, result)
    files = [run_dir / layout.LEARNED_JSON, *sorted((out / layout.LEARNED_SAE).iterdir())]
    artifacts.record_addition(
        run_dir, "learned", files, {"tokens": tokens, "corpus_sha256": source["sha256"]}, replaces=layout.LEARNED
    )
    return result
