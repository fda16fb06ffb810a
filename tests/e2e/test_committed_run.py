"""The committed reference run: every claim's verdict unchanged (a change detector), verify refusing
any changed file, and a broken artifact changing its claim's verdict."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import REFERENCE, REPO_ROOT, copy_of_reference, manifest_files

from replication.__main__ import main
from replication.evaluation.claims import Claim, load_claims
from replication.evaluation.verdicts import NO_EVIDENCE, WORDS, evaluate
from replication.rundir.reader import RunData, control_of

REFERENCE_RUNS = sorted(p.parent for p in (REPO_ROOT / "runs").glob("*/verdicts.json"))


@cache
def claims_by_id() -> dict[str, Claim]:
    return {c.id: c for c in load_claims()}


@cache
def run_data(root: Path) -> RunData:
    return RunData(root)


def committed(root: Path) -> dict[str, dict[str, Any]]:
    return {v["id"]: v for v in json.loads((root / "verdicts.json").read_text())}


def claim_cases() -> list[Any]:
    """One case per claim per reference run; a claim that does not replicate is a strict xfail."""
    cases = []
    for root in REFERENCE_RUNS:
        for cid, expected in committed(root).items():
            marks = []
            if expected["verdict"] in ("not replicated", "differs", "does not follow"):
                reason = f"{expected['verdict']}: measured {expected['measured']}, claimed {expected['claimed']}"
                marks.append(pytest.mark.xfail(strict=True, raises=AssertionError, reason=reason))
            cases.append(pytest.param(root, cid, expected, marks=marks, id=f"{root.name}-{cid}"))
    return cases


def test_reference_run_is_committed() -> None:
    assert [p.name for p in REFERENCE_RUNS] == ["smollm2"]


@pytest.mark.parametrize(("root", "claim_id", "expected"), claim_cases())
def test_claim_verdict_unchanged(root: Path, claim_id: str, expected: dict[str, Any]) -> None:
    """A change detector: the verdict recomputed from the committed run is the committed one; a claim
    that holds (replicated, conforms, follows) passes, one that is no evidence says why it is skipped."""
    run = run_data(root)
    result = evaluate(claims_by_id()[claim_id], run, control_of(run))
    if (result.verdict, result.why) != (expected["verdict"], expected.get("why")):
        pytest.fail(f"verdict changed from {expected['verdict']} to {result.verdict} (measured {result.measured})")
    if result.verdict == NO_EVIDENCE:
        pytest.skip(reason=f"no evidence at profile {root.name}: {result.why}")
    assert result.verdict == WORDS[result.claim.kind][0], f"measured {result.measured}, claimed {result.claimed}"


@pytest.mark.parametrize("root", REFERENCE_RUNS, ids=lambda p: p.name)
def test_every_claim_has_a_reference_verdict(root: Path) -> None:
    assert set(committed(root)) == set(claims_by_id()), "regenerate the reference report"


def verify(capsys: pytest.CaptureFixture[str], run: Path) -> tuple[int, str]:
    """verify in this process (the subprocess path is tested above): exit code and stderr."""
    capsys.readouterr()
    code = main(["verify", "--run", str(run)])
    return code, capsys.readouterr().err.strip()


@pytest.fixture
def reference_copy(tmp_path: Path) -> Path:
    return copy_of_reference(tmp_path / "run")


@pytest.fixture(scope="module")
def shared_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One copy for the tests that each change one file and put it back."""
    return copy_of_reference(tmp_path_factory.mktemp("shared") / "run")


def test_the_committed_run_is_lean() -> None:
    """What a clone carries of the run: 13.3 MB at its last regeneration, held under 15 MB."""
    names = [*manifest_files(), "manifest.json"]
    assert sum((REFERENCE / name).stat().st_size for name in names) < 15e6


def test_a_clean_clone_verifies_without_what_it_leaves_out(
    reference_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    left_out = manifest_files(committed=False)
    assert left_out and not any((reference_copy / name).exists() for name in left_out)
    assert verify(capsys, reference_copy) == (0, "")


def test_verify_prints_one_line_per_claim(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "--run", str(REPO_ROOT / "runs" / "smollm2")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(claims_by_id())
    assert lines[0].startswith("part1.middle_layers  ")


@pytest.mark.parametrize("name", manifest_files())
def test_verify_refuses_any_changed_file(shared_copy: Path, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = shared_copy / name
    original = path.read_bytes()
    data = bytearray(original)
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    try:
        code, err = verify(capsys, shared_copy)
    finally:
        path.write_bytes(original)
    assert code == 2
    assert err == f"error: {path} does not match its sha256 in the manifest (changed after the run)"


def _edit_json(path: Path, edit: Callable[[Any], Any]) -> None:
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))


def _stop_at_6(run: Path) -> None:
    _edit_json(run / "train" / "history.json", lambda h: h[:6])


def _revive_dead(run: Path) -> None:
    def revive(top: dict[str, Any]) -> dict[str, Any]:
        for dim in top["dimensions"]:
            for t in dim["top"]:
                t["value"] = max(t["value"], 0.5)
        return top

    _edit_json(run / "analyze" / "top_prompts.json", revive)


def _l1_changed(run: Path) -> None:
    path = run / "config.yaml"
    config = yaml.safe_load(path.read_text())
    config["train"]["l1_coefficient"] = 0.0001
    path.write_text(yaml.safe_dump(config))


def _drop_a_prompt(run: Path) -> None:
    _edit_json(run / "capture" / "samples.json", lambda s: s[:-1])


@pytest.mark.parametrize(
    ("claim_id", "tamper"),
    [
        ("part3.stop_epoch", _stop_at_6),
        ("part4.dead_feature", _revive_dead),
        ("part3.l1_penalty", _l1_changed),
        ("part2.prompt_count", _drop_a_prompt),
    ],
)
def test_breaking_an_artifact_changes_the_verdict(
    reference_copy: Path, claim_id: str, tamper: Callable[[Path], None], capsys: pytest.CaptureFixture[str]
) -> None:
    claim = claims_by_id()[claim_id]
    before = evaluate(claim, RunData(reference_copy))
    tamper(reference_copy)
    after = evaluate(claim, RunData(reference_copy))
    assert after.verdict != before.verdict
    assert {before.verdict, after.verdict} == set(WORDS[claim.kind])
    assert verify(capsys, reference_copy)[0] == 2
