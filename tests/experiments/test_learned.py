"""The learned arm: its scores on an SAE built to reconstruct exactly and on one that reconstructs
nothing, its feature test on a planted topic, and the step on the tiny run."""

from __future__ import annotations

import json
import shutil
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
import torch

from replication.api import Run
from replication.cli import main
from replication.evaluation.metrics.part4 import sample_types
from replication.experiments import learned, power
from replication.model.loading import LoadedModel
from replication.rundir.artifacts import verify_manifest
from replication.rundir.reader import RunData
from replication.sae.data import sample_rows

sparsify = pytest.importorskip("sparsify")


def _exact(d: int) -> object:
    """A TopK SAE of 2d latents that codes x as relu(x) and relu(-x) and decodes them back: x exactly."""
    sae = sparsify.SparseCoder(d, sparsify.SaeConfig(num_latents=2 * d, k=2 * d))
    with torch.no_grad():
        basis = torch.cat([torch.eye(d), -torch.eye(d)])
        sae.encoder.weight.copy_(basis)
        sae.encoder.bias.zero_()
        sae.W_dec.copy_(basis)
        sae.b_dec.zero_()
    return sae


def _held_out(tiny_model: LoadedModel) -> list[list[int]]:
    text, _ = learned.corpus()
    ids = tiny_model.tokenizer(text[:20_000])["input_ids"]
    return [ids[i * 64 : (i + 1) * 64] for i in range(4)]


def test_an_exact_sae_recovers_everything_and_an_empty_one_nothing(tiny_model: LoadedModel) -> None:
    model, held_out = tiny_model.model, _held_out(tiny_model)
    d = model.config.hidden_size
    exact = learned.scores(model, {"exact": _exact(d)}, held_out, layer=10)["exact"]
    assert exact["fvu"] == pytest.approx(0.0, abs=1e-10)
    assert exact["l0"] == pytest.approx(d, abs=1)  # one of relu(x), relu(-x) is on per value
    assert exact["ce_sae"] == pytest.approx(exact["ce_clean"], abs=1e-5)
    assert exact["ce_recovered_zero"] == pytest.approx(1.0, abs=1e-3)
    assert exact["ce_recovered_mean"] == pytest.approx(1.0, abs=1e-3)
    empty = _exact(d)
    with torch.no_grad():
        empty.W_dec.zero_()  # it decodes every code to 0: the zero-ablation itself
    nothing = learned.scores(model, {"empty": empty}, held_out, layer=10)["empty"]
    assert nothing["fvu"] > 1.0  # 0 is further from the rows than their mean is
    assert nothing["ce_sae"] == pytest.approx(nothing["ce_zero"], abs=1e-5)
    assert nothing["ce_recovered_zero"] == pytest.approx(0.0, abs=1e-3)


def test_the_corpus_is_the_standard_librarys_sources() -> None:
    text, info = learned.corpus()
    files = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))
    assert info["files"] == len(files) > 100
    assert text.startswith(files[0].read_text(encoding="utf-8", errors="replace"))
    assert len(info["sha256"]) == 64 and learned.corpus()[1]["sha256"] == info["sha256"]


def test_the_feature_test_through_an_sae_flags_a_planted_topic_and_not_chance(tiny_run: Path) -> None:
    """Power on a planted case: through the exact SAE, a topic direction of 0.3 of the median row norm
    along one axis is flagged; the same labels without it are not."""
    run = RunData(tiny_run)
    x = sample_rows(run.activations)[0].numpy().astype(np.float64)
    strata = sample_types(run)
    rng = np.random.default_rng(0)
    is_topic = np.zeros(len(x), dtype=bool)
    is_topic[rng.choice(len(x), 15, replace=False)] = True
    flags = power.feature_flags(lambda rows: learned.codes(_exact(x.shape[1]), torch.from_numpy(rows)), strata)
    assert not flags(x.astype(np.float32), is_topic)
    planted = x.copy()
    planted[is_topic, 3] += 0.3 * np.median(np.linalg.norm(x, axis=1))
    assert flags(planted.astype(np.float32), is_topic)
    assert (
        power.feature_test(
            learned.codes(_exact(x.shape[1]), torch.from_numpy(planted).float()), is_topic, strata
        ).feature
        == 3
    )


def test_learned_on_the_tiny_run(tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The step end to end on 8,192 tokens (4 steps), quiet: what it writes and the manifest."""
    run = shutil.copytree(tiny_run, tmp_path / "run")
    result = learned.run_learned(run, tokens=8192)
    assert capsys.readouterr() == ("", "")  # sparsify's prints and bar are held back
    assert json.loads((run / "learned" / "learned.json").read_text()) == result
    files = verify_manifest(run)["files"]
    assert {"learned/learned.json", "learned/sae/sae.safetensors", "learned/sae/cfg.json"} <= set(files)
    assert result["corpus"]["tokens"] == 8192 and result["sae"]["steps"] == 4
    assert set(result["topics"]) == {"javascript_web", "testing", "oop"}
    for scores in result["scores"].values():
        assert scores["fvu"] > 0 and scores["l0"] <= learned.K and scores["tokens"] == 32 * 255
    Run(run).report()
    report = (run / "REPORT.md").read_text()
    assert "## An SAE that learns (beyond the write-up)" in report
    assert f"| FVU | {result['scores']['learned']['fvu']:.3f} | {result['scores']['untrained']['fvu']:.3f} |" in report


def test_without_sparsify_one_line_names_the_extra(
    tiny_run: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "sparsify", None)  # import sparsify then fails
    assert main(["learned", "--run", str(tiny_run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "eai-sparsify" in err and "[learned]" in err
