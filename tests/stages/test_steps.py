"""The stages' bodies: what the capture stage records of its generation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import REPO_ROOT

from replication.api import load_profile, run
from replication.rundir import layout


@pytest.mark.parametrize("batch_size", [1, 8])
def test_forward_passes_are_counted_once_per_batch(batch_size: int, tmp_path: Path) -> None:
    """A decode step of a batch is one forward pass over all its rows: the time per pass is measured
    against the bound of reading the weights once, so the rows' own calls must not be summed."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(p + "\n" for p in (REPO_ROOT / "fixtures/prompts.txt").read_text().splitlines()[:8]))
    cfg = load_profile("tiny", {"capture.prompts": str(prompts), "capture.batch_size": batch_size})
    run(cfg, tmp_path / "run", stages=("capture",))
    passes = json.loads((tmp_path / "run" / layout.MANIFEST).read_text())["stages"]["capture"]["forward_calls"]
    samples = json.loads((tmp_path / "run" / layout.SAMPLES).read_text())
    calls = [s["hook_calls"] for s in samples]
    if batch_size == 1:
        assert passes == sum(calls)
    else:  # one generate: at least the longest row's calls, at most its budget of new tokens
        assert max(calls) <= passes <= cfg.capture.max_length - min(s["prompt_tokens"] for s in samples)
        assert passes < sum(calls)


def test_every_fed_position_is_not_written_in_the_originals_format(tmp_path: Path) -> None:
    """The original saved one last-call sample a prompt as JSON; every fed position as indented JSON
    would be about 0.5 GB at the seed's scale, and in no format of the original's."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(p + "\n" for p in (REPO_ROOT / "fixtures/prompts.txt").read_text().splitlines()[:3]))
    cfg = load_profile("tiny", {"capture.prompts": str(prompts), "capture.positions": "all"})
    run(cfg, tmp_path / "run", stages=("capture",))
    outputs = json.loads((tmp_path / "run" / layout.MANIFEST).read_text())["stages"]["capture"]["outputs"]
    assert layout.ORIGINAL_FORMAT not in outputs and not (tmp_path / "run" / layout.ORIGINAL_FORMAT).exists()
    assert layout.ACTIVATIONS in outputs
