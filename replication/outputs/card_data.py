"""What a feature card shows, computed from a run: which features get a card and why, and for each
its samples, code histogram, read-out, topic, untrained twin, seed matches and citing claims."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from replication.evaluation.claims import Claim, format_value
from replication.evaluation.health import feature_density
from replication.evaluation.metrics import METRICS
from replication.evaluation.metrics.implied import writeup_dimension0
from replication.evaluation.metrics.initial import init_cosines
from replication.evaluation.metrics.part4_topics import dimension_topic, topic_hits
from replication.evaluation.metrics.parts12 import prompt_topics
from replication.evaluation.metrics.registry import flat_dims
from replication.evaluation.stats import STABLE_COSINE, best_cosines
from replication.evaluation.verdicts import Result
from replication.rundir.reader import PRINTS_AS_ZERO, RunData

PER_CLAIM = 4
"""Cards per claim: the first few of the features it points at (all of them are listed in the index)."""
PER_RANKING = 5
"""Cards for the densest features of each SAE."""
QUANTILES = (0.75, 0.5, 0.25)
"""Beside the top k: the samples at these quantiles of the feature's other positive sample codes."""
TOP_K = 5
HISTOGRAM_BINS = 24


def cited_dims(claim: Claim, run: RunData) -> list[int]:
    """The dimensions a claim points at (``Metric.dims``), through its primary reading then its alternatives."""
    cites = [METRICS[name].dims for name in (claim.metric, *(a.metric for a in claim.alternatives))]
    return flat_dims(d for cite in cites if cite is not None for d in cite(run))


@dataclass
class View:
    """One SAE of the run (the faithful one, or an ablation's) with what its cards need."""

    name: str
    run: RunData
    results: list[Result]
    token_codes: list[np.ndarray]
    """Per sample, (T - 1, d_hidden): the SAE's codes at every position the model fed itself."""
    control: RunData | None
    seeds: list[tuple[int, np.ndarray]] = field(default_factory=list)
    """(seed, decoder (d, d_hidden)) of the other SAE seeds, for the faithful SAE."""
    random_baseline: float | None = None

    @cached_property
    def health(self) -> dict[str, Any]:
        """What the whole SAE is worth: reconstruction against the mean, and the splice test."""
        splice = self.run.splice or {}
        return {
            "val_fvu": METRICS["val_fvu"].compute(self.run),
            "mean_fvu": METRICS["val_mean_predictor_fvu"].compute(self.run),
            "ce_recovered": splice.get("ce_loss_recovered"),
            "decoder": self.run.sae.architecture.decoder_activation,
            **{name: METRICS[name].compute(self.run) for name in INITIALISATION},
        }

    def cited(self) -> dict[int, list[Result]]:
        """Per dimension, the results of the claims that point at it."""
        by_dim: dict[int, list[Result]] = {}
        for result in self.results:
            for dim in cited_dims(result.claim, self.run):
                by_dim.setdefault(dim, []).append(result)
        return by_dim


INITIALISATION = (
    "encoder_init_cosine",
    "decoder_init_cosine",
    "weight_change_over_steps_lr",
    "top5_shared_with_untrained",
)
"""How far training moved the whole SAE from its initialisation, on every card."""


def _init_cosines(view: View, dim: int) -> dict[str, float] | None:
    """This feature's encoder row and decoder column against their initial values (the control's SAE)."""
    cosines = {part: init_cosines(view.run, part) for part in ("encoder", "decoder")}
    return {part: float(c[dim]) for part, c in cosines.items() if c is not None} or None


def select(view: View) -> dict[int, list[str]]:
    """The dimensions to draw, each with why: the first few each claim points at, and the densest."""
    chosen: dict[int, list[str]] = {}
    for result in view.results:
        dims = cited_dims(result.claim, view.run)
        reason = result.claim.id
        topic = result.claim.metric.removeprefix("topic_max_pvalue_")
        if topic != result.claim.metric and dims:
            hits = topic_hits(view.run, topic)[dims[0]]
            reason += f" ({hits} of {TOP_K} {topic} prompts; {len(dims)} dimension{'s' * (len(dims) > 1)} tie)"
        for dim in dims[:PER_CLAIM]:
            chosen.setdefault(dim, []).append(reason)
    for dim in np.argsort(-feature_density(view.run.codes), kind="stable")[:PER_RANKING]:
        chosen.setdefault(int(dim), []).append("densest")
    return chosen


