"""Plain helpers the tests share (conftest.py exposes them as fixtures)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from huggingface_hub import constants
from safetensors.numpy import load_file

from replication.config import RunConfig
from replication.evaluation.claims import Claim
from replication.evaluation.metrics import METRICS
from replication.evaluation.metrics.part4 import WHITEBOX_PROMPT
from replication.rundir import artifacts, layout
from replication.rundir.artifacts import verify_manifest
from replication.rundir.reader import RunData
from replication.sae.autoencoder import SparseAutoencoder

REPO_ROOT = Path(__file__).resolve().parents[1]
"""The checkout: the committed runs, the report, the fixtures."""

Cli = Callable[..., subprocess.CompletedProcess[str]]
"""The type of the ``cli`` fixture."""


def hub_cache(monkeypatch: Any, home: Path) -> None:
    """Points this process's Hugging Face cache at ``home`` (HF_HOME) and keeps it offline:
    huggingface_hub reads the environment into ``constants`` when it is imported and takes the cache
    location from there at each call, so both are set."""
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m replication ARGS`` in a fresh interpreter from the repository root; ``env`` is
    added to this process's environment (e.g. HF_HOME, which Hugging Face reads when imported)."""
    return subprocess.run(
        [sys.executable, "-m", "replication", *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, **(env or {})},
        check=False,
    )


def compute(name: str, run: RunData) -> Any:
    """The value of the metric ``name`` on ``run``: a test works the value it expects out by hand, never by
    the metric's own formula."""
    return METRICS[name].compute(run)


def fake_run(
    root: Path,
    *,
    config: RunConfig | None = None,
    info: dict[str, Any] | None = None,
    records: list[dict[str, Any]] | None = None,
    activations: list[torch.Tensor] | None = None,
    history: list[dict[str, Any]] | None = None,
    sae: SparseAutoencoder | None = None,
    codes: np.ndarray | None = None,
    top: dict[str, Any] | None = None,
) -> RunData:
    """A run directory holding only the files given, written where and as the stages write them, and
    a fresh ``RunData`` reading them back: a metric sees exactly what it would read from a run."""
    root.mkdir(parents=True, exist_ok=True)
    if config is not None:
        artifacts.write_config(root, config.to_dict())
    if info is not None:
        artifacts.write_json(root / layout.CAPTURE_INFO, info)
    if records is not None:  # every real record has its sample type: a decode step unless given
        artifacts.write_json(root / layout.SAMPLES, [{"source": "decode", **r} for r in records])
    if activations is not None:
        tensors = {layout.sample_key(i): a.clone() for i, a in enumerate(activations)}
        artifacts.save_tensors(root / layout.ACTIVATIONS, tensors, {})
    if history is not None:
        artifacts.write_json(root / layout.HISTORY, history)
    if sae is not None:
        sae.save(root / layout.TRAIN_DIR)
    if codes is not None:
        artifacts.save_tensors(root / layout.CODES, {"codes": torch.from_numpy(np.asarray(codes))}, {})
    if top is not None:
        artifacts.write_json(root / layout.TOP_PROMPTS, top)
    return RunData(root)


SMALL_PROMPTS = (REPO_ROOT / "fixtures" / "prompts.txt").read_text().splitlines()[:2]  # 1 trains, 1 validates
SMALL_MAX_LENGTH = "--capture.max_length=22"
"""The two prompts are 16 and 18 tokens long: 10 decode steps in all keep a run under a second."""


def run_args(out: Path, prompts: Path) -> list[str]:
    """The command line of a small tiny-profile run (the ``small_prompts`` fixture's two prompts)."""
    return ["run", "--profile", "tiny", SMALL_MAX_LENGTH, "--prompts", str(prompts), "--out", str(out), "--quiet"]


def assert_complete(run: Path) -> None:
    """Every file under a final name is whole; if there is a manifest, the run verifies."""
    for path in run.rglob("*"):
        if not path.is_file() or path.name.startswith("."):
            continue  # a temporary name that a kill left behind
        if path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".safetensors":
            load_file(str(path))
        elif path.suffix == ".yaml":
            yaml.safe_load(path.read_text())
    if (run / "manifest.json").exists():
        verify_manifest(run)


