"""The SAE-health figures beyond the write-up: how far training turned each encoder row, and how many
top prompts were there before training."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from replication.outputs import figures
from replication.rundir import artifacts, layout
from replication.rundir.reader import RunData


def test_every_encoder_rows_cosine_with_its_start_is_drawn(tiny_run: Path) -> None:
    run = RunData(tiny_run)
    ax = figures.init_cosine(run).axes[0]
    assert sum(bar.get_height() for bar in ax.patches) == run.codes.shape[1]  # one count per code dimension
    assert all(0.0 < bar.get_x() <= 1.0 for bar in ax.patches)
    # By hand: each encoder row's cosine with the control's (its initial value), in the figure's 40 bins.
    trained, initial = (RunData(tiny_run, overlay=d).sae.encoder.weight.detach().numpy() for d in (None, "control"))
    cosines = (trained * initial).sum(1) / (np.linalg.norm(trained, axis=1) * np.linalg.norm(initial, axis=1))
    assert [bar.get_height() for bar in ax.patches] == list(np.histogram(cosines, bins=40)[0])


def test_every_live_dimension_counts_its_top_prompts_seen_untrained(tiny_run: Path) -> None:
    run = RunData(tiny_run)
    ax = figures.top5_overlap(run).axes[0]
    heights = [bar.get_height() for bar in ax.patches]
    k = run.config.analyze.top_k
    assert len(heights) == k + 1  # 0 to k shared prompts
    # By hand from the two top_prompts.json files: the trained live dimensions' top k against the control's.
    files = [json.loads((tiny_run / d / "analyze/top_prompts.json").read_text()) for d in ("", "control")]
    untrained = {d["dim"]: {t["index"] for t in d["top"]} for d in files[1]["dimensions"]}
    live = [d for d in files[0]["dimensions"] if d["top"][0]["value"] >= 5e-5]  # prints as non-zero
    shared = [len({t["index"] for t in d["top"]} & untrained[d["dim"]]) for d in live]
    assert heights == list(np.bincount(shared, minlength=k + 1))


def test_the_planted_figure_draws_each_recipes_recovery_where_measured(tiny_run: Path, tmp_path: Path) -> None:
    root = shutil.copytree(tiny_run, tmp_path / "run")
    assert "planted_recovery" not in figures.draw_all(RunData(root))
    rows = [{"samples": 98, "recovered": 0}, {"samples": 3000, "recovered": 7}]
    planted = {"features": 256, "threshold": 0.9, "recipes": {"faithful": rows[:1], "standard_sae": rows}}
    artifacts.write_json(root / layout.PLANTED_JSON, planted)
    artifacts.record_addition(root, "planted", [root / layout.PLANTED_JSON], {})
    run = RunData(root)
    assert figures.draw_all(run)["planted_recovery"].is_file()
    lines = figures.planted_recovery(run).axes[0].get_lines()
    drawn = {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in lines}
    assert drawn["faithful"] == ([98], [0])
    assert drawn["standard_sae"] == ([98, 3000], [0, 7])
