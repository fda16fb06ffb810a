"""The stage runner: a stage recorded from an earlier run follows the stages whose files it read."""

from __future__ import annotations

import shutil
from pathlib import Path

from replication.api import Run, load_profile, run
from replication.rundir import layout
from replication.stages.runner import run_stage


def test_the_token_states_follow_a_retrained_sae(tiny_run: Path, tmp_path: Path) -> None:
    """The token states read the SAE: after the SAE is trained again, a run of the stages makes them
    again too, and the run verifies, where it was refused as stale."""
    directory = shutil.copytree(tiny_run, tmp_path / "run")
    run_stage(layout.TOKENS_STAGE, load_profile(str(directory / layout.CONFIG)), directory, progress=False)
    cfg = load_profile(str(directory / layout.CONFIG), {"train.l1_coefficient": 0.002})
    ran = run(cfg, directory, stages=layout.STAGES[1:])
    assert ran == [*layout.STAGES[1:], layout.TOKENS_STAGE]
    Run(directory)  # verifies every file and stage: none is stale
