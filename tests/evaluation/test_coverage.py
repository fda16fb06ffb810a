"""The coverage map: every sentence of the write-up, with the claims that check it or why none does."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from replication.errors import ReplicationError
from replication.evaluation.claims import load_claims
from replication.evaluation.coverage import COVERAGE, load_coverage


def test_every_sentence_of_the_writeup_is_in_the_map() -> None:
    entries = load_coverage()
    assert len(entries) >= 150
    covered = {cid for entry in entries for cid in entry.get("claims", [])}
    assert covered == {c.id for c in load_claims()}, "every claim checks some sentence"


def write_map(tmp_path: Path, entries: list[dict[str, object]]) -> Path:
    path = tmp_path / "coverage.yaml"
    path.write_text(yaml.safe_dump({"sentences": entries}, allow_unicode=True))
    return path


def test_a_dropped_sentence_fails(tmp_path: Path) -> None:
    entries = yaml.safe_load(COVERAGE.read_text(encoding="utf-8"))["sentences"]
    dropped = entries[:40] + entries[41:]
    with pytest.raises(ReplicationError, match="is not in the coverage map"):
        load_coverage(write_map(tmp_path, dropped))
    with pytest.raises(ReplicationError, match="is not in the coverage map"):
        load_coverage(write_map(tmp_path, entries[:-1]))  # the last sentence too


def test_reordered_or_reworded_sentences_fail(tmp_path: Path) -> None:
    entries = yaml.safe_load(COVERAGE.read_text(encoding="utf-8"))["sentences"]
    swapped = [entries[1], entries[0], *entries[2:]]
    with pytest.raises(ReplicationError, match="is not in the coverage map"):
        load_coverage(write_map(tmp_path, swapped))
    reworded = [*entries[:5], {**entries[5], "text": entries[5]["text"] + " indeed"}, *entries[6:]]
    with pytest.raises(ReplicationError, match="not verbatim in the write-up"):
        load_coverage(write_map(tmp_path, reworded))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"claims": ["part9.nothing"]}, "unknown claim 'part9.nothing'"),
        ({"claims": [], "none": None}, "needs claims or a reason"),
        ({"claims": ["part2.prompt_count"], "none": "heading"}, "claims or a reason, not both"),
        ({"none": ""}, "needs claims or a reason"),
    ],
)
def test_an_entry_names_claims_or_a_reason(tmp_path: Path, change: dict[str, object], message: str) -> None:
    entries = yaml.safe_load(COVERAGE.read_text(encoding="utf-8"))["sentences"]
    entry = {"text": entries[0]["text"], **change}
    with pytest.raises(ReplicationError, match=message):
        load_coverage(write_map(tmp_path, [{k: v for k, v in entry.items() if v is not None}, *entries[1:]]))
