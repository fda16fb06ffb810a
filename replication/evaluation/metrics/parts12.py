"""Metrics of Parts 1 and 2: the hooked layer, the prompts, what was generated and stored."""

from __future__ import annotations

import hashlib
import json
from functools import partial

import numpy as np

from replication.errors import ReplicationError
from replication.evaluation import topics
from replication.evaluation.metrics.registry import Reach, metric
from replication.rundir import artifacts, layout
from replication.rundir.reader import RunData
from replication.sae.data import sample_rows


def prompt_topics(run: RunData) -> list[str]:
    """Each prompt's topic label (``topics.topic_labels``), once per run."""
    return run.memo("topics", lambda: topics.topic_labels(run.prompts))


@metric(layout.CAPTURE_INFO)
def hook_relative_depth(run: RunData) -> float:
    """Hooked layer index / number of decoder layers (10 / 32 = 0.31 for Llama-3.1-8B)."""
    return float(run.info["layer"] / run.info["n_layers"])


@metric(layout.CAPTURE_INFO)
def hook_layer(run: RunData) -> int:
    """The 0-based index of the decoder block whose output the hook stores."""
    return int(run.info["layer"])


# ---- Part 2 ---------------------------------------------------------------------------------


@metric(layout.SAMPLES)
def n_prompts(run: RunData) -> int:
    """Number of prompts the run generated answers for."""
    return len(run.records)


@metric(layout.ACTIVATIONS)
def samples_per_prompt(run: RunData) -> float:
    """Stored activation samples divided by prompts."""
    return len(run.activations) / len(run.records)


def _token_reach(run: RunData, total: bool) -> Reach | None:
    """generate(max_length=L) counts the prompt: a prompt of p tokens gets between 1 and L - p new ones
    whatever the model says. None where no sample records the prompt length its budget counts."""
    if not run.records or any("prompt_tokens" not in r for r in run.records) or run.config.capture.chat_template:
        return None  # in the chat template the budget counts the raw prompt, which no sample records
    length = run.config.capture.max_length
    prompts = np.array([r["prompt_tokens"] for r in run.records], dtype=float)
    low, high = (prompts.mean() + 1, float(length)) if total else (1.0, float(np.mean(length - prompts)))
    what = "whole sequences" if total else "new tokens"
    return Reach(
        float(low),
        high,
        f"max_length={length} counts the prompt, so each prompt gets between 1 and {length} - its length new "
        f"tokens: a mean of {what} in this range whatever the model generates",
    )


@metric(layout.SAMPLES, reach=partial(_token_reach, total=False))
def mean_new_tokens(run: RunData) -> float:
    """Mean number of tokens generated after the prompt (max_length=50 counts the prompt)."""
    return float(np.mean([r["new_tokens"] for r in run.records]))


@metric(layout.SAMPLES, reach=partial(_token_reach, total=True))
def mean_total_tokens(run: RunData) -> float:
    """Mean length of the whole output sequence, prompt included (what max_length bounds)."""
    return float(np.mean([r["total_tokens"] for r in run.records]))


@metric(layout.ACTIVATIONS)
def decode_shaped_fraction(run: RunData) -> float:
    """Fraction of samples of shape (1, 1, d_model), i.e. from a decode step, not the prefill."""
    return float(np.mean([tuple(s.shape[:2]) == (1, 1) for s in run.activations]))


@metric(layout.ACTIVATIONS)
def activation_width(run: RunData) -> int:
    """The last axis of the stored samples (the model's hidden size)."""
    widths = {int(s.shape[-1]) for s in run.activations}
    if len(widths) != 1:
        raise ReplicationError(f"samples of several widths: {sorted(widths)}")
    return widths.pop()


def _float_values_are_not_zero(run: RunData) -> Reach:
    return Reach(
        1.0,
        1.0,
        "a residual-stream value is a float32 sum of many terms, exactly 0 only by coincidence, so the fraction "
        "of values that are not exactly 0 is 1 whatever the model or its training",
    )


@metric(layout.ACTIVATIONS, reach=_float_values_are_not_zero)
def nonzero_fraction(run: RunData) -> float:
    """Fraction of stored raw activation values that are not exactly 0."""
    return float((run.raw != 0).mean())


@metric(layout.ACTIVATIONS)
def above_001_fraction(run: RunData) -> float:
    """Fraction of stored raw activation values with |x| > 0.01."""
    return float((np.abs(run.raw) > 0.01).mean())


@metric(layout.ACTIVATIONS)
def raw_spread_p99_over_median(run: RunData) -> float:
    """How widely raw values vary: the 99th percentile of |x| over its median."""
    magnitude = np.abs(run.raw)
    return float(np.percentile(magnitude, 99) / np.median(magnitude))


@metric(layout.ACTIVATIONS)
def plotted_spread_p99_over_median(run: RunData) -> float:
    """What the write-up's part2.png shows -- one row per sample, the row the analysis encodes, 98 x
    d_model values --: the 99th percentile of |x| over its median."""
    magnitude = np.abs(sample_rows(run.activations)[0].numpy())
    return float(np.percentile(magnitude, 99) / np.median(magnitude))


@metric(layout.ORIGINAL_FORMAT)
def original_format_ok(run: RunData) -> bool:
    """activations_data.json is a list, one item per prompt in order, each exactly {prompt,
    generated_text, activations} with activations of the stored sample's shape (where the file is not
    committed, the capture's files rebuild it, to its recorded sha256); a run of every fed position
    (``capture.positions=all``) writes none."""
    path = run.path(layout.ORIGINAL_FORMAT)
    if path.is_file():
        items = json.loads(path.read_text())
    elif run.has(layout.ORIGINAL_FORMAT):
        text = artifacts.json_text(artifacts.original_format(run.records, run.activations), path)
        if hashlib.sha256(text.encode()).hexdigest() != run.manifest["files"][layout.ORIGINAL_FORMAT]:
            return False
        items = json.loads(text)
    else:
        return False
    records = run.records
    return (
        isinstance(items, list)
        and len(items) == len(records)
        and all(
            set(item) == {"prompt", "generated_text", "activations"}
            and item["prompt"] == record["prompt"]
            and list(np.shape(item["activations"])) == record["shape"]
            for item, record in zip(items, records, strict=False)
        )
    )


@metric(layout.SAMPLES)
def corpus_topic_fraction(run: RunData) -> float:
    """Fraction of prompts that fixtures/topics.yaml labels with a programming / CS / AI topic."""
    return float(np.mean([t != topics.OTHER for t in prompt_topics(run)]))
