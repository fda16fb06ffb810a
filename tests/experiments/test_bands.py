"""The committed run's trained parts rerun under other float rounding: compare holds them to the
reference's measured bands, and names a planted change beyond them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import REFERENCE, copy_of_reference

from replication.evaluation.claims import load_claims
from replication.evaluation.verdicts import verdicts_of
from replication.experiments import ablations
from replication.experiments.ablations import run_ablations
from replication.experiments.bands import rerun
from replication.rundir import artifacts, layout
from replication.rundir.compare import compare_runs
from replication.rundir.reader import RunData
from replication.stages.context import Context

pytestmark = pytest.mark.slow


@pytest.fixture
def rerun_on_one_thread(smollm2_package: None, tmp_path: Path) -> Path:
    """The stages after the capture, the SAE seeds and the ablations, rerun from the committed capture
    on one torch thread (the reference ran on two, whose float32 sums round otherwise)."""
    return rerun(
        REFERENCE, tmp_path / "rerun", load_claims(), threads=1, noise_seed=None, ctx=Context(), progress=False
    )


def test_the_trained_parts_are_reproduced_under_other_rounding(rerun_on_one_thread: Path) -> None:
    comparison = compare_runs(rerun_on_one_thread, REFERENCE, verdicts_of(load_claims()))
    assert comparison.reproduced, comparison.line()
    assert "1 thread" in comparison.line() and layout.ABLATIONS_JSON in comparison.differing


def test_a_planted_change_is_named(smollm2_package: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """standard_sae rerun with its L1 coefficient 20% higher, in a copy of the reference: its numbers are
    named, with the band they broke."""
    planted = copy_of_reference(tmp_path / "planted")
    description, overrides = ablations.ABLATIONS["standard_sae"]
    l1 = RunData(REFERENCE).config.train.l1_coefficient
    monkeypatch.setitem(
        ablations.ABLATIONS, "standard_sae", (description, {**overrides, "train.l1_coefficient": 1.2 * l1})
    )
    rows = run_ablations(planted, load_claims(), ["standard_sae"], ctx=Context(), progress=False)
    honest = json.loads((REFERENCE / layout.ABLATIONS_JSON).read_text())
    artifacts.write_json(planted / layout.ABLATIONS_JSON, {**honest, "standard_sae": rows["standard_sae"]})
    artifacts.record_addition(planted, "ablations", [planted / layout.ABLATIONS_JSON], {})
    comparison = compare_runs(planted, REFERENCE, verdicts_of(load_claims()))
    assert not comparison.reproduced
    where = "ablations.json.standard_sae.sample_code_l0"
    band = json.loads((REFERENCE / layout.BANDS_JSON).read_text())["bands"][where]
    named = [d for d in comparison.unexplained if d.startswith(f"{where}: ")]
    assert named and named[0].endswith(f"(band \u00b1{band:.3g})"), comparison.line()
