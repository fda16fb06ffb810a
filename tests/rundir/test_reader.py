"""Reading a finished run: no model-loading code is imported, a stage's inputs are what it read, and
what the run's readers derive is shared."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
from helpers import REPO_ROOT

from replication.errors import ReplicationError
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


def test_an_untrained_sae_left_out_is_rebuilt_from_its_seed(tiny_run: Path, tmp_path: Path) -> None:
    """The control's weights, not committed, are its initialisation: the same tensors as the file held,
    and, where torch's CPU kernels are AVX2 or AVX-512 (measured: the default kernels round otherwise),
    the same bytes as the manifest records."""
    copy = shutil.copytree(tiny_run, tmp_path / "run")
    weights = copy / layout.CONTROL / layout.SAE
    recorded = control_of(RunData(copy))
    assert recorded is not None
    saved = {name: t.clone() for name, t in recorded.sae.state_dict().items()}
    weights.unlink()
    rebuilt = control_of(RunData(copy))
    assert rebuilt is not None
    state = rebuilt.sae.state_dict()
    assert state.keys() == saved.keys() and all(torch.equal(state[k], saved[k]) for k in saved)
    if torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512"):
        data = safetensors.torch.save({name: t.contiguous() for name, t in state.items()})
        assert hashlib.sha256(data).hexdigest() == RunData(copy).manifest["files"][f"{layout.CONTROL}/{layout.SAE}"]
    (copy / layout.SAE).unlink()  # a trained SAE is never rebuilt: its file is needed
    with pytest.raises(ReplicationError, match=r"sae\.safetensors"):
        _ = RunData(copy).sae
