"""What one process keeps between stages: the loaded model, each capture's splice scorer and its fed states.

``replicate`` makes one ``Context`` and hands it to every stage, seed and ablation it runs, so the model
loads once and every SAE trained on the same capture shares one scorer. A stage run on its own gets a
fresh one. Nothing is kept in module globals.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import TypeVar

import torch

from replication.config import ModelConfig, RunConfig
from replication.model.loading import LoadedModel, load_model
from replication.model.memory import Workload
from replication.model.tokenstates import fed_states
from replication.stages.splice import LayerScorer

V = TypeVar("V")
CaptureKey = tuple[ModelConfig, str, int, str]
"""A capture's sequences at a layer of a model on a device: (model, device, layer, sha256 of the tokens)."""


@dataclass
class Context:
    """The model (only the latest one is kept), and per capture its scorer and its fed states (the
    ``kept`` most recent captures: the run's and those of its variants)."""

    kept: int = 4
    _model: tuple[tuple[ModelConfig, str], LoadedModel] | None = field(default=None, repr=False)
    _scorers: dict[CaptureKey, LayerScorer] = field(default_factory=dict, repr=False)
    _fed: dict[CaptureKey, list[torch.Tensor]] = field(default_factory=dict, repr=False)

    def model(self, cfg: ModelConfig, device: torch.device, workload: Workload | None = None) -> LoadedModel:
        """The model, loaded on first use (after the memory check for ``workload``); loading another
        model forgets the one before and everything computed with it."""
        key = (cfg, str(device))
        if self._model is None or self._model[0] != key:
            self._model = None
            self._scorers.clear()
            self._fed.clear()
            self._model = (key, load_model(cfg, device, workload))
        return self._model[1]

    def scorer(self, cfg: RunConfig, device: torch.device, sequences: list[list[int]]) -> LayerScorer:
        """The splice scorer of these sequences at the run's layer: its layer states and its clean and
        zero-ablated CE serve every SAE trained on the same capture."""
        model = self.model(cfg.model, device).model
        key = capture_key(cfg, device, sequences)
        if key in self._scorers:
            self._scorers[key] = self._scorers.pop(key)  # the most recently used goes last
        else:
            _make_room(self._scorers, self.kept)
            self._scorers[key] = LayerScorer(model, sequences, cfg.capture.layer)
        return self._scorers[key]

    def fed_states(self, cfg: RunConfig, device: torch.device, sequences: list[list[int]]) -> list[torch.Tensor]:
        """``model.tokenstates.fed_states`` of these sequences at the run's layer (the per_token ablation stores
        them, the token-states stage writes them for the cards); a new list each call."""
        model = self.model(cfg.model, device).model
        key = capture_key(cfg, device, sequences)
        if key in self._fed:
            self._fed[key] = self._fed.pop(key)  # the most recently used goes last
        else:
            _make_room(self._fed, self.kept)
            self._fed[key] = fed_states(model, cfg.capture.layer, sequences)
        return list(self._fed[key])


def capture_key(cfg: RunConfig, device: torch.device, sequences: list[list[int]]) -> CaptureKey:
    digest = hashlib.sha256(json.dumps(sequences).encode()).hexdigest()
    return (cfg.model, str(device), cfg.capture.layer, digest)


def _make_room(kept: dict[CaptureKey, V], most: int) -> None:
    """Forget the least recently used (the first) until there is room for one more."""
    while len(kept) >= most:
        del kept[next(iter(kept))]
