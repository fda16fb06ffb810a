"""Claims: Claim.holds and Claim.expected for every comparison by hand, and the loader's one-line errors."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import REPO_ROOT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from replication.__main__ import main
from replication.errors import ReplicationError
from replication.evaluation.claims import CLAIMS_DIR, OPS, PROFILES, WRITEUP, Claim, load_claims
from replication.evaluation.metrics import METRICS

SHARED_WRITEUP = REPO_ROOT.parent / "shared" / "seed" / "writeup.md"

SCALE = {"d_model": 576.0, "n_layers": 30.0, "n_prompts": 98.0}


def claim(op: str, **operands: Any) -> Claim:
    return Claim(
        id="t.x", section="T", quote="q", kind="measured", metric="stop_epoch", op=op, profiles=("tiny",), **operands
    )


@pytest.mark.parametrize(
    ("measured", "holds"),
    [
        (10.0, True),
        (10.25, True),
        (10.5, True),  # |10.5 - 10| = 0.5: at the tolerance, inclusive
        (9.5, True),
        (10.5001, False),
        (9.4999, False),
        (-10.0, False),
    ],
)
def test_approx_with_an_absolute_tolerance(measured: float, holds: bool) -> None:
    assert claim("approx", value=10, abs=0.5).holds(measured, SCALE) is holds


@pytest.mark.parametrize(
    ("value", "measured", "holds"),
    [
        (8, 8.0, True),
        (8, 10.0, True),  # 25% of 8 is 2: at the tolerance, inclusive
        (8, 6.0, True),
        (8, 10.01, False),
        (8, 5.99, False),
        (-8, -10.0, True),  # the tolerance is relative to |value|
        (-8, -6.0, True),
        (-8, -10.5, False),
        (-8, 8.0, False),
    ],
)
def test_approx_with_a_relative_tolerance(value: float, measured: float, holds: bool) -> None:
    assert claim("approx", value=value, rel=0.25).holds(measured, SCALE) is holds


@pytest.mark.parametrize(
    ("measured", "holds"), [(1, True), (2.5, True), (3, True), (0.999, False), (3.001, False), (-2, False)]
)
def test_between_includes_both_bounds(measured: float, holds: bool) -> None:
    assert claim("between", low=1, high=3).holds(measured, SCALE) is holds


@pytest.mark.parametrize(
    ("op", "below", "at", "above"),
    [
        ("ge", False, True, True),
        ("gt", False, False, True),
        ("le", True, True, False),
        ("lt", True, False, False),
    ],
)
def test_one_sided_comparisons_at_the_boundary_both_ways(op: str, below: bool, at: bool, above: bool) -> None:
    c = claim(op, value=5)
    assert (c.holds(4.999, SCALE), c.holds(5, SCALE), c.holds(5.001, SCALE)) == (below, at, above)
    assert (c.holds(5.0, SCALE), c.holds(4, SCALE), c.holds(6, SCALE)) == (at, below, above)


@pytest.mark.parametrize(
    ("value", "measured", "holds"),
    [
        (98, 98, True),
        (98, 98.0, True),
        (98, 97, False),
        (98, 99, False),
        ("relu", "relu", True),
        ("relu", "linear", False),
        (True, True, True),
        (True, False, False),
        (5, "never", False),
    ],
)
def test_eq(value: Any, measured: Any, holds: bool) -> None:
    assert claim("eq", value=value).holds(measured, SCALE) is holds


@pytest.mark.parametrize("measured", ["never", "5", True, False, None, [5], {"x": 5}])
@pytest.mark.parametrize(
    "c",
    [
        claim("approx", value=5, abs=1000),
        claim("approx", value=5, rel=1000),
        claim("between", low=-1000, high=1000),
        claim("ge", value=-1000),
        claim("gt", value=-1000),
        claim("le", value=1000),
        claim("lt", value=1000),
    ],
    ids=lambda c: f"{c.op}-{'abs' if c.abs is not None else 'rel' if c.rel is not None else ''}",
)
def test_a_numeric_claim_never_holds_for_a_non_number(c: Claim, measured: Any) -> None:
    """True would be 1 and pass every bound above; "never" (no epoch reached it) would raise."""
    assert c.holds(measured, SCALE) is False


def test_scaled_operands() -> None:
    # 2 * d_model = 1152; n_layers / 3 = 10; between n_prompts / 2 = 49 and n_prompts = 98
    assert claim("eq", value="2 * {d_model}").holds(1152, SCALE)
    assert not claim("eq", value="2 * {d_model}").holds(1151, SCALE)
    assert claim("ge", value="{n_layers} / 3").holds(10, SCALE)
    assert not claim("gt", value="{n_layers} / 3").holds(10, SCALE)
    between = claim("between", low="{n_prompts} / 2", high="{n_prompts}")
    assert [between.holds(m, SCALE) for m in (48.9, 49, 98, 98.1)] == [False, True, True, False]
    assert claim("approx", value="{d_model}", rel=0.5).holds(864, SCALE)  # 576 +- 288
    assert not claim("approx", value="{d_model}", rel=0.5).holds(865, SCALE)


@pytest.mark.parametrize(
    ("c", "text"),
    [
        (claim("eq", value=98), "= 98"),
        (claim("eq", value="relu"), "= relu"),
        (claim("eq", value="2 * {d_model}"), "= 1152"),
        (claim("ge", value=5), "≥ 5"),
        (claim("gt", value=0.5), "> 0.5"),
        (claim("le", value="{n_layers}"), "≤ 30"),
        (claim("lt", value=0.123456), "< 0.1235"),  # floats print with 4 significant digits
        (claim("approx", value=10, abs=0.5), "≈ 10 ± 0.5"),
        (claim("approx", value=8, rel=0.25), "≈ 8 ± 25%"),
        (claim("approx", value=8, rel=0.025), "≈ 8 ± 2.5%"),
        (claim("between", low=1, high=3), "in [1, 3]"),
        (claim("between", low="{n_prompts} / 2", high=0.75), "in [49, 0.75]"),
    ],
    ids=lambda v: v if isinstance(v, str) else v.op,
)
def test_expected_text(c: Claim, text: str) -> None:
    assert c.expected(SCALE) == text


def test_every_op_is_covered() -> None:
    assert set(OPS) == {"eq", "approx", "between", "ge", "le", "gt", "lt"}


VALID = yaml.safe_load((CLAIMS_DIR / "part3.yaml").read_text())
VALID["claims"] = VALID["claims"][:3]  # three claims: a file that parses in milliseconds
FIELDS = ["id", "section", "quote", "metric", "op", "value", "low", "high", "abs", "rel", "profiles", "why", "extra"]
NEAR_MISSES = [
    VALID["claims"][0]["quote"],
    "98 prompts about cooking",
    "stop_epoch",
    "vibes",
    "ge",
    "between",
    "roughly",
    "tiny",
    ["tiny"],
    ["tiny", "gpt"],
    "{d_model}",
    "2 * {n_layers}",
    "{width}",
    0.5,
    -1,
    "",
]
"""Values a claim file could plausibly hold, valid and almost valid: mutations that load are then
common enough for the invariants to be exercised, not only the errors."""
scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20) | st.sampled_from(NEAR_MISSES)
keys = st.text(max_size=5) | st.integers() | st.sampled_from(["id", "op", "value", "low"])


def nested(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3)


values = st.recursive(scalars, nested, max_leaves=6)


def mutated(index: int, field: str | int, value: Any, delete: bool) -> dict[str, Any]:
    """VALID with claim ``index``'s ``field`` set to ``value`` (or deleted)."""
    data: dict[str, Any] = json.loads(json.dumps(VALID))
    claim = data["claims"][index]
    if delete:
        claim.pop(field, None)
    else:
        claim[field] = value
    return data