def _histogram(values: np.ndarray) -> dict[str, Any]:
    """Counts of the codes over all fed tokens: zeros apart, positives in equal bins."""
    positive = values[values > 0]
    top = float(positive.max()) if positive.size else 0.0
    counts, edges = np.histogram(positive, bins=HISTOGRAM_BINS, range=(0.0, top or 1.0))
    tallest = max(int(counts.max(initial=0)), 1)
    bars = [
        {"x": i * 10, "h": round(60 * int(c) / tallest, 1), "count": int(c), "lo": float(lo), "hi": float(hi)}
        for i, (c, lo, hi) in enumerate(zip(counts, edges[:-1], edges[1:], strict=True))
    ]
    return {"tokens": int(values.size), "zeros": int((values <= 0).sum()), "max": top, "bars": bars}


def _sample(view: View, index: int, dim: int, label: str) -> dict[str, Any]:
    record = view.run.records[index]
    codes = view.token_codes[index][:, dim]
    row = len(record["token_ids"]) - 2
    tokens = [
        {"text": text, "value": float(codes[position]) if position < codes.size else None, "row": position == row}
        for position, text in enumerate(view.run.token_text["tokens"][index])
    ]
    return {
        "index": index,
        "split": "training" if index < view.run.split_index else "validation",
        "label": label,
        "value": float(view.run.codes[index, dim]),
        "source": record["source"],
        "topic": prompt_topics(view.run)[index],
        "tokens": tokens,
        "prompt_tokens": record["prompt_tokens"],
    }


def _lower_quantiles(column: np.ndarray, shown: set[int]) -> list[tuple[int, str]]:
    """The samples at QUANTILES of the positive codes outside the top k (distinct, highest first)."""
    others = [i for i in np.argsort(-column, kind="stable") if column[i] > 0 and int(i) not in shown]
    picked: dict[int, str] = {}
    for q in QUANTILES:
        if others:
            picked.setdefault(int(others[round((1 - q) * (len(others) - 1))]), f"{round(q * 100)}th percentile")
    return list(picked.items())


def _untrained(view: View, dim: int) -> dict[str, Any] | None:
    control = view.control
    if control is None:
        return None
    column = control.codes[:, dim]
    dead = control.top["dimensions"][dim]["top"][0]["value"] < PRINTS_AS_ZERO
    return {
        "density": float((column > 0).mean()),
        "top": control.top["dimensions"][dim]["top"],
        "dead": dead,
        "topic": None if dead else dimension_topic(control, dim),
    }


def feature_card(view: View, dim: int, reasons: list[str]) -> dict[str, Any]:
    """Every fact of one card, each computed from the run's files and the token codes."""
    run = view.run
    entry = run.top["dimensions"][dim]
    dead = entry["top"][0]["value"] < PRINTS_AS_ZERO
    column = run.codes[:, dim]
    everywhere = np.concatenate([codes[:, dim] for codes in view.token_codes])
    top_indices = [t["index"] for t in entry["top"]]
    top = [(i, f"top {rank + 1}") for rank, i in enumerate(top_indices)]
    samples = [_sample(view, i, dim, label) for i, label in top + _lower_quantiles(column, set(top_indices))]
    control = _untrained(view, dim)
    direction = run.sae.decoder.weight.detach().numpy()[:, dim : dim + 1]
    seeds = [(seed, float(best_cosines(direction, decoder)[0])) for seed, decoder in view.seeds]
    return {
        "sae": view.name,
        "dim": dim,
        "health": view.health,
        "dead": dead,
        "max_row_code": float(column.max(initial=0.0)),
        "positive_top": sum(t["value"] > 0 for t in entry["top"]),
        "overlap": None if control is None else len(set(top_indices) & {t["index"] for t in control["top"]}),
        "init_cosine": _init_cosines(view, dim),
        "stable": bool(view.seeds) and all(c >= STABLE_COSINE for _, c in seeds),
        "density": float((column > 0).mean()),
        "token_density": float((everywhere > 0).mean()) if everywhere.size else 0.0,
        "max_token_code": float(everywhere.max(initial=0.0)),
        "reasons": reasons,
        "samples": samples,
        "histogram": _histogram(everywhere),
        "read_out": {side: run.token_text["read_out"][side][dim] for side in ("promoted", "suppressed")},
        "topic": None if dead else dimension_topic(run, dim),
        "control": control,
        "seeds": seeds,
        "random_baseline": view.random_baseline,
        "claims": [
            {"id": r.claim.id, "verdict": r.verdict, "measured": format_value(r.measured)}
            for r in view.cited().get(dim, [])
        ],
        "top_prompts": [t["prompt"] for t in entry["top"]],
        "writeup_list": top_indices == writeup_dimension0(),
    }
