"""REPORT.md: generated from a run, naming every claim, with the write-up's six figures."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from helpers import REPO_ROOT, with_power_and_planted

from replication.__main__ import main
from replication.evaluation.claims import load_claims
from replication.evaluation.metrics import METRICS
from replication.outputs.figures import FIGURES

PNG = b"\x89PNG\r\n\x1a\n"


def table_verdicts(report: str) -> dict[str, str]:
    """Each claim's verdict in the first table that names it (the claims, the write-up's own numbers
    and the setup appendix come before or apart from the seeds' table)."""
    row = r"^\| `([\w.]+)` \|.*\| \*\*([a-z ]+)\*\* \|(?: [^|]* \|)?$"
    verdicts: dict[str, str] = {}
    for cid, verdict in re.findall(row, report, re.MULTILINE):
        verdicts.setdefault(cid, verdict)
    return verdicts


@pytest.fixture(scope="module")
def reported(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the tiny run with its report (the shared run stays as the other tests expect it)."""
    run = shutil.copytree(tiny_run, tmp_path_factory.mktemp("report") / "run")
    assert main(["report", "--run", str(run)]) == 0
    return run


def test_report_of_a_run(reported: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = (reported / "REPORT.md").read_text()
    verdicts = {v["id"]: v["verdict"] for v in json.loads((reported / "verdicts.json").read_text())}
    assert table_verdicts(report) == verdicts
    assert set(verdicts) == {c.id for c in load_claims()}
    for name in FIGURES:
        assert f"![{name}](figures/{name}.png)" in report
        assert (reported / "figures" / f"{name}.png").read_bytes().startswith(PNG)
    assert "`tiny`" in report and "## What the write-up says vs what its code ran" in report
    # The report's files are recorded: the run still verifies.
    assert main(["verify", "--run", str(reported)]) == 0
    manifest = json.loads((reported / "manifest.json").read_text())
    assert {"verdicts.json", "REPORT.md", "figures/part2.png"} <= set(manifest["files"])
    capsys.readouterr()


def test_committed_report_is_the_reference_runs() -> None:
    report = (REPO_ROOT / "REPORT.md").read_text()
    reference = REPO_ROOT / "runs" / "smollm2"
    verdicts = {v["id"]: v["verdict"] for v in json.loads((reference / "verdicts.json").read_text())}
    assert table_verdicts(report) == verdicts
    assert "--run runs/smollm2" in report
    for name in FIGURES:
        link = f"runs/smollm2/figures/{name}.png"
        assert f"![{name}]({link})" in report
        assert (REPO_ROOT / link).read_bytes().startswith(PNG)


def sentences(text: str) -> list[str]:
    """The report's sentences and table cells, whitespace normalised."""
    return [" ".join(p.split()) for p in re.split(r"(?<=[.!?])\s+|\n|\|", text)]


def repeated_long_sentences(text: str) -> list[str]:
    long = [s for s in sentences(text) if len(s.split()) >= 12]
    return sorted({s for s in long if long.count(s) > 1})


def test_the_sentence_check_finds_a_repeat() -> None:
    once = "This sentence has exactly twelve words in it, no more and no less."
    assert repeated_long_sentences(f"{once} Short one. {once}") == [once]
    assert repeated_long_sentences(f"{once} Short one. Short one.") == []


@pytest.mark.parametrize("which", ["tiny", "committed"])
def test_no_long_sentence_is_said_twice(which: str, reported: Path) -> None:
    text = ((reported if which == "tiny" else REPO_ROOT) / "REPORT.md").read_text()
    assert repeated_long_sentences(text) == []


def test_the_report_opens_with_the_answer() -> None:
    """The first screen: what ran, one answer per part with its numbers and claims, the counts, and the
    three words defined -- at most about 12 lines, before anything else."""
    report = (REPO_ROOT / "REPORT.md").read_text()
    sections = re.findall(r"^## (.+)$", report, re.MULTILINE)
    assert sections[:2] == ["The answer", "Provenance"]
    answer = [line for line in report.split("## The answer", 1)[1].split("\n## ", 1)[0].splitlines() if line.strip()]
    assert len(answer) <= 12 and answer[0].startswith("- **What ran:** SmolLM2-135M-Instruct")
    assert "stands in for Llama-3.1-8B-Instruct, which did not run here" in answer[0]
    assert re.search(r"an SAE 576 -> 1152 trained on \d+ rows, \d+% of them zero \[padding\]\(#padding\)", answer[0])
    assert "(the write-up's SAE: 4096 -> 8192)" in answer[0]
    assert [line[:10] for line in answer[1:4]] == ["- **Part 2", "- **Part 3", "- **Part 4"]
    for line in answer[1:4]:  # each part's answer with its numbers and the claims behind them
        assert re.search(r"\d", line) and re.search(r"`part\d\.\w+`", line), line
    assert answer[-2].startswith("- **Counts:** of 26 measured and reading claims")
    assert all(f"**{word}**" in answer[-1] for word in ("Replicated", "Not replicated", "No evidence"))


def test_part_4_with_power_answers_its_questions_in_one_table(tiny_run: Path, tmp_path: Path) -> None:
    run = with_power_and_planted(shutil.copytree(tiny_run, tmp_path / "run"))
    assert main(["report", "--run", str(run)]) == 0
    report = (run / "REPORT.md").read_text()
    section = report.split("## Part 4 with power (beyond the write-up)", 1)[1].split("\n## ", 1)[0]
    rows = {row.split(" | ")[0].lstrip("| "): row.split(" | ")[-1] for row in section.splitlines() if "?" in row}
    assert rows["Is each topic in layer 10?"] == "javascript_web 0.78 (p 0.0099); testing 0.55 (p 0.4) |"
    assert rows["Did the write-up's SAE find it?"].startswith("javascript_web 0.70 (p 0.43), untrained 0.71 (p 0.28);")
    assert rows["Could the write-up's design have found it?"] == (
        "`faithful` 0 at 98 samples; `standard_sae` 0 at 98 samples, 250 at 30000 samples |"
    )
    assert "![planted_recovery](figures/planted_recovery.png)" in report


def test_each_metric_is_defined_once(reported: Path) -> None:
    """The SAE-health table points at the claim entry that defines a metric, rather than define it again."""
    report = (reported / "REPORT.md").read_text()
    for name in ("val_fvu", "encoder_init_cosine"):
        assert report.count(METRICS[name].definition) == 1, name
    assert "| FVU, validation rows | " in report and "| as for `part3.good_reconstruction` |" in report


def test_the_splice_note_sets_zero_ablation_beside_uniform_logits(reported: Path) -> None:
    report = (reported / "REPORT.md").read_text()
    splice = json.loads((reported / "splice" / "splice.json").read_text())
    expected = f"{splice['ce_zero']:.4g} nats, against {splice['ce_uniform']:.4g} for uniform logits"
    assert expected in report