def write_key(final: Path, root: Path) -> tuple[str, str]:
    """Which write of a run this is, for a test that fails each write once: the file, and the
    nearest manifest above it as it stands (so each stage's rewrite of config.yaml and
    manifest.json is a write of its own). The pages of a directory staged to be swapped in whole
    (.cards.XXXX) count as one write: "cards/"."""
    relative = final.relative_to(root)
    if relative.parts[0].startswith(".cards."):
        return "cards/", ""
    above = [d for d in final.parents if d.is_relative_to(root)]
    manifest = next((d / layout.MANIFEST for d in above if (d / layout.MANIFEST).is_file()), None)
    return str(relative), (manifest.read_text() if manifest else "")


def writes_in_a_run(run: Path) -> int:
    """How many files a run's stages wrote: each stage's outputs, plus config.yaml and
    manifest.json once a stage."""
    return sum(len(r["outputs"]) + 2 for r in artifacts.read_manifest(run)["stages"].values())


def claim(**fields: object) -> Claim:
    """A measured claim on the tiny profile (stop_epoch >= 5 unless told otherwise)."""
    base: dict[str, object] = {
        "id": "t.x",
        "section": "T",
        "quote": "q",
        "kind": "measured",
        "metric": "stop_epoch",
        "op": "ge",
        "value": 5,
        "profiles": ("tiny",),
    }
    return Claim(**(base | fields))  # type: ignore[arg-type]


