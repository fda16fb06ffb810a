"""REPORT.md: generated from a run, naming every claim, with the write-up's six figures."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from replication.__main__ import main
from replication.config import REPO_ROOT
from replication.evaluation.claims import load_claims
from replication.outputs.figures import FIGURES

PNG = b"\x89PNG\r\n\x1a\n"


def table_verdicts(report: str) -> dict[str, str]:
    row = r"^\| `([\w.]+)` \| [a-z]+ \|.*\| \*\*([a-z ]+)\*\* \| [^|]* \| `[^`]+` \|$"
    rows = re.findall(row, report, re.MULTILINE)
    return dict(rows)


def test_report_of_a_run(tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tiny_run = shutil.copytree(tiny_run, tmp_path / "run")
    assert main(["report", "--run", str(tiny_run)]) == 0
    report = (tiny_run / "REPORT.md").read_text()
    verdicts = {v["id"]: v["verdict"] for v in json.loads((tiny_run / "verdicts.json").read_text())}
    assert table_verdicts(report) == verdicts
    assert set(verdicts) == {c.id for c in load_claims()}
    for name in FIGURES:
        assert f"![{name}](figures/{name}.png)" in report
        assert (tiny_run / "figures" / f"{name}.png").read_bytes().startswith(PNG)
    assert "`tiny`" in report and "## What the write-up says vs what its code ran" in report
    # The report's files are recorded: the run still verifies.
    assert main(["verify", "--run", str(tiny_run)]) == 0
    manifest = json.loads((tiny_run / "manifest.json").read_text())
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
