"""Every claim of the write-up, checked against the committed reference runs; the claim loader."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import REPO_ROOT
from pydantic import ValidationError
from safetensors.numpy import load_file, save_file

from replication.__main__ import main
from replication.errors import ReplicationError
from replication.evaluation.claims import CLAIMS_DIR, WRITEUP, Claim, load_claims
from replication.evaluation.verdicts import NO_EVIDENCE, WORDS, evaluate
from replication.rundir.reader import RunData, control_of

REFERENCE_RUNS = sorted(p.parent for p in (REPO_ROOT / "runs").glob("*/verdicts.json"))
SHARED_WRITEUP = REPO_ROOT.parent / "shared" / "seed" / "writeup.md"


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
            if expected["verdict"] in ("not replicated", "differs", "not supported"):
                reason = f"{expected['verdict']}: measured {expected['measured']}, claimed {expected['claimed']}"
                marks.append(pytest.mark.xfail(strict=True, raises=AssertionError, reason=reason))
            cases.append(pytest.param(root, cid, expected, marks=marks, id=f"{root.name}-{cid}"))
    return cases


def test_reference_run_is_committed() -> None:
    assert [p.name for p in REFERENCE_RUNS] == ["smollm2"]


@pytest.mark.parametrize(("root", "claim_id", "expected"), claim_cases())
def test_claim_verdict_unchanged(root: Path, claim_id: str, expected: dict[str, Any]) -> None:
    """A change detector: the verdict recomputed from the committed run is the committed one; a claim
    that holds (replicated, conforms, supported) passes, one that is no evidence says why it is skipped."""
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


def test_claims_quote_the_writeup_verbatim() -> None:
    claims = load_claims()
    assert len(claims) >= 35
    text = WRITEUP.read_text()
    assert all(c.quote in text for c in claims)
    assert {c.id.split(".")[0] for c in claims} == {"part1", "part2", "part3", "part4"}


@pytest.mark.skipif(not SHARED_WRITEUP.is_file(), reason="the study's material is not beside this checkout")
def test_shipped_writeup_is_the_studys() -> None:
    assert WRITEUP.read_bytes() == SHARED_WRITEUP.read_bytes()


# ---- the loader refuses bad claim files -------------------------------------------------------

GOOD = {
    "id": "x.one",
    "kind": "measured",
    "quote": "Number of Prompts",
    "metric": "n_prompts",
    "op": "eq",
    "value": 98,
    "profiles": ["smollm2"],
}


def write_claims(directory: Path, claims: list[Any], section: str = "Part 2") -> None:
    directory.mkdir(exist_ok=True)
    (directory / "a.yaml").write_text(yaml.safe_dump({"section": section, "claims": claims}))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"quote": "98 prompts about cooking"}, "a.yaml: claim x.one: quote is not verbatim in the write-up"),
        ({"metric": "vibes"}, "a.yaml: claim x.one: unknown metric 'vibes'"),
        ({"op": "roughly"}, "a.yaml: claim x.one: op 'roughly' is not one of"),
        ({"op": "approx"}, "a.yaml: claim x.one: op approx needs exactly one of 'abs' or 'rel'"),
        ({"op": "between"}, "a.yaml: claim x.one: op between needs field 'low'"),
        ({"value": "{width} * 2", "op": "ge"}, "a.yaml: claim x.one: bad expression '{width} * 2'"),
        ({"profiles": ["gpt"]}, "a.yaml: claim x.one: profiles must be a non-empty list"),
        ({"profiles": "smollm2"}, "a.yaml: claim x.one: profiles must be a non-empty list"),
        ({"colour": "red"}, "a.yaml: claim x.one: unknown field 'colour'"),
        ({"metric": None}, "a.yaml: claim x.one: field 'metric' is missing or not a string"),
        ({"op": "approx", "abs": "tiny"}, "a.yaml: claim x.one: tolerance must be a number >= 0"),
        ({"kind": "vibe"}, "a.yaml: claim x.one: kind must be one of setup, measured, implied, reading"),
        ({"alternatives": ["x"]}, "a.yaml: claim x.one: alternative 1: must be a mapping"),
        ({"alternatives": {"op": "eq"}}, "a.yaml: claim x.one: alternatives must be a list of readings"),
        (
            {"alternatives": [{"metric": "vibes", "op": "eq", "value": 1}]},
            "a.yaml: claim x.one: alternative 1: unknown metric 'vibes'",
        ),
        (
            {"alternatives": [{"metric": "n_prompts", "op": "eq", "value": 1, "quote": "q"}]},
            "a.yaml: claim x.one: alternative 1: unknown field 'quote'",
        ),
    ],
)
def test_bad_claim_is_named(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    claim = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    write_claims(tmp_path, [claim])
    with pytest.raises(ReplicationError) as info:
        load_claims(tmp_path)
    assert str(info.value).startswith(message)


NOT_FINITE = [(float("nan"), ".nan", "nan"), (float("inf"), ".inf", "inf"), (float("-inf"), "-.inf", "-inf")]
"""A number, its YAML spelling and how the error shows it."""
READS = {  # a reading whose op uses the key, so only its number is wrong
    "value": {"op": "approx", "value": 98, "abs": 1},
    "low": {"op": "between", "low": 0, "high": 100},
    "high": {"op": "between", "low": 0, "high": 100},
    "abs": {"op": "approx", "value": 98, "abs": 1},
    "rel": {"op": "approx", "value": 98, "rel": 0.1},
}


@pytest.mark.parametrize("key", list(READS))
@pytest.mark.parametrize(("number", "spelling", "shown"), NOT_FINITE, ids=[s for _, _, s in NOT_FINITE])
def test_a_number_that_is_not_finite_is_named(
    tmp_path: Path, key: str, number: float, spelling: str, shown: str
) -> None:
    claim = {**GOOD, **READS[key], key: number}
    write_claims(tmp_path, [claim])
    assert f"{key}: {spelling}\n" in (tmp_path / "a.yaml").read_text()  # as a claim file spells it
    with pytest.raises(ReplicationError) as info:
        load_claims(tmp_path)
    assert str(info.value) == f"a.yaml: claim x.one: field {key!r} must be finite, not {shown}"


@pytest.mark.parametrize("key", list(READS))
def test_a_number_that_is_not_finite_is_named_in_an_alternative(tmp_path: Path, key: str) -> None:
    alternative = {"metric": "n_prompts", "op": "eq", "value": 98, **READS[key], key: float("nan")}
    write_claims(tmp_path, [{**GOOD, "alternatives": [{"metric": "n_prompts", "op": "eq", "value": 1}, alternative]}])
    with pytest.raises(ReplicationError) as info:
        load_claims(tmp_path)
    assert str(info.value) == f"a.yaml: claim x.one: alternative 2: field {key!r} must be finite, not nan"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"op": "ge", "value": True}, "a.yaml: claim x.one: field 'value' must be a number or an expression"),
        ({"op": "approx", "rel": False}, "a.yaml: claim x.one: tolerance must be a number >= 0 (field 'rel')"),
        ({"op": "approx", "abs": -0.5}, "a.yaml: claim x.one: tolerance must be a number >= 0 (field 'abs')"),
        ({"op": "ge", "value": "1" + "0" * 308 + " * 10"}, "a.yaml: claim x.one: bad expression '1000"),
        ({"source": "b.yaml"}, "a.yaml: claim x.one: unknown field 'source'"),
        ({"question": "Why?"}, "a.yaml: claim x.one: unknown field 'question'"),
        ({"answers": "yes"}, "a.yaml: claim x.one: field 'answers'"),
        ({"id": " "}, "a.yaml: claim  : field 'id' is missing or not a string"),
        ({"profiles": []}, "a.yaml: claim x.one: profiles must be a non-empty list"),
    ],
)
def test_a_bool_or_an_infinite_expression_is_no_number(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    write_claims(tmp_path, [{**GOOD, **change}])
    with pytest.raises(ReplicationError) as info:
        load_claims(tmp_path)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_a_claim_that_is_not_a_mapping_is_named_by_its_place(tmp_path: Path) -> None:
    write_claims(tmp_path, [GOOD, "just a sentence"])
    with pytest.raises(ReplicationError) as info:
        load_claims(tmp_path)
    assert str(info.value) == "a.yaml: claim #2: must be a mapping"


def test_loaded_claims_are_frozen_and_hashable() -> None:
    claims = load_claims()
    assert len(set(claims)) == len(claims)
    assert all(isinstance(c.profiles, tuple) and isinstance(c.alternatives, tuple) for c in claims)
    with pytest.raises(ValidationError, match="frozen"):
        claims[0].id = "changed"  # type: ignore[misc]


def test_duplicate_ids_and_malformed_yaml(tmp_path: Path) -> None:
    write_claims(tmp_path, [GOOD, GOOD])
    with pytest.raises(ReplicationError, match=r"a\.yaml: claim x\.one: duplicate id"):
        load_claims(tmp_path)
    (tmp_path / "a.yaml").write_text("claims:\n  - id: [unclosed\n")
    with pytest.raises(ReplicationError, match=r"a\.yaml:3: malformed YAML"):
        load_claims(tmp_path)
    (tmp_path / "a.yaml").write_text("- just a list\n")
    with pytest.raises(ReplicationError, match="expected a mapping with a 'claims' list"):
        load_claims(tmp_path)


def test_unsafe_yaml_tag_is_refused_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    (tmp_path / "a.yaml").write_text(f"claims: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ReplicationError, match="malformed YAML"):
        load_claims(tmp_path)
    assert not marker.exists()


def test_scaled_values(tmp_path: Path) -> None:
    write_claims(tmp_path, [{**GOOD, "metric": "sae_d_hidden", "value": "2 * {d_model}"}])
    (claim,) = load_claims(tmp_path)
    assert claim.expected({"d_model": 576.0}) == "= 1152"
    assert claim.holds(1152, {"d_model": 576.0}) and not claim.holds(1151, {"d_model": 576.0})
    assert claim.holds(8192, {"d_model": 4096.0})
    assert load_claims(CLAIMS_DIR)  # the real files still load


# ---- verify: tampering changes the verification and the verdicts ------------------------------


def verify(capsys: pytest.CaptureFixture[str], run: Path) -> tuple[int, str]:
    """verify in this process (the subprocess path is tested above): exit code and stderr."""
    capsys.readouterr()
    code = main(["verify", "--run", str(run)])
    return code, capsys.readouterr().err.strip()


def copy_of_reference(copy: Path) -> Path:
    """The committed run's files (those its manifest lists, as a clean clone has them) in ``copy``."""
    root = REPO_ROOT / "runs" / "smollm2"
    for name in [*manifest_files(), "manifest.json"]:
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, copy / name)
    return copy


