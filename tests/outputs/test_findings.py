"""The report's first screen: what ran, each part's question answered by the claims the claim files
mark, and the tally."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers import REPO_ROOT, claim, with_power_and_planted

from replication.evaluation.claims import load_claims
from replication.evaluation.verdicts import Result, evaluate_all
from replication.outputs.findings import opening
from replication.rundir import artifacts
from replication.rundir.reader import RunData

UNTRAINED = ("no evidence", "the untrained SAE does the same")
NO_POWER = ("no evidence", "the test cannot detect an effect the size of the write-up's")


def _result(cid: str, verdict: str, why: str | None = None) -> Result:
    asked = claim(id=cid, section="Part 9: Things", question="Did it work?", answers=True, quantity="epochs")
    return Result(verdict, "≥ 5", 3, why=why, claim=asked, evidence="train/history.json")


@pytest.mark.parametrize(
    ("verdicts", "answer"),
    [
        ([("replicated", None), ("replicated", None)], "Yes"),
        ([("not replicated", None), ("not replicated", None)], "No"),
        ([("replicated", None), ("not replicated", None)], "In part, 1 of 2"),
        ([UNTRAINED, NO_POWER], "Not decided by this run"),
        ([("not replicated", None), UNTRAINED], "No"),
    ],
)
def test_a_part_is_answered_by_its_findings(
    verdicts: list[tuple[str, str | None]], answer: str, tiny_run: Path
) -> None:
    results = [_result(f"part9.c{i}", *v) for i, v in enumerate(verdicts)]
    line = opening(results, RunData(tiny_run))[1]
    assert line.startswith(f"**Part 9. Did it work?** {answer}.")
    for r in results:
        if r.finding:
            assert f"epochs = 3 (needs ≥ 5, `{r.claim.id}`)" in line
        else:
            assert f"`{r.claim.id}` ({r.why})" in line
    assert ("o evidence: " in line) == any(not r.finding for r in results)


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
    (part3_line,) = [line for line in lines if line.startswith("**Part 3. ")]
    assert part3_line.startswith("**Part 3. Has the SAE learnt a sparse code")
    assert "`part3.stop_epoch`" in part3_line
    assert lines[-1].startswith("**Counts:** of 26 measured and reading claims")


def test_the_write_ups_own_numbers_answer_apart_from_the_run(tiny_run: Path) -> None:
    """An implied claim marked to answer is said after the run's findings, in its own words; where the
    run decides nothing, the answer says the write-up's own numbers do not support it either."""
    asked = claim(
        id="part9.own", section="Part 9: Things", question="Did it work?", answers=True, kind="implied", quantity="cos"
    )
    results = [_result("part9.c0", *UNTRAINED), Result("does not follow", "< 0.9", 0.99, claim=asked, evidence="-")]
    line = opening(results, RunData(tiny_run))[1]
    assert line.startswith(
        "**Part 9. Did it work?** Not decided by this run, and it does not follow from the write-up's own numbers. "
        "No evidence:"
    )
    assert line.endswith("Does not follow from the write-up's own numbers: cos = 0.99 (needs < 0.9, `part9.own`).")
    results[1] = Result("follows", "< 0.9", 0.8, claim=asked, evidence="-")
    line = opening(results, RunData(tiny_run))[1]
    assert line.startswith("**Part 9. Did it work?** Not decided by this run. No evidence:")


def test_part_4_with_power_is_answered_from_the_probe_the_features_and_the_planted(
    tiny_run: Path, tmp_path: Path
) -> None:
    run = RunData(with_power_and_planted(shutil.copytree(tiny_run, tmp_path / "run")))
    lines = opening([_result("part9.c0", *UNTRAINED)], run)
    (line,) = [line for line in lines if line.startswith("**Part 4 with power")]
    assert "In layer 10? javascript_web yes (probe AUROC 0.78), testing not shown (15 prompts); the probe" in line
    assert "the probe detects a planted topic direction from 0.1 (none for testing) of the median row norm" in line
    assert "Of 256 planted features, `faithful` recovers 0 at 98 samples, 0 at 98 samples; `standard_sae`" in line
    assert "`standard_sae` recovers 0 at 98 samples, 250 at 30000 samples." in line
    assert "Did the write-up's SAE find it? It carries no topic beyond chance (least p 0.43), where" in line
    assert "its feature test detects a planted topic direction at no strength up to 0.1 of the median row" in line
    assert "(the write-up's top-5 design from 0.1 (none for testing))." in line
    assert "an SAE that learns" not in line  # no learned.json
    assert lines.index(line) == len(lines) - 2  # before the counts


def test_no_part_4_with_power_without_its_files(tiny_run: Path) -> None:
    lines = opening([_result("part9.c0", *UNTRAINED)], RunData(tiny_run))
    assert not any(line.startswith("**Part 4 with power") for line in lines)


def test_part_4_with_power_names_the_topic_a_feature_carries(tiny_run: Path, tmp_path: Path) -> None:
    root = with_power_and_planted(shutil.copytree(tiny_run, tmp_path / "run"))
    power = json.loads((root / "power.json").read_text())
    power["topics"]["testing"]["features"]["trained"]["p"] = 0.01
    (root / "power.json").write_text(json.dumps(power))
    artifacts.record_addition(root, "power", [root / "power.json"], {})
    (line,) = [line for line in opening([_result("part9.c0", *UNTRAINED)], RunData(root)) if "with power" in line]
    assert "It carries testing (p 0.01; untrained p 0.21), where" in line


def test_part_4_with_power_says_what_the_learned_sae_carries(tiny_run: Path, tmp_path: Path) -> None:
    root = with_power_and_planted(shutil.copytree(tiny_run, tmp_path / "run"))
    features = {"learned": {"auroc": 0.8, "p": 0.01}, "untrained": {"auroc": 0.6, "p": 0.5}}
    learned = {
        "corpus": {"tokens": 8192},
        "scores": {"learned": {"fvu": 0.258, "ce_recovered_zero": 0.954}},
        "topics": {"oop": {"features": features}, "testing": {"features": {**features, "learned": {"p": 0.3}}}},
    }
    artifacts.write_json(root / "learned" / "learned.json", learned)
    artifacts.record_addition(root, "learned", [root / "learned" / "learned.json"], {})
    (line,) = [line for line in opening([_result("part9.c0", *UNTRAINED)], RunData(root)) if "with power" in line]
    assert (
        "Does an SAE that learns find it? Trained by sparsify on 8,192 tokens of Python source (held-out FVU 0.26, "
        "CE recovered 0.95), it carries oop (p 0.01; untrained p 0.5). Did" in line
    )
    features["learned"]["p"] = 0.03  # below 0.05, not below 0.05 / 2
    artifacts.write_json(root / "learned" / "learned.json", learned)
    artifacts.record_addition(root, "learned", [root / "learned" / "learned.json"], {})
    (line,) = [line for line in opening([_result("part9.c0", *UNTRAINED)], RunData(root)) if "with power" in line]
    assert "it carries oop (p 0.03; untrained p 0.5), which a correction for the 2 topics would not keep. Did" in line
