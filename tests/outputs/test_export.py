"""SAELens export: the files, their layout, and what cannot be exported."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from packaging.version import Version
from safetensors.torch import load_file

from replication.__main__ import main
from replication.outputs.export import SAELENS_VERSION
from replication.rundir.artifacts import verify_manifest
from replication.rundir.reader import RunData


@pytest.fixture(scope="module")
def exported(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("export") / "run"
    shutil.copytree(tiny_run, run)
    assert main(["ablations", "--run", str(run), "--only", "standard_sae", "--quiet"]) == 0
    assert main(["export", "--run", str(run)]) == 0
    return run


def test_faithful_relu_decoder_is_not_exported(exported: Path) -> None:
    index = json.loads((exported / "export" / "index.json").read_text())
    faithful = index["saes"]["faithful"]
    assert faithful["exported"] is False
    assert "ReLU" in faithful["reason"] and "decode differently" in faithful["reason"]
    assert not (exported / "export" / "faithful").exists()


def test_standard_sae_export_in_saelens_layout(exported: Path) -> None:
    index = json.loads((exported / "export" / "index.json").read_text())
    assert index["saes"]["standard_sae"]["exported"] is True
    directory = exported / "export" / "standard_sae"
    cfg = json.loads((directory / "cfg.json").read_text())
    assert (cfg["architecture"], cfg["d_in"], cfg["d_sae"]) == ("standard", 64, 128)
    assert cfg["apply_b_dec_to_input"] is False and cfg["normalize_activations"] == "none"
    meta = cfg["metadata"]
    # The format version written is the package's one constant, and a SAELens 6 format (what
    # SAE.load_from_disk of sae-lens 6 reads without its converter for older configs).
    assert meta["sae_lens_version"] == SAELENS_VERSION
    assert Version(meta["sae_lens_version"]) >= Version("6")
    assert meta["hook_name"] == "model.layers.10" and meta["model_name"] == "tiny-random-llama"
    assert meta["decoder_output_activation"] == "linear"
    weights = load_file(directory / "sae_weights.safetensors")
    assert {k: tuple(v.shape) for k, v in weights.items()} == {
        "W_enc": (64, 128),
        "b_enc": (128,),
        "W_dec": (128, 64),
        "b_dec": (64,),
    }
    sae = RunData(exported / "variants" / "standard_sae").sae
    torch.testing.assert_close(weights["W_enc"], sae.encoder.weight.T, rtol=0, atol=0)
    torch.testing.assert_close(weights["W_dec"], sae.decoder.weight.T, rtol=0, atol=0)
    # SAELens's standard equations on the exported weights give the codes and reconstruction we stored.
    ref = load_file(directory / "reference_codes.safetensors")
    codes = torch.relu(ref["inputs"] @ weights["W_enc"] + weights["b_enc"])
    torch.testing.assert_close(codes, ref["codes"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(codes @ weights["W_dec"] + weights["b_dec"], ref["reconstruction"], rtol=1e-5, atol=1e-5)
    assert ref["inputs"].shape == (98, 64)


def test_export_is_recorded_and_reported(exported: Path) -> None:
    manifest = verify_manifest(exported)
    assert "export/standard_sae/cfg.json" in manifest["files"]
    assert main(["report", "--run", str(exported)]) == 0
    report = (exported / "REPORT.md").read_text()
    assert "## SAELens export" in report and "`export/standard_sae/`" in report
    assert "## Ablations" in report and "| `standard_sae` |" in report  # the run's ablations.json
