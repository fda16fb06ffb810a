"""The report's first screen: what ran, each part's question answered by the claims the claim files
mark, and the tally."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers import REPO_ROOT, claim

from replication.evaluation.claims import load_claims
from replication.evaluation.verdicts import Result, evaluate_all
from replication.outputs.findings import opening
from replication.rundir.reader import RunData


def _result(cid: str, verdict: str) -> Result:
    asked = claim(id=cid, section="Part 9: Things", question="Did it work?", answers=True)
    return Result(asked, verdict, "≥ 5", 3, "train/history.json")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("verdicts", "answer"),
    [
        (["replicated", "replicated"], "Yes"),
        (["not replicated", "not replicated"], "No"),
        (["replicated", "not replicated"], "In part"),
        (["holds untrained", "within chance"], "Not decided by this run"),
        (["not replicated", "holds untrained"], "No"),
    ],
)
def test_a_part_is_answered_by_its_findings(verdicts: list[str], answer: str, tiny_run: Path) -> None:
    results = [_result(f"part9.c{i}", v) for i, v in enumerate(verdicts)]
    line = opening(results, RunData(tiny_run))[1]
    assert line.startswith(f"**Part 9: Did it work?** {answer}")
    found = [r for r in results if r.verdict in ("replicated", "not replicated")]
    for r in found:
        assert f"`{r.claim.id}` {r.verdict} (3; the write-up: ≥ 5)" in line
    why = {"holds untrained": "the untrained SAE does the same", "within chance": "the test cannot detect an effect"}
    for r in results:
        if r not in found:
            assert why[r.verdict] in line and f"`{r.claim.id}`" in line
    assert ("No evidence either way: " in line) == (len(found) < len(results))


def test_the_questions_and_their_claims_come_from_the_claim_files(tiny_run: Path, tmp_path: Path) -> None:
    """Another question and another answering claim in a claim file change the first screen; the
    tiny model says what it stands in for."""
    claims_dir = shutil.copytree(REPO_ROOT / "claims", tmp_path / "claims")
    part3 = claims_dir / "part3.yaml"
    text = part3.read_text()
    text = text.replace('question: "Did the SAE learn', 'question: "Has the SAE learnt')
    text = text.replace("  - id: part3.stop_epoch\n", "  - id: part3.stop_epoch\n    answers: true\n")
    part3.write_text(text)
    run = RunData(tiny_run)
    lines = opening(evaluate_all(load_claims(claims_dir), run), run)
    assert lines[0].startswith("**What ran:** tiny-random-llama") and "stands in for Llama-3.1-8B-Instruct" in lines[0]
    (part3_line,) = [line for line in lines if line.startswith("**Part 3: ")]
    assert part3_line.startswith("**Part 3: Has the SAE learnt a sparse code")
    assert "`part3.stop_epoch`" in part3_line
    assert lines[-1].startswith("Of the 53 claims")


def test_the_write_ups_own_numbers_answer_apart_from_the_run(tiny_run: Path) -> None:
    """An implied claim marked to answer is said after the run's findings, in its own words, and never
    decides the run's answer."""
    asked = claim(id="part9.own", section="Part 9: Things", question="Did it work?", answers=True, kind="implied")
    results = [_result("part9.c0", "holds untrained"), Result(asked, "inconsistent", "< 0.9", 0.99, "-")]  # type: ignore[arg-type]
    line = opening(results, RunData(tiny_run))[1]
    assert line.startswith("**Part 9: Did it work?** Not decided by this run. No evidence either way:")
    assert line.endswith(
        "By the write-up's own numbers, no run needed: `part9.own` inconsistent (0.99; its reading: < 0.9)."
    )