def assert_clean_error_or_valid_claims(directory: Path) -> bool:
    """``directory/part3.yaml`` loads into valid claims, one per claim of the file, or is refused
    with a one-line error naming the file. True if it loaded."""
    try:
        claims = load_claims(directory)
    except ReplicationError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("part3.yaml")
        return False
    loaded = yaml.safe_load((directory / "part3.yaml").read_bytes())
    assert len(claims) == len(loaded["claims"])
    writeup = WRITEUP.read_text(encoding="utf-8")
    for claim in claims:
        assert claim.quote in writeup, claim.id
        assert claim.metric in METRICS, claim.id
        assert claim.op in OPS, claim.id
        assert claim.profiles and set(claim.profiles) <= set(PROFILES), claim.id
        assert isinstance(claim.expected({"d_model": 576.0, "n_layers": 30.0, "n_prompts": 98.0}), str), claim.id
    return True


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    index=st.integers(min_value=0, max_value=len(VALID["claims"]) - 1),
    field=st.sampled_from(FIELDS) | st.integers(),
    value=values,
    delete=st.booleans(),
    cut=st.integers(min_value=0, max_value=800),  # the file is about 750 bytes
    garbage=st.binary(max_size=8),
)
def test_mutated_claim_file_gives_the_clean_error_or_loads(
    tmp_path: Path, index: int, field: str | int, value: Any, delete: bool, cut: int, garbage: bytes
) -> None:
    text = yaml.safe_dump(mutated(index, field, value, delete), allow_unicode=True).encode()
    directory = tmp_path / f"claims-{index}-{cut}"
    directory.mkdir(exist_ok=True)
    (directory / "part3.yaml").write_bytes(text[:cut] + garbage + text[cut:] if garbage else text)
    assert_clean_error_or_valid_claims(directory)


