"""The SAE-health figures beyond the write-up: how far training turned each encoder row, and how many
top prompts were there before training."""

from __future__ import annotations

from pathlib import Path

from replication.outputs import figures
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
