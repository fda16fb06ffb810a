"""A finished run read lazily: each of its files loaded on first use (no model is ever loaded)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import yaml

from replication.config import RunConfig, config_from_dict
from replication.rundir import artifacts, layout
from replication.sae.autoencoder import SparseAutoencoder
from replication.sae.data import positional_split_rows, split_index
from replication.sae.training import build_sae

T = TypeVar("T")
PRINTS_AS_ZERO = 5e-5
"""A code below this prints as 0.0000, the write-up's four decimals."""


@dataclass(frozen=True)
class Untestable:
    """A metric's answer when the data cannot test it at all, with the reason."""

    reason: str

    def __str__(self) -> str:
        return f"not testable: {self.reason}"


class RunData:
    """A run directory's artifacts, each loaded on first use; ``memo`` keeps derived values."""

    def __init__(self, root: Path, overlay: str | None = None) -> None:
        self.root = root
        self.overlay = overlay
        """A subdirectory whose SAE files stand in for the run's (``control``: the untrained SAE)."""
        self._memo: dict[str, Any] = {}
        self.reads: dict[str, str] = {}
        """Every run file read through ``path``, with its sha256 then: a stage's inputs."""

    def name(self, name: str) -> str:
        """Where the file ``name`` of ``replication.rundir.layout`` lives in this view of the run."""
        if self.overlay is not None and name.startswith(layout.SAE_STAGES):
            return f"{self.overlay}/{name}"
        return name

    def target(self, name: str) -> Path:
        """Where a stage writes the file ``name`` of this view of the run (not noted as read)."""
        return self.root / self.name(name)

    def path(self, name: str) -> Path:
        """A file of the run by its name in ``replication.rundir.layout``; its sha256 is noted in ``reads``."""
        path = self.root / self.name(name)
        if path.is_file():
            self.reads[self.name(name)] = artifacts.sha256_file(path)
        return path

    def memo(self, key: str, compute: Callable[[], T]) -> T:
        """``compute()`` once per run: for values several metrics share (e.g. one permutation test)."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]  # type: ignore[no-any-return]

    def json(self, name: str) -> Any:
        return artifacts.read_json(self.path(name))

    @cached_property
    def manifest(self) -> dict[str, Any]:
        return artifacts.read_manifest(self.root)

    @cached_property
    def config(self) -> RunConfig:
        return config_from_dict(yaml.safe_load(self.path(layout.CONFIG).read_text()))

    @cached_property
    def info(self) -> dict[str, Any]:
        info: dict[str, Any] = self.json(layout.CAPTURE_INFO)
        return info

    @cached_property
    def records(self) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = self.json(layout.SAMPLES)
        return records

    @cached_property
    def prompts(self) -> list[str]:
        return [r["prompt"] for r in self.records]

    @cached_property
    def activations(self) -> list[torch.Tensor]:
        """The captured (1, T, d) samples in corpus order."""
        tensors = artifacts.load_tensors(self.path(layout.ACTIVATIONS))
        return [tensors[layout.sample_key(i)] for i in range(len(tensors))]

    @cached_property
    def raw(self) -> np.ndarray:
        """Every stored activation row of every sample, (rows, d)."""
        return torch.cat([s[0] for s in self.activations]).numpy()

    @cached_property
    def history(self) -> list[dict[str, float]]:
        history: list[dict[str, float]] = self.json(layout.HISTORY)
        return history

    @cached_property
    def train_summary(self) -> dict[str, Any]:
        summary: dict[str, Any] = self.json(layout.TRAIN_SUMMARY)
        return summary

    @cached_property
    def sae(self) -> SparseAutoencoder:
        """The best SAE; one that took no step, where its weights are not committed, rebuilt from its seed."""
        self.path(layout.SAE_CFG)  # noted as read: the architecture
        weights = self.path(layout.SAE)
        if not weights.is_file() and self.has(self.name(layout.SAE)) and self.train_summary["best_epoch"] == 0:
            return build_sae(self.info["d_model"], self.config.train).eval()
        return SparseAutoencoder.load(weights.parent)

    @property
    def split_index(self) -> int:
        """Samples 0..split_index-1 trained the SAE, the rest validated it (``sae.data.split_index``)."""
        return split_index(len(self.records), self.config.train.train_fraction)

    @cached_property
    def split(self) -> tuple[np.ndarray, np.ndarray]:
        """The training and validation samples' real rows (no padding), positional split."""
        train, val = positional_split_rows(self.activations, self.config.train.train_fraction)
        return train.numpy(), val.numpy()

    def reconstruct(self, x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return np.asarray(self.sae(torch.from_numpy(x)).x_hat.numpy())

    @cached_property
    def splice(self) -> dict[str, Any] | None:
        """The splice test's results; None for a run that has no splice stage."""
        path = self.path(layout.SPLICE)
        return artifacts.read_json(path) if path.is_file() else None  # type: ignore[no-any-return]

    @cached_property
    def top(self) -> dict[str, Any]:
        top: dict[str, Any] = self.json(layout.TOP_PROMPTS)
        return top

    @cached_property
    def codes(self) -> np.ndarray:
        """One code row per sample, (N, d_hidden), from the best SAE."""
        return artifacts.load_tensors(self.path(layout.CODES))["codes"].numpy()

    @cached_property
    def token_states(self) -> list[torch.Tensor]:
        """Per sample, (T - 1, d): the hooked layer's state at every position the model fed itself."""
        tensors = artifacts.load_tensors(self.path(layout.TOKEN_STATES))
        return [tensors[layout.sample_key(i)] for i in range(len(tensors))]

    @cached_property
    def token_text(self) -> dict[str, Any]:
        """``tokens``: every token of each sequence as text; ``read_out``: per SAE feature, the tokens
        its decoder direction promotes and suppresses most, as [text, logit]."""
        text: dict[str, Any] = self.json(layout.TOKEN_TEXT)
        return text

    @cached_property
    def pca(self) -> dict[str, Any]:
        pca: dict[str, Any] = self.json(layout.PCA)
        return pca

    @cached_property
    def live(self) -> list[dict[str, Any]]:
        """Code dimensions whose top prompt prints as non-zero."""
        return [d for d in self.top["dimensions"] if d["top"][0]["value"] >= PRINTS_AS_ZERO]

    @cached_property
    def live_top(self) -> tuple[np.ndarray, np.ndarray]:
        """The live dimensions' top prompts as (indices, value > 0), each (live, k)."""
        top = np.array([[t["index"] for t in d["top"]] for d in self.live])
        positive = np.array([[t["value"] > 0 for t in d["top"]] for d in self.live])
        return top, positive

    def has(self, name: str) -> bool:
        """Whether the manifest records ``name`` (a later step, e.g. seeds.json, may not have run)."""
        return name in self.manifest.get("files", {})


def control_of(run: RunData) -> RunData | None:
    """The run's untrained control -- the same SAE at its initialisation, no optimiser step, through the
    same analysis (``<run>/control/``) -- when its control stage ran. One view per run, so what its
    metrics derive (the permutation tests, the initial weights) is computed once for everything that
    reads it; the control of a control is a view of the same files."""

    def view() -> RunData | None:
        control = RunData(run.root, overlay=layout.CONTROL)
        return control if control.path(layout.CODES).is_file() else None

    return run.memo("control", view)


def shuffled_of(run: RunData) -> RunData | None:
    """The run's training-curve control -- the same recipe on the activations with each dimension
    shuffled across rows (``<run>/shuffled/``) -- when its stage ran; one view per run."""

    def view() -> RunData | None:
        shuffled = RunData(run.root, overlay=layout.SHUFFLED)
        return shuffled if shuffled.path(layout.HISTORY).is_file() else None

    return run.memo("shuffled", view)
