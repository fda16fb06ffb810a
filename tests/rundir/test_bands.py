"""Rounding bands: the 95% prediction bound on the difference of two runs, from the reruns' spread."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from replication.rundir import layout
from replication.rundir.bands import band, leaves, measure


def test_a_band_by_hand() -> None:
    # values 0, 1, 2: s = 1; t(0.975, 2) = 4.3027 (a t table), times sqrt(2) = 1.41421
    assert band([0.0, 1.0, 2.0]) == pytest.approx(4.3027 * 1.41421, rel=1e-4)
    # five runs: t(0.975, 4) = 2.7764, s of 1, 1, 1, 1, 3 = sqrt(0.8)
    assert band([1.0, 1.0, 1.0, 1.0, 3.0]) == pytest.approx(2.7764 * 0.894427 * 1.41421, rel=1e-4)


def test_numbers_are_named_as_compare_names_them() -> None:
    data = {"a": [1, {"b": 2.5, "c": "text", "d": True}]}
    assert list(leaves(data, "f.json")) == [("f.json.a[0]", 1.0), ("f.json.a[1].b", 2.5)]


def _write(run: Path, x: float) -> Path:
    run.mkdir()
    rows = {"faithful": {"x": 1.0}, "standard_sae": {"x": x, "steps": 28, "description": "minibatches"}}
    (run / layout.ABLATIONS_JSON).write_text(json.dumps(rows))
    return run


def test_only_the_numbers_that_moved_get_a_band(tmp_path: Path) -> None:
    reference = _write(tmp_path / "reference", 0.5)
    reruns = [_write(tmp_path / "one", 0.6), _write(tmp_path / "two", 0.4)]
    assert measure(reference, reruns) == {"ablations.json.standard_sae.x": pytest.approx(4.3027 * 0.1 * 1.41421, 1e-4)}
    assert measure(reference, [_write(tmp_path / "three", 0.5)]) == {}
