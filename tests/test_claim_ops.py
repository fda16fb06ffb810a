"""Claim.holds and Claim.expected for every comparison, at and around each boundary, by hand."""

from __future__ import annotations

from typing import Any

import pytest

from replication.evaluation.claims import OPS, Claim

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