class FullDisk:
    """``os.write`` that fails (ENOSPC, or ``code``) each write into a file under ``root`` once
    (``helpers.write_key``; with ``only``, the files whose path in the run starts so): half its
    bytes go to the disk, then the error. Run after run of the same command, every write fails
    once, in turn. ``last`` is the file (its final name) that failed last."""

    def __init__(self, root: Path, code: int = errno.ENOSPC, only: tuple[str, ...] = ("",)) -> None:
        self.root, self.code, self.only, self.real = root, code, only, os.write
        self.failed: list[tuple[str, str]] = []
        self.last = root

    def __call__(self, fd: int, data: Any) -> int:
        temporary = Path(os.readlink(f"/proc/self/fd/{fd}"))  # .NAME.RANDOM.tmp beside NAME
        final = temporary.with_name(temporary.name[1:].rsplit(".", 2)[0])
        if final.is_relative_to(self.root) and self._due(key := write_key(final, self.root)):
            self.failed.append(key)
            self.last = final
            self.real(fd, bytes(data)[: len(data) // 2])
            raise OSError(self.code, os.strerror(self.code))
        return self.real(fd, data)

    def _due(self, key: tuple[str, str]) -> bool:
        return key not in self.failed and key[0].startswith(self.only)


def temporary_names(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith(".")]


# ---- Hand-built top prompts (analyze/top_prompts.json) -----------------------------------------

JS = "How do JavaScript closures differ from Python's?"


TESTING = "How do you write a good unit test?"


OOP = "What is inheritance in object-oriented programming?"


PLAIN = "Tell me about the weather on a quiet day."


def dim(
    index: int, top: list[int], values: list[float] | None = None, prompts: list[str] | None = None
) -> dict[str, Any]:
    """One code dimension of analyze/top_prompts.json: its top-5 prompt indices, highest first."""
    values = values if values is not None else [5.0, 4.0, 3.0, 2.0, 1.0]
    return {
        "dim": index,
        "top": [
            {"index": i, "value": v, "prompt": prompts[i] if prompts else f"p{i}"}
            for i, v in zip(top, values, strict=True)
        ],
    }


DEAD = [0.0, 0.0, 0.0, 0.0, 0.0]


PRINTS_AS_ZERO = [4e-5, 3e-5, 0.0, 0.0, 0.0]  # 0.0000 at four decimals: dead


PRINTS_AS_00001 = [5e-5, 0.0, 0.0, 0.0, 0.0]  # 0.0001 at four decimals: live


WHITEBOX_CORPUS = [WHITEBOX_PROMPT, *(f"prompt {i}" for i in range(1, 10))]  # 10 prompts, white-box first


def whitebox_run(tmp_path: Path) -> RunData:
    dims = [
        dim(0, [0, 1, 2, 3, 4], prompts=WHITEBOX_CORPUS),  # live, white-box first
        dim(1, [0, 5, 6, 7, 8], [0.5, 0.0, 0.0, 0.0, 0.0], prompts=WHITEBOX_CORPUS),  # live, white-box first
        dim(2, [1, 0, 2, 3, 4], prompts=WHITEBOX_CORPUS),  # live, white-box second: not counted
        dim(3, [9, 8, 7, 6, 5], prompts=WHITEBOX_CORPUS),  # live
        dim(4, [0, 1, 2, 3, 4], DEAD, prompts=WHITEBOX_CORPUS),  # white-box first but dead: not counted
    ]
    # Prompts 0-4 (the white-box question among them) are prefill-shaped samples, 5-9 decode steps.
    sources = ["prefill"] * 5 + ["decode"] * 5
    records = [{"prompt": p, "source": s} for p, s in zip(WHITEBOX_CORPUS, sources, strict=True)]
    return fake_run(tmp_path, top={"dimensions": dims}, records=records)


TOPIC_PROMPTS = {"javascript_web": JS, "testing": TESTING, "oop": OOP}


def topic_run(tmp_path: Path, topic: str, n_topic: int = 5) -> RunData:
    """20 prompts, those at 10 .. 10 + n_topic - 1 of ``topic``; one live dimension whose top 5 are
    prompts 10, 11, 12, 5, 6 (3 topic prompts when n_topic >= 3), and a dead one on 10 .. 14."""
    prompts = [PLAIN] * 20
    prompts[10 : 10 + n_topic] = [TOPIC_PROMPTS[topic]] * n_topic
    dims = [dim(0, [10, 11, 12, 5, 6]), dim(1, [10, 11, 12, 13, 14], DEAD)]
    return fake_run(tmp_path, top={"dimensions": dims}, records=[{"prompt": p} for p in prompts])


def with_power_and_planted(root: Path) -> Path:
    """The run at ``root`` given hand-written power.json and planted.json, recorded as their steps
    record them: the probe finds javascript_web, not testing; no feature beats chance; of 256 planted
    features the faithful recipe recovers 0, the standard one 250 at 30000 samples."""
    probe = {"javascript_web": (0.78, 0.0099), "testing": (0.55, 0.4)}
    power = {
        "strengths": [0.0, 0.1],
        "directions": 10,
        "detected_at": 0.8,
        "topics": {
            topic: {
                "prompts": 15,
                "probe": {"auroc": auroc, "p": p},
                "features": {"trained": {"auroc": 0.7, "p": 0.43}, "untrained": {"auroc": 0.71, "p": untrained_p}},
                "detected": {"probe": probe_detects, "features, trained": None, "top 5, trained": probe_detects},
            }
            for topic, (auroc, p), untrained_p, probe_detects in zip(
                probe, probe.values(), (0.28, 0.21), (0.1, None), strict=True
            )
        },
    }
    rows = [
        {"samples": n, "recovered": r, "epochs": 5, "median_best_cosine": 0.5, "matched_mean_cosine": 0.5}
        for n, r in ((98, 0), (1000, 3), (30000, 250))
    ]
    planted = {"features": 256, "active": 5, "threshold": 0.9, "recipes": {"faithful": rows[:1], "standard_sae": rows}}
    for name, data in (("power.json", power), ("planted.json", planted)):
        artifacts.write_json(root / name, data)
        artifacts.record_addition(root, name.removesuffix(".json"), [root / name], {})
    return root


REFERENCE = REPO_ROOT / "runs" / "smollm2"
"""The committed reference run."""


def manifest_files(committed: bool = True) -> list[str]:
    """The files the committed run's manifest lists (none where the run is absent): those a clean
    clone has, or with ``committed=False`` those it leaves out."""
    if not (REFERENCE / "manifest.json").is_file():
        return []
    names = json.loads((REFERENCE / "manifest.json").read_text())["files"]
    return sorted(name for name in names if layout.committed(name) == committed)


def copy_of_reference(copy: Path) -> Path:
    """The committed run's files, as a clean clone has them, in ``copy``."""
    for name in [*manifest_files(), "manifest.json"]:
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REFERENCE / name, copy / name)
    return copy
