"""Comparing a run with a reference: byte for byte on the same CPU kernels, within tolerance on another
family, texts and tokens always exact, verdicts unchanged; each difference named."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from replication.__main__ import main
from replication.evaluation.claims import load_claims
from replication.evaluation.verdicts import evaluate_all, verdicts_of, write_verdicts
from replication.rundir import artifacts, layout
from replication.rundir.compare import ATOL, compare_runs
from replication.rundir.reader import RunData


@pytest.fixture(scope="module")
def reference(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny run with its verdicts recorded, as a committed reference has them."""
    run = tmp_path_factory.mktemp("reference") / "run"
    shutil.copytree(tiny_run, run)
    path = write_verdicts(RunData(run), evaluate_all(load_claims(), RunData(run)))
    artifacts.record_addition(run, "report", [path], {})
    return run


@pytest.fixture
def twin(reference: Path, tmp_path: Path) -> Path:
    run = tmp_path / "twin"
    shutil.copytree(reference, run)
    return run


def other_kernels(run: Path) -> None:
    manifest = artifacts.read_manifest(run)
    manifest["stages"]["capture"]["environment"]["cpu_capability"] = "ANOTHER"
    artifacts.write_json(run / layout.MANIFEST, manifest)


def rehash(run: Path, name: str) -> None:
    """The manifest as a run that wrote these bytes itself would have it."""
    manifest = artifacts.read_manifest(run)
    manifest["files"][name] = artifacts.sha256_file(run / name)
    for stage in manifest["stages"].values():
        if name in stage.get("inputs", {}):
            stage["inputs"][name] = manifest["files"][name]
    artifacts.write_json(run / layout.MANIFEST, manifest)


def nudge_codes(run: Path, by: float) -> None:
    codes = artifacts.load_tensors(run / layout.CODES)["codes"].clone()
    codes[0, 0] += by
    artifacts.save_tensors(run / layout.CODES, {"codes": codes}, {})
    rehash(run, layout.CODES)


