"""The run directory's layout: a run holds exactly the files it names for each stage."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import REPO_ROOT

from replication.rundir import layout


def test_a_run_holds_exactly_the_layouts_stage_files(tiny_run: Path) -> None:
    manifest = json.loads((tiny_run / layout.MANIFEST).read_text())
    outputs = {stage: manifest["stages"][stage]["outputs"] for stage in layout.STAGES}
    assert outputs == {
        "capture": list(layout.CAPTURE_FILES),
        "train": list(layout.TRAIN_FILES),
        "analyze": list(layout.ANALYZE_FILES),
        "splice": [layout.SPLICE],
        "control": [f"{layout.CONTROL}/{name}" for name in (*layout.TRAIN_FILES, *layout.ANALYZE_FILES)],
        "shuffled": [f"{layout.SHUFFLED}/{name}" for name in (layout.HISTORY, layout.TRAIN_SUMMARY)],
    }
    for names in outputs.values():
        assert all((tiny_run / name).is_file() for name in names)


def test_gitignore_leaves_out_what_the_layout_calls_uncommitted() -> None:
    ignored = set((REPO_ROOT / ".gitignore").read_text().splitlines())
    assert {f"runs/*/{pattern}" for pattern in layout.UNCOMMITTED} <= ignored
    assert not layout.committed(f"{layout.EXPORT}/standard_sae/{layout.SAELENS_WEIGHTS}")
    assert layout.committed(layout.SAE) and layout.committed(f"{layout.EXPORT}/standard_sae/{layout.SAELENS_CFG}")