@pytest.fixture
def reference_copy(tmp_path: Path) -> Path:
    return copy_of_reference(tmp_path / "run")


@pytest.fixture(scope="module")
def shared_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One copy for the tests that each change one file and put it back."""
    return copy_of_reference(tmp_path_factory.mktemp("shared") / "run")


def test_verify_prints_one_line_per_claim(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "--run", str(REPO_ROOT / "runs" / "smollm2")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(claims_by_id())
    assert lines[0].startswith("part1.middle_layers  ")


def test_verify_refuses_bad_claims(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_claims(tmp_path, [{**GOOD, "metric": "vibes"}])
    assert main(["verify", "--run", str(REPO_ROOT / "runs" / "smollm2"), "--claims", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == "error: a.yaml: claim x.one: unknown metric 'vibes'"


def manifest_files() -> list[str]:
    root = REPO_ROOT / "runs" / "smollm2"
    if not (root / "manifest.json").is_file():
        return []
    return sorted(json.loads((root / "manifest.json").read_text())["files"])


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


def _all_decode_shaped(run: Path) -> None:
    path = run / "capture" / "activations.safetensors"
    tensors = load_file(str(path))
    save_file({k: v[:, -1:, :] for k, v in tensors.items()}, str(path))


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
        ("part2.sample_shape", _all_decode_shaped),
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


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"profiles": [{"a": 1}]}, "profiles must be a non-empty list"),
        ({1: 2, "zz": 3}, "unknown field 1"),
        ({"why": ["a"]}, "field 'why' must be a string"),
        ({"value": "(" * 300 + "{d_model}" + ")" * 300, "op": "ge"}, "bad expression '((((("),
    ],
)
def test_odd_claim_values_get_the_clean_error(tmp_path: Path, change: dict[Any, Any], message: str) -> None:
    write_claims(tmp_path, [{**GOOD, **change}])
    with pytest.raises(ReplicationError, match=re.escape(message)):
        load_claims(tmp_path)
