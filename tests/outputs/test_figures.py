"""The SAE-health figures beyond the write-up: how far training turned each encoder row, and how many
top prompts were there before training."""

from __future__ import annotations

import shutil
from pathlib import Path

from replication.outputs import figures
from replication.rundir import artifacts, layout
from replication.rundir.reader import RunData


def test_every_encoder_row_is_drawn_beside_adams_bound(tiny_run: Path) -> None:
    run = RunData(tiny_run)
    ax = figures.init_cosine(run).axes[0]
    assert sum(bar.get_height() for bar in ax.patches) == run.codes.shape[1]  # one count per code dimension
    assert all(0.0 < bar.get_x() <= 1.0 for bar in ax.patches)


def test_every_live_dimension_counts_its_top_prompts_seen_untrained(tiny_run: Path) -> None:
    run = RunData(tiny_run)
    ax = figures.top5_overlap(run).axes[0]
    heights = [bar.get_height() for bar in ax.patches]
    assert len(heights) == run.config.analyze.top_k + 1  # 0 to k shared prompts
    assert sum(heights) == len(run.live)


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