def test_every_field_set_to_every_near_miss_gives_the_clean_error_or_valid_claims(tmp_path: Path) -> None:
    """The grid the random test samples sparsely: each field of one claim, deleted or set to each
    near-miss value; some of them load (a valid value), and those must load valid claims."""
    outcomes = []
    for field in FIELDS:
        for value in [*NEAR_MISSES, None]:
            directory = tmp_path / f"{field}-{len(outcomes)}"
            directory.mkdir()
            data = mutated(1, field, value, delete=value is None)
            (directory / "part3.yaml").write_text(yaml.safe_dump(data, allow_unicode=True))
            outcomes.append(assert_clean_error_or_valid_claims(directory))
    assert any(outcomes) and not all(outcomes)


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
        ({"profiles": ["gpt"]}, "a.yaml: claim x.one: field 'profiles': Input should be 'seed', 'smollm2' or 'tiny'"),
        ({"profiles": "smollm2"}, "a.yaml: claim x.one: field 'profiles': Input should be a valid tuple"),
        ({"colour": "red"}, "a.yaml: claim x.one: field 'colour': Extra inputs are not permitted"),
        ({"metric": None}, "a.yaml: claim x.one: field 'metric': Field required"),
        ({"op": "approx", "abs": "tiny"}, "a.yaml: claim x.one: field 'abs': Input should be a valid"),
        (
            {"kind": "vibe"},
            "a.yaml: claim x.one: field 'kind': Input should be 'setup', 'measured', 'implied' or 'reading'",
        ),
        ({"alternatives": ["x"]}, "a.yaml: claim x.one: alternative 1: Input should be a valid dictionary"),
        ({"alternatives": {"op": "eq"}}, "a.yaml: claim x.one: field 'alternatives': Input should be a valid tuple"),
        (
            {"alternatives": [{"metric": "vibes", "op": "eq", "value": 1}]},
            "a.yaml: claim x.one: alternative 1: unknown metric 'vibes'",
        ),
        (
            {"alternatives": [{"metric": "n_prompts", "op": "eq", "value": 1, "quote": "q"}]},
            "a.yaml: claim x.one: alternative 1: field 'quote': Extra inputs are not permitted",
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
        ({"op": "approx", "rel": False}, "a.yaml: claim x.one: field 'rel': Input should be a valid"),
        ({"op": "approx", "abs": -0.5}, "a.yaml: claim x.one: field 'abs': Input should be greater than or equal to 0"),
        ({"op": "ge", "value": "1" + "0" * 308 + " * 10"}, "a.yaml: claim x.one: bad expression '1000"),
        ({"source": "b.yaml"}, "a.yaml: claim x.one: unknown field 'source'"),
        ({"question": "Why?"}, "a.yaml: claim x.one: unknown field 'question'"),
        ({"answers": "yes"}, "a.yaml: claim x.one: field 'answers': Input should be a valid boolean"),
        ({"id": " "}, "a.yaml: claim  : field 'id': String should match pattern"),
        ({"profiles": []}, "a.yaml: claim x.one: field 'profiles': Value should have at least 1 item"),
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
    assert str(info.value) == "a.yaml: claim #2: Input should be a valid dictionary or instance of Claim"


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


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"profiles": [{"a": 1}]}, "field 'profiles': Input should be"),
        ({1: 2, "zz": 3}, "field 1: Keys should be strings"),
        ({"why": ["a"]}, "field 'why': Input should be a valid string"),
        ({"value": "(" * 300 + "{d_model}" + ")" * 300, "op": "ge"}, "bad expression '((((("),
    ],
)
def test_odd_claim_values_get_the_clean_error(tmp_path: Path, change: dict[Any, Any], message: str) -> None:
    write_claims(tmp_path, [{**GOOD, **change}])
    with pytest.raises(ReplicationError, match=re.escape(message)):
        load_claims(tmp_path)


def test_verify_refuses_bad_claims(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_claims(tmp_path, [{**GOOD, "metric": "vibes"}])
    assert main(["verify", "--run", str(REPO_ROOT / "runs" / "smollm2"), "--claims", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == "error: a.yaml: claim x.one: unknown metric 'vibes'"
