"""Named quantities measured on a run's artifacts: what the claims compare against.

Each metric is a small function of a ``RunData`` (the run's files, loaded lazily), registered with
the file that is its evidence; its docstring is its definition, printed in the report.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import scipy.stats
import torch
import yaml

from replication import artifacts, health
from replication.config import REPO_ROOT, RunConfig, config_from_dict
from replication.errors import ReplicationError
from replication.pipeline import load_sae
from replication.sae import SparseAutoencoder
from replication.train import positional_split_rows, stack_samples

TOPICS_FILE = REPO_ROOT / "fixtures" / "topics.yaml"
WHITEBOX_PROMPT = "Can you explain the difference between white-box and black-box testing?"
PRINTS_AS_ZERO = 5e-5  # a code below this prints as 0.0000, the write-up's four decimals
TOPIC_MIN_HITS = 3  # a topic feature: at least 3 of its top-5 (positive) prompts carry the topic
PERMUTATIONS = 2000


@dataclass(frozen=True)
class Metric:
    name: str
    compute: Callable[[RunData], Any]
    evidence: str
    """The run file the value is computed from."""

    @property
    def definition(self) -> str:
        return " ".join((self.compute.__doc__ or "").split())


METRICS: dict[str, Metric] = {}


def metric(evidence: str) -> Callable[[Callable[[RunData], Any]], Callable[[RunData], Any]]:
    def register(fn: Callable[[RunData], Any]) -> Callable[[RunData], Any]:
        METRICS[fn.__name__] = Metric(fn.__name__, fn, evidence)
        return fn

    return register


class RunData:
    """A run directory's artifacts, each loaded on first use."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._topic_tests: dict[str, tuple[int, float] | None] = {}

    @cached_property
    def config(self) -> RunConfig:
        return config_from_dict(yaml.safe_load((self.root / artifacts.CONFIG).read_text()))

    @cached_property
    def info(self) -> dict[str, Any]:
        info: dict[str, Any] = artifacts.read_json(self.root / "capture" / "info.json")
        return info

    @cached_property
    def records(self) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = artifacts.read_json(self.root / "capture" / "samples.json")
        return records

    @cached_property
    def samples(self) -> list[torch.Tensor]:
        tensors = artifacts.load_tensors(self.root / "capture" / "activations.safetensors")
        return [tensors[f"sample_{i:03d}"] for i in range(len(tensors))]

    @cached_property
    def raw(self) -> np.ndarray:
        """Every stored activation row of every sample, (rows, d)."""
        return torch.cat([s[0] for s in self.samples]).numpy()

    @cached_property
    def history(self) -> list[dict[str, float]]:
        history: list[dict[str, float]] = artifacts.read_json(self.root / "train" / "history.json")
        return history

    @cached_property
    def sae(self) -> SparseAutoencoder:
        return load_sae(self.root, self.config)

    @cached_property
    def split(self) -> tuple[np.ndarray, np.ndarray]:
        """The training and validation samples' real rows (no padding), positional split."""
        train, val = positional_split_rows(self.samples, self.config.train.train_fraction)
        return train.numpy(), val.numpy()

    def reconstruct(self, x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return np.asarray(self.sae(torch.from_numpy(x))[0].numpy())

    @cached_property
    def splice(self) -> dict[str, Any] | None:
        """The splice test's results; None for a run that has no splice stage."""
        path = self.root / "splice" / "splice.json"
        return artifacts.read_json(path) if path.is_file() else None  # type: ignore[no-any-return]

    @cached_property
    def top(self) -> dict[str, Any]:
        top: dict[str, Any] = artifacts.read_json(self.root / "analyze" / "top_prompts.json")
        return top

    @cached_property
    def codes(self) -> np.ndarray:
        return artifacts.load_tensors(self.root / "analyze" / "codes.safetensors")["codes"].numpy()

    @cached_property
    def live(self) -> list[dict[str, Any]]:
        """Code dimensions whose top prompt prints as non-zero."""
        return [d for d in self.top["dimensions"] if d["top"][0]["value"] >= PRINTS_AS_ZERO]

    @cached_property
    def topics(self) -> list[str]:
        return topic_labels([r["prompt"] for r in self.records])

    @cached_property
    def live_top(self) -> tuple[np.ndarray, np.ndarray]:
        """The live dimensions' top prompts as (indices, value > 0), each (live, k)."""
        top = np.array([[t["index"] for t in d["top"]] for d in self.live])
        positive = np.array([[t["value"] > 0 for t in d["top"]] for d in self.live])
        return top, positive

    @cached_property
    def purity(self) -> list[dict[str, Any]]:
        """``feature_purity`` of every live dimension's top prompts."""
        if not self.live:
            return []
        return feature_purity(*self.live_top, self.topics, [d["dim"] for d in self.live])

    def topic_test(self, topic: str) -> tuple[int, float] | None:
        """``topic_feature_test`` on the live dimensions, once per topic (its count and its p-value
        are two metrics of one permutation test); None when no dimension is live."""
        if topic not in self._topic_tests:
            if not self.live:
                self._topic_tests[topic] = None
            else:
                is_topic = np.array([t == topic for t in self.topics])
                self._topic_tests[topic] = topic_feature_test(*self.live_top, is_topic)
        return self._topic_tests[topic]


def topic_labels(prompts: list[str], path: Path = TOPICS_FILE) -> list[str]:
    """Each prompt's topic: the first topic of ``fixtures/topics.yaml`` with a matching pattern."""
    rules = yaml.safe_load(path.read_text())["topics"]
    compiled = {topic: [re.compile(p, re.IGNORECASE) for p in pats] for topic, pats in rules.items()}
    return [
        next((t for t, pats in compiled.items() if any(p.search(prompt) for p in pats)), "other") for prompt in prompts
    ]


def topic_feature_test(
    top_indices: np.ndarray, positive: np.ndarray, is_topic: np.ndarray, seed: int = 0
) -> tuple[int, float]:
    """(count, p): features with >= TOPIC_MIN_HITS topic prompts among their positive top-k, and
    the permutation p-value of that count when the prompts' topic labels are shuffled."""

    def count(labels: np.ndarray) -> int:
        return int(((labels[top_indices] & positive).sum(axis=1) >= TOPIC_MIN_HITS).sum())

    observed = count(is_topic)
    rng = np.random.default_rng(seed)
    null = np.array([count(rng.permutation(is_topic)) for _ in range(PERMUTATIONS)])
    return observed, float((1 + (null >= observed).sum()) / (1 + PERMUTATIONS))


# ---- Part 1 ---------------------------------------------------------------------------------


def max_share_tail(counts: dict[str, int], k: int, topics: list[str]) -> np.ndarray:
    """tail[h] = P(some topic of ``topics`` holds >= h of k prompts drawn at random without
    replacement from a corpus with these per-label ``counts``): the exact permutation null of a
    feature's purity, by enumerating the multivariate hypergeometric distribution."""
    labels = list(counts)
    sizes = [counts[label] for label in labels]
    scored = [i for i, label in enumerate(labels) if label in topics]
    prob_max = np.zeros(k + 1)

    def compositions(i: int, left: int) -> Iterator[list[int]]:
        if i == len(sizes) - 1:
            if left <= sizes[i]:
                yield [left]
            return
        for take in range(min(left, sizes[i]) + 1):
            for rest in compositions(i + 1, left - take):
                yield [take, *rest]

    for draw in compositions(0, k):
        prob = scipy.stats.multivariate_hypergeom.pmf(x=draw, m=sizes, n=k)
        prob_max[max((draw[i] for i in scored), default=0)] += prob
    return np.minimum(np.cumsum(prob_max[::-1])[::-1], 1.0)


def feature_purity(
    top_indices: np.ndarray, positive: np.ndarray, labels: list[str], dims: list[int]
) -> list[dict[str, Any]]:
    """Per feature (row of ``top_indices``, its top-k prompts): the topic holding most of its
    positive top-k prompts ("other" never counts), its purity = hits / k, the exact p-value of that
    many hits or more for some topic under shuffled labels, and the Benjamini-Hochberg q-value over
    all the features given."""
    k = top_indices.shape[1]
    topics = sorted({label for label in labels if label != "other"})
    tail = max_share_tail(dict(Counter(labels)), k, topics)
    rows = []
    for dim, indices, pos in zip(dims, top_indices, positive, strict=True):
        hits = Counter(labels[i] for i, p in zip(indices, pos, strict=True) if p and labels[i] != "other")
        topic, n = max(hits.items(), key=lambda item: (item[1], -topics.index(item[0])), default=(None, 0))
        rows.append({"dim": int(dim), "topic": topic, "hits": n, "purity": n / k, "p": float(tail[n])})
    if rows:
        qs = scipy.stats.false_discovery_control([r["p"] for r in rows])
        for row, q in zip(rows, qs, strict=True):
            row["q"] = float(q)
    return rows


@metric("capture/info.json")
def hook_relative_depth(run: RunData) -> float:
    """Hooked layer index / number of decoder layers (10 / 32 = 0.31 for Llama-3.1-8B)."""
    return float(run.info["layer"] / run.info["n_layers"])


@metric("capture/info.json")
def hook_layer(run: RunData) -> int:
    """The 0-based index of the decoder block whose output the hook stores."""
    return int(run.info["layer"])


# ---- Part 2 ---------------------------------------------------------------------------------


@metric("capture/samples.json")
def n_prompts(run: RunData) -> int:
    """Number of prompts the run generated answers for."""
    return len(run.records)


@metric("capture/activations.safetensors")
def samples_per_prompt(run: RunData) -> float:
    """Stored activation samples divided by prompts."""
    return len(run.samples) / len(run.records)


@metric("capture/samples.json")
def mean_new_tokens(run: RunData) -> float:
    """Mean number of tokens generated after the prompt (max_length=50 counts the prompt)."""
    return float(np.mean([r["new_tokens"] for r in run.records]))


@metric("capture/samples.json")
def mean_total_tokens(run: RunData) -> float:
    """Mean length of the whole output sequence, prompt included (what max_length bounds)."""
    return float(np.mean([r["total_tokens"] for r in run.records]))


@metric("capture/activations.safetensors")
def decode_shaped_fraction(run: RunData) -> float:
    """Fraction of samples of shape (1, 1, d_model), i.e. from a decode step, not the prefill."""
    return float(np.mean([tuple(s.shape[:2]) == (1, 1) for s in run.samples]))


@metric("capture/activations.safetensors")
def activation_width(run: RunData) -> int:
    """The last axis of the stored samples (the model's hidden size)."""
    widths = {int(s.shape[-1]) for s in run.samples}
    if len(widths) != 1:
        raise ReplicationError(f"samples of several widths: {sorted(widths)}")
    return widths.pop()


@metric("capture/activations.safetensors")
def nonzero_fraction(run: RunData) -> float:
    """Fraction of stored raw activation values that are not exactly 0."""
    return float((run.raw != 0).mean())


@metric("capture/activations.safetensors")
def above_001_fraction(run: RunData) -> float:
    """Fraction of stored raw activation values with |x| > 0.01."""
    return float((np.abs(run.raw) > 0.01).mean())


@metric("capture/activations.safetensors")
def raw_spread_p99_over_median(run: RunData) -> float:
    """How widely raw values vary: the 99th percentile of |x| over its median."""
    magnitude = np.abs(run.raw)
    return float(np.percentile(magnitude, 99) / np.median(magnitude))


@metric("capture/activations_data.json")
def original_format_ok(run: RunData) -> bool:
    """activations_data.json is a list, one item per prompt in order, each exactly {prompt,
    generated_text, activations} with activations of the stored sample's shape."""
    items = json.loads((run.root / "capture" / "activations_data.json").read_text())
    return len(items) == len(run.records) and all(
        set(item) == {"prompt", "generated_text", "activations"}
        and item["prompt"] == record["prompt"]
        and list(np.shape(item["activations"])) == record["shape"]
        for item, record in zip(items, run.records, strict=False)
    )


@metric("capture/samples.json")
def corpus_topic_fraction(run: RunData) -> float:
    """Fraction of prompts that fixtures/topics.yaml labels with a programming / CS / AI topic."""
    return float(np.mean([t != "other" for t in run.topics]))


# ---- Part 3 ---------------------------------------------------------------------------------


@metric("train/sae.safetensors")
def sae_d_in(run: RunData) -> int:
    """Input width of the trained SAE's encoder."""
    return run.sae.d_in


@metric("train/sae.safetensors")
def sae_d_hidden(run: RunData) -> int:
    """Code width of the trained SAE (encoder output)."""
    return run.sae.d_hidden


def _register_setting(name: str, field: str, definition: str) -> None:
    """A training setting the run used, read from its saved config."""

    def setting(run: RunData) -> Any:
        return getattr(run.config.train, field)

    setting.__name__, setting.__doc__ = name, definition
    metric("config.yaml")(setting)


for _name, _field, _definition in (
    ("decoder_activation", "decoder_activation", "The activation on the decoder output (relu = the original)."),
    ("l1_coefficient", "l1_coefficient", "The L1 coefficient the run trained with."),
    ("learning_rate", "lr", "The Adam learning rate the run trained with."),
    ("patience", "patience", "Early-stopping patience the run trained with."),
    ("max_epochs", "max_epochs", "Upper bound on epochs the run trained with."),
):
    _register_setting(_name, _field, _definition)


@metric("train/history.json")
def history_tracks_metrics(run: RunData) -> bool:
    """Every epoch's record holds the reconstruction loss, the L1 loss and the sparsity."""
    return all({"train_mse", "l1_loss", "sparsity", "val_loss"} <= set(row) for row in run.history)


@metric("train/history.json")
def sparsity_epoch1(run: RunData) -> float:
    """Fraction of training codes with |z| < 0.01 in epoch 1."""
    return run.history[0]["sparsity"]


@metric("train/history.json")
def first_full_sparsity_epoch(run: RunData) -> int | str:
    """First epoch whose sparsity prints as 1.0000 (>= 0.99995); "never" if none did."""
    epochs = [int(r["epoch"]) for r in run.history if r["sparsity"] >= 0.99995]
    return epochs[0] if epochs else "never"


@metric("train/history.json")
def stop_epoch(run: RunData) -> int:
    """The last epoch trained before early stopping (or the epoch limit)."""
    return len(run.history)


@metric("train/history.json")
def first_train_loss(run: RunData) -> float:
    """Epoch 1's train loss (MSE + L1 term)."""
    return run.history[0]["train_loss"]


@metric("train/history.json")
def final_train_loss(run: RunData) -> float:
    """The last epoch's train loss (MSE + L1 term), as the original printed it."""
    return run.history[-1]["train_loss"]


@metric("train/history.json")
def final_val_loss(run: RunData) -> float:
    """The last epoch's validation MSE."""
    return run.history[-1]["val_loss"]


@metric("train/history.json")
def train_loss_drop(run: RunData) -> float:
    """Epoch 1's train loss over the last epoch's (17 -> 0.013 is about 1300)."""
    return run.history[0]["train_loss"] / run.history[-1]["train_loss"]


@metric("train/sae.safetensors")
def val_fvu(run: RunData) -> float:
    """Fraction of variance unexplained by the best SAE on the validation samples' real rows
    (padding excluded): 0 is perfect, 1.0 is no better than predicting their mean."""
    val = run.split[1]
    return health.fvu(val, run.reconstruct(val))


@metric("capture/activations.safetensors")
def val_mean_predictor_fvu(run: RunData) -> float:
    """The baseline: FVU of predicting every validation row by the training rows' mean."""
    train, val = run.split
    return health.mean_predictor_fvu(val, train.mean(axis=0))


@metric("train/sae.safetensors")
def train_fvu(run: RunData) -> float:
    """FVU of the best SAE on the training samples' real rows (padding excluded)."""
    train = run.split[0]
    return health.fvu(train, run.reconstruct(train))


def _register_splice(key: str, definition: str) -> None:
    def value(run: RunData) -> float | None:
        return None if run.splice is None else run.splice[key]

    value.__name__, value.__doc__ = key, definition
    metric("splice/splice.json")(value)


_register_splice("ce_clean", "Mean next-token cross-entropy (nats) of the model on the captured sequences.")
_register_splice(
    "ce_sae", "The same with the hooked layer's output replaced, at every position, by the SAE's reconstruction."
)
_register_splice("ce_zero", "The same with the hooked layer's output replaced by zeros.")
_register_splice(
    "ce_loss_recovered",
    "(ce_zero - ce_sae) / (ce_zero - ce_clean): 1 = the spliced SAE loses nothing, 0 = no better than "
    "zeroing the layer's output, < 0 = worse than that.",
)


@metric("analyze/codes.safetensors")
def never_active_fraction(run: RunData) -> float:
    """Fraction of code dimensions that are zero on every encoded sample (dead on the dataset)."""
    return health.dead_fraction(run.codes)


@metric("train/summary.json")
def padding_row_fraction(run: RunData) -> float:
    """Fraction of the SAE's training rows that are zero padding (0 when every sample is (1,1,d),
    and for a per-token dataset, which is never padded)."""
    if run.config.capture.positions == "all":
        return 0.0
    t_max = stack_samples(run.samples).shape[1]
    real = sum(s.shape[1] for s in run.samples)
    return 1.0 - real / (t_max * len(run.samples))


@metric("analyze/codes.safetensors")
def sample_code_l0(run: RunData) -> float:
    """Mean number of non-zero code dimensions per encoded sample (best SAE)."""
    return float((run.codes > 0).sum(axis=1).mean())


@metric("analyze/codes.safetensors")
def sample_code_zero_fraction(run: RunData) -> float:
    """Fraction of the encoded samples' code values that are exactly 0 (best SAE)."""
    return float((run.codes == 0).mean())


@metric("analyze/codes.safetensors")
def median_nonzero_code(run: RunData) -> float | None:
    """Median of the non-zero code values of the encoded samples (None if all are zero)."""
    positive = run.codes[run.codes > 0]
    return float(np.median(positive)) if positive.size else None


# ---- Part 4 ---------------------------------------------------------------------------------


@metric("analyze/top_prompts.json")
def dead_features(run: RunData) -> int:
    """Code dimensions whose top-5 values all print as 0.0000 (< 5e-5) on the 98 samples."""
    return len(run.top["dimensions"]) - len(run.live)


@metric("analyze/top_prompts.json")
def median_top_activation(run: RunData) -> float | None:
    """Median over live dimensions of the top prompt's code value (None if none is live)."""
    return float(np.median([d["top"][0]["value"] for d in run.live])) if run.live else None


@metric("analyze/top_prompts.json")
def whitebox_top_dims(run: RunData) -> int:
    """Live dimensions whose top prompt is the white-box/black-box testing question."""
    return sum(d["top"][0]["prompt"] == WHITEBOX_PROMPT for d in run.live)


@metric("analyze/top_prompts.json")
def redundant_pairs(run: RunData) -> int:
    """Pairs of live dimensions sharing at least 4 of their 5 top prompts."""
    sets = [frozenset(t["index"] for t in d["top"]) for d in run.live]
    counts: dict[frozenset[int], int] = {}
    for s in sets:
        counts[s] = counts.get(s, 0) + 1
    exact = sum(c * (c - 1) // 2 for c in counts.values())
    distinct = list(counts)
    near = sum(counts[a] * counts[b] for i, a in enumerate(distinct) for b in distinct[i + 1 :] if len(a & b) >= 4)
    return exact + near


@metric("analyze/top_prompts.json")
def significant_topic_features(run: RunData) -> int:
    """Live dimensions whose top-5 prompts are purer in one topic than shuffled labels give: exact
    permutation p-value of their purity, Benjamini-Hochberg q < 0.05 over all live dimensions."""
    return sum(row.get("q", 1.0) < 0.05 for row in run.purity)


def _register_topic(topic: str) -> None:
    def count(run: RunData) -> int | None:
        result = run.topic_test(topic)
        return None if result is None else result[0]

    def pvalue(run: RunData) -> float | None:
        result = run.topic_test(topic)
        return None if result is None else result[1]

    count.__name__, pvalue.__name__ = f"topic_features_{topic}", f"topic_pvalue_{topic}"
    count.__doc__ = (
        f"Live dimensions with >= {TOPIC_MIN_HITS} '{topic}' prompts (fixtures/topics.yaml) among "
        "their top-5 positive prompts."
    )
    pvalue.__doc__ = (
        f"Permutation p-value of topic_features_{topic}: {PERMUTATIONS} shuffles of the prompts' "
        "topic labels (seed 0); small = more such features than chance gives."
    )
    metric("analyze/top_prompts.json")(count)
    metric("analyze/top_prompts.json")(pvalue)


for _topic in ("javascript_web", "testing", "oop"):
    _register_topic(_topic)