def test_a_copy_is_reproduced_byte_for_byte(twin: Path, reference: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = compare_runs(twin, reference, verdicts_of(load_claims()))
    assert result.reproduced and result.differing == [] and result.same_kernels
    assert result.line().startswith("reproduced byte for byte")
    assert main(["compare", "--run", str(twin), "--reference", str(reference)]) == 0
    assert capsys.readouterr().out.startswith("compare: reproduced byte for byte")


def test_any_difference_on_the_same_kernels_is_unexplained(twin: Path, reference: Path) -> None:
    nudge_codes(twin, 1e-7)
    result = compare_runs(twin, reference, verdicts_of(load_claims()))
    assert not result.reproduced and result.unexplained == [f"{layout.CODES} differs on the same CPU kernels"]
    assert main(["compare", "--run", str(twin), "--reference", str(reference)]) == 1


@pytest.mark.parametrize("stage", ["capture", "train"])
def test_another_thread_count_is_held_to_the_tolerance(stage: str, twin: Path, reference: Path) -> None:
    """torch splits a float32 sum by its threads: the same CPU capability on another thread count,
    in any stage, rounds differently, so a difference there is explained, not a failure to reproduce."""
    manifest = artifacts.read_manifest(twin)
    environment = manifest["stages"][stage]["environment"]
    environment["torch_threads"] += 1
    artifacts.write_json(twin / layout.MANIFEST, manifest)
    nudge_codes(twin, ATOL / 10)
    result = compare_runs(twin, reference, verdicts_of(load_claims()))
    assert not result.same_kernels and result.reproduced and result.differing == [layout.CODES]
    assert f"{environment['torch_threads']} thread" in result.line()


def test_other_kernels_are_held_to_the_tolerance(twin: Path, reference: Path) -> None:
    other_kernels(twin)
    nudge_codes(twin, ATOL / 10)
    result = compare_runs(twin, reference, verdicts_of(load_claims()))
    assert result.reproduced and result.differing == [layout.CODES]
    assert result.line().startswith("reproduced within rtol")
    nudge_codes(twin, 1.0)
    result = compare_runs(twin, reference, verdicts_of(load_claims()))
    assert not result.reproduced and result.unexplained == [f"{layout.CODES}:codes beyond tolerance"]


def test_texts_and_tokens_must_be_identical_on_any_kernels(twin: Path, reference: Path) -> None:
    other_kernels(twin)
    records = json.loads((twin / layout.SAMPLES).read_text())
    records[3]["token_ids"][-1] += 1
    artifacts.write_json(twin / layout.SAMPLES, records)
    rehash(twin, layout.SAMPLES)
    result = compare_runs(twin, reference, verdicts_of(load_claims()))
    assert result.unexplained == [f"{layout.SAMPLES} differs"]


def test_a_changed_verdict_is_named(twin: Path, reference: Path) -> None:
    claims = load_claims()
    judge = verdicts_of(claims)

    def flipped(run: RunData) -> dict[str, str]:
        verdicts = judge(run)
        if run.root == twin:
            verdicts[claims[0].id] = "not replicated" if verdicts[claims[0].id] == "replicated" else "replicated"
        return verdicts

    other_kernels(twin)
    nudge_codes(twin, ATOL / 10)  # a difference the kernels explain: the verdicts are computed again
    result = compare_runs(twin, reference, flipped)
    assert result.verdicts_changed == [claims[0].id] and result.unexplained == []
    assert not result.reproduced and f"verdict of {claims[0].id}" in result.line()


def test_the_whole_replication_is_compared(twin: Path, reference: Path) -> None:
    """Beyond the stages: a recorded verdict or measured value."""
    rows = json.loads((twin / layout.VERDICTS).read_text())
    number = next(i for i, r in enumerate(rows) if isinstance(r["measured"], float))
    rows[number]["measured"] *= 1.01  # beyond rtol 1e-4
    artifacts.write_json(twin / layout.VERDICTS, rows)
    rehash(twin, layout.VERDICTS)
    assert compare_runs(twin, reference, verdicts_of(load_claims())).unexplained == [
        f"{layout.VERDICTS} differs on the same CPU kernels"
    ]
    other_kernels(twin)
    (named,) = compare_runs(twin, reference, verdicts_of(load_claims())).unexplained
    assert named.startswith(f"{layout.VERDICTS}[{number}].measured: ")
    rows[number]["measured"] /= 1.01
    rows[number]["measured"] += 1e-7  # within the tolerance on another kernel family
    artifacts.write_json(twin / layout.VERDICTS, rows)
    rehash(twin, layout.VERDICTS)
    assert compare_runs(twin, reference, verdicts_of(load_claims())).reproduced


def _with_cards(run: Path, page: str) -> None:
    manifest = artifacts.read_manifest(run)
    manifest["files"] = {**manifest["files"], page: "0" * 64, "cards/index.html": "1" * 64}
    artifacts.write_json(run / layout.MANIFEST, manifest)


def test_cards_drawn_for_other_features_are_named(twin: Path, reference: Path, tmp_path: Path) -> None:
    """A difference where nothing they are drawn from differs; on other kernels, where their numbers
    differ within tolerance, named beside the comparison."""
    reference = shutil.copytree(reference, tmp_path / "reference")  # the shared one stays as it is
    _with_cards(twin, "cards/faithful-7.html")
    _with_cards(reference, "cards/faithful-3.html")
    named = "the cards drew other features: cards/faithful-7.html instead of cards/faithful-3.html"
    assert compare_runs(twin, reference, verdicts_of(load_claims())).unexplained == [named]
    other_kernels(twin)  # other kernels, but the same bytes: still nothing explains other cards
    assert compare_runs(twin, reference, verdicts_of(load_claims())).unexplained == [named]
    nudge_codes(twin, ATOL / 10)
    result = compare_runs(twin, reference, verdicts_of(load_claims()))
    assert result.reproduced and result.cards == named and named in result.line()


def _ablations(run: Path, sample_code_l0: float, threads: int | None = None) -> None:
    rows = {"faithful": {"sample_code_l0": 300.0}, "standard_sae": {"sample_code_l0": sample_code_l0}}
    artifacts.write_json(run / layout.ABLATIONS_JSON, rows)
    artifacts.record_addition(run, "ablations", [run / layout.ABLATIONS_JSON], {})
    if threads is not None:
        manifest = artifacts.read_manifest(run)
        manifest["stages"]["ablations"]["environment"]["torch_threads"] = threads
        artifacts.write_json(run / layout.MANIFEST, manifest)


def test_a_trained_number_is_held_to_its_measured_band(twin: Path, reference: Path, tmp_path: Path) -> None:
    """The ablations rerun on another thread count: a number that training amplified past one pass's
    rounding passes within the band the reference measured, and is named with it beyond."""
    reference = shutil.copytree(reference, tmp_path / "reference")
    _ablations(reference, 256.72)
    artifacts.write_json(reference / layout.BANDS_JSON, {"bands": {"ablations.json.standard_sae.sample_code_l0": 1.3}})
    artifacts.record_addition(reference, "bands", [reference / layout.BANDS_JSON], {})
    _ablations(twin, 257.31, threads=7)
    result = compare_runs(twin, reference, verdicts_of(load_claims()))
    within = "ablations.json.standard_sae.sample_code_l0: 257.31 vs 256.72 (band \u00b11.3)"
    assert result.reproduced and result.banded == [within] and result.differing == [layout.ABLATIONS_JSON]
    assert within in result.line() and "7 threads" in result.line()
    _ablations(twin, 200.0, threads=7)  # far beyond: e.g. another L1 coefficient
    result = compare_runs(twin, reference, verdicts_of(load_claims()))
    assert result.unexplained == ["ablations.json.standard_sae.sample_code_l0: 200 vs 256.72 (band \u00b11.3)"]
    assert result.line().startswith("NOT reproduced: 1 difference(s): ablations.json.standard_sae.sample_code_l0")
    _ablations(twin, 256.72 * 1.001, threads=7)  # no band measured for the faithful row: one pass's rounding
    artifacts.forget_addition(reference, "bands", [layout.BANDS_JSON])
    (named,) = compare_runs(twin, reference, verdicts_of(load_claims())).unexplained
    assert named.endswith("(tolerance: rtol 0.0001, atol 0.0001; no measured band)")


def _kernels_by_stage(run: Path, capabilities: dict[str, str]) -> None:
    manifest = artifacts.read_manifest(run)
    for stage, capability in capabilities.items():
        manifest["stages"][stage]["environment"]["cpu_capability"] = capability
    artifacts.write_json(run / layout.MANIFEST, manifest)


def test_kernels_are_compared_stage_by_stage(twin: Path, reference: Path, tmp_path: Path) -> None:
    """Stages made on the same two kernel families, but not stage for stage, are on other kernels: a
    difference is held to the tolerance, not called a difference on the same kernels."""
    reference = shutil.copytree(reference, tmp_path / "reference")
    _kernels_by_stage(reference, {"capture": "AVX2", "train": "AVX512", "analyze": "AVX2"})
    _kernels_by_stage(twin, {"capture": "AVX2", "train": "AVX2", "analyze": "AVX512"})
    nudge_codes(twin, ATOL / 10)
    result = compare_runs(twin, reference, verdicts_of(load_claims()))
    assert not result.same_kernels and result.reproduced and result.differing == [layout.CODES]


def test_every_difference_is_counted(twin: Path, reference: Path) -> None:
    """The line counts every number beyond its tolerance, and names the first few."""
    rows = json.loads((twin / layout.VERDICTS).read_text())
    numbers = [i for i, r in enumerate(rows) if isinstance(r["measured"], float) and r["measured"] != 0][:4]
    assert len(numbers) == 4, "the tiny run must measure 4 non-zero floats for this test"
    for i in numbers:
        rows[i]["measured"] *= 1.01  # beyond rtol 1e-4
    artifacts.write_json(twin / layout.VERDICTS, rows)
    rehash(twin, layout.VERDICTS)
    other_kernels(twin)
    result = compare_runs(twin, reference, verdicts_of(load_claims()))
    assert len(result.unexplained) == 4 and result.line().startswith("NOT reproduced: 4 difference(s)")


def test_a_file_left_out_of_the_reference_is_compared_by_its_recorded_sha256(
    twin: Path, reference: Path, tmp_path: Path
) -> None:
    """The reference's manifest records what a clean clone leaves out: on other kernels its difference
    is explained by the files computed from it, on the same kernels it is a failure to reproduce."""
    clean = shutil.copytree(reference, tmp_path / "clean")
    (clean / layout.LAST_CODES).unlink()
    codes = artifacts.load_tensors(twin / layout.LAST_CODES)["codes"].clone()
    codes[0, 0] += ATOL / 10
    artifacts.save_tensors(twin / layout.LAST_CODES, {"codes": codes}, {})
    rehash(twin, layout.LAST_CODES)
    result = compare_runs(twin, clean, verdicts_of(load_claims()))
    assert result.differing == [layout.LAST_CODES]
    assert result.unexplained == [f"{layout.LAST_CODES} differs on the same CPU kernels"]
    other_kernels(twin)
    result = compare_runs(twin, clean, verdicts_of(load_claims()))
    assert result.reproduced and result.differing == [layout.LAST_CODES]
