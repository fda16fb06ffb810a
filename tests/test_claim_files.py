"""The claim loader on a mutated claim file: a one-line error naming the file, or valid claims; never a
crash."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from replication.errors import ReplicationError
from replication.evaluation.claims import CLAIMS_DIR, OPS, PROFILES, WRITEUP, load_claims
from replication.evaluation.metrics import METRICS

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
