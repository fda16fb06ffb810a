"""Reading a finished run: no model-loading code is imported, a stage's inputs are what it read, and
what the run's readers derive is shared."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from helpers import REPO_ROOT

from replication.rundir import layout
from replication.rundir.reader import RunData, control_of


def test_reading_a_run_imports_no_model_loading_code() -> None:
    """At run time too (lint-imports checks the import statements): every module of the layers that read
    a finished run, the command line and the API load no model library and no model or stage code."""
    code = (
        "import importlib, pkgutil, sys\n"
        "import replication.rundir, replication.evaluation, replication.outputs\n"
        "for package in (replication.rundir, replication.evaluation, replication.outputs):\n"
        "    for info in pkgutil.walk_packages(package.__path__, package.__name__ + '.'):\n"
        "        importlib.import_module(info.name)\n"
        "import replication.__main__, replication.cli, replication.api\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'transformers', 'gguf', 'accelerate'}"
        " or m.startswith(('replication.model', 'replication.stages', 'replication.experiments'))))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, check=True)
    assert result.stdout.strip() == "[]"


def test_a_stages_inputs_are_the_files_it_read(tiny_run: Path) -> None:
    """Recorded by RunData as the stage reads them, in the order read, with the sha256 then."""
    stages = json.loads((tiny_run / layout.MANIFEST).read_text())["stages"]
    assert list(stages["capture"]["inputs"]) == [layout.CORPUS]
    assert list(stages["train"]["inputs"]) == [layout.ACTIVATIONS]
    sae = [layout.SAE_CFG, layout.SAE]  # its architecture, then its weights
    assert list(stages["analyze"]["inputs"]) == [layout.ACTIVATIONS, layout.SAMPLES, *sae, layout.LAST_CODES]
    assert list(stages["splice"]["inputs"]) == [layout.SAMPLES, layout.ACTIVATIONS, *sae]
    # The control reads its own SAE back for its analysis: a stage's own outputs are not its inputs.
    assert list(stages["control"]["inputs"]) == [layout.ACTIVATIONS, layout.SAMPLES]
    files = json.loads((tiny_run / layout.MANIFEST).read_text())["files"]
    assert stages["analyze"]["inputs"][layout.SAE] == files[layout.SAE]


def test_rundata_notes_each_read_and_shares_its_memos(tiny_run: Path) -> None:
    run = RunData(tiny_run)
    assert run.reads == {}
    assert len(run.activations) == 98
    assert list(run.reads) == [layout.ACTIVATIONS]
    # A memo is the value first computed, for every reader of this run and for no other run.
    kept = run.memo("x", list)
    assert run.memo("x", list) is kept and RunData(tiny_run).memo("x", list) is not kept
    control = control_of(run)
    assert control is not None and control_of(run) is control
    # The split is positional, no padding rows: the first int(0.8 * 98) = 78 samples' real rows train.
    train, val = run.split
    assert train.shape[0] == sum(s.shape[1] for s in run.activations[:78])
    np.testing.assert_array_equal(val[-1], run.activations[-1][0, -1].numpy())
