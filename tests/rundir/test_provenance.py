"""What a stage records of its machine: the GPU, its software, and how float32 products are computed."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from helpers import Cli

from replication.outputs.report import hbm_bandwidth
from replication.rundir import layout, provenance


@pytest.mark.parametrize(
    ("name", "terabytes_per_s"),
    [
        ("NVIDIA H100 PCIe", 2.0),
        ("NVIDIA H100 80GB HBM3", 3.35),
        ("NVIDIA H100 NVL", 3.9),
        ("NVIDIA H200", 4.8),
        ("NVIDIA A100-SXM4-80GB", 2.039),
        ("NVIDIA A100-SXM4-40GB", 1.555),
        ("NVIDIA A100 80GB PCIe", 1.935),
    ],
)
def test_the_gpu_and_its_bandwidth(name: str, terabytes_per_s: float, monkeypatch: pytest.MonkeyPatch) -> None:
    """A GPU as CUDA names it (mocked device properties), and the data sheet's HBM bandwidth for it."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(
        torch.cuda, "get_device_properties", lambda _: SimpleNamespace(name=name, total_memory=80 * 2**30)
    )
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: 91002)
    facts = provenance.machine()
    assert facts["gpu"] == name and facts["gpu_memory_gib"] == 80.0 and facts["cudnn"] == 91002
    assert "cuda" in facts and "driver" in facts
    assert hbm_bandwidth(facts["gpu"]) == pytest.approx(terabytes_per_s * 1e12)


def test_float32_products_stay_float32_under_the_tf32_override(cli: Cli, small_prompts: Path, tmp_path: Path) -> None:
    """Some NVIDIA containers set TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1, which torch reads once; a run
    removes it first, and the manifest says how products were computed."""
    out = tmp_path / "run"
    command = ("capture", "--profile", "tiny", "--prompts", str(small_prompts), "--out", str(out), "--quiet")
    result = cli(*command, env={"TORCH_ALLOW_TF32_CUBLAS_OVERRIDE": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    environment = json.loads((out / layout.MANIFEST).read_text())["stages"]["capture"]["environment"]
    assert environment["float32_matmul"] == {"precision": "highest", "cublas_tf32": False, "cudnn_tf32": False}
