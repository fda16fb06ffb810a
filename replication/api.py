"""The Python API: run the stages, the whole replication, and read a finished run; the command line calls it.

Model code is imported only by the functions that run stages, so reading a finished run loads no model
(docs/architecture.md shows the API in use).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from replication.config import ABLATIONS, CLAIMS_DIR, RunConfig, load_profile
from replication.errors import ReplicationError
from replication.evaluation.claims import Claim, load_claims
from replication.evaluation.verdicts import WHY, Result, evaluate_all, write_verdicts
from replication.rundir import artifacts, layout
from replication.rundir.reader import RunData

if TYPE_CHECKING:
    from replication.stages.context import Context

__all__ = ["Run", "load_profile", "replicate", "run"]


def run(
    config: RunConfig,
    out: Path,
    *,
    stages: tuple[str, ...] = layout.STAGES,
    ctx: Context | None = None,
    progress: bool = False,
    force: bool = False,
) -> list[str]:
    """Run ``stages`` of ``config`` into ``out``, each skipped when up to date; the stages that ran."""
    from replication.stages.runner import run_stages  # noqa: PLC0415 -- the model libraries load here

    return run_stages(stages, config, out, ctx=ctx, progress=progress, force=force)


class Run:
    """A finished run: its files checked against the manifest (one-line error on a changed or stale
    file), then read lazily. Each step beside the run (seeds, ablations, export, cards, report) is a
    method; those that need the model take a ``Context`` to share it."""

    def __init__(self, path: Path, claims_dir: Path = CLAIMS_DIR) -> None:
        if path.exists() and not path.is_dir():
            raise ReplicationError(f"--run {path} is a file, not a run directory")
        manifest = artifacts.verify_manifest(path)
        self.path = path
        self.data = RunData(path)
        if self.data.config.hash() != manifest["config_hash"]:
            raise ReplicationError(f"{path / layout.CONFIG} does not match the manifest's config hash")
        self.claims_dir = claims_dir

    def claims(self) -> list[Claim]:
        return load_claims(self.claims_dir)

    def verdicts(self) -> list[Result]:
        """Every claim evaluated on the run, beside the untrained control."""
        return evaluate_all(self.claims(), self.data)

    def seeds(
        self, n_seeds: int = 5, sampling_seeds: int = 3, *, ctx: Context | None = None, progress: bool = False
    ) -> str:
        """The SAE retrained with seeds 1..n_seeds-1 (and captures with other sampling seeds where the
        model samples); ``seeds.json``. Returns its one-line summary."""
        from replication.experiments.seeds import run_seeds  # noqa: PLC0415

        summary = run_seeds(self.path, self.claims(), n_seeds, sampling_seeds, ctx=ctx, progress=progress)
        split = sum(c["combined_why"] == WHY["seeds"] for c in summary["claims"].values())
        return f"seeds: {n_seeds} seeds, {split} claims on which they disagree -> {self.path / layout.SEEDS_JSON}"

    def ablations(self, names: list[str] | None = None, *, ctx: Context | None = None, progress: bool = False) -> str:
        """The named ablations (all by default) beside the run; ``ablations.json``. Returns its line."""
        from replication.experiments.ablations import run_ablations  # noqa: PLC0415

        names = list(ABLATIONS) if names is None else names
        rows = run_ablations(self.path, self.claims(), names, ctx=ctx, progress=progress)
        return f"ablations: {', '.join(names)} -> {self.path / layout.ABLATIONS_JSON} ({len(rows) - 1} rows)"

    def power(self) -> str:
        """Part 4 with power: the probe ceiling, the feature tests and the planted strengths each
        detects; ``power.json``. Returns its line."""
        from replication.experiments.power import run_power  # noqa: PLC0415

        result = run_power(self.path)
        found = [t for t, r in result["topics"].items() if r["probe"]["p"] < 0.05]
        return (
            f"power: the probe finds {len(found)} of {len(result['topics'])} topics -> {self.path / layout.POWER_JSON}"
        )

    def planted(self, *, progress: bool = False) -> str:
        """The write-up's recipe and the field's on planted features of the run's shape; ``planted.json``."""
        from replication.experiments.planted import run_planted  # noqa: PLC0415

        result = run_planted(self.path, progress=progress)
        shown = "; ".join(
            f"{name} " + ", ".join(f"{row['recovered']} at {row['samples']}" for row in rows)
            for name, rows in result["recipes"].items()
        )
        return f"planted: recovered of {result['features']}: {shown} -> {self.path / layout.PLANTED_JSON}"

    def learned(self, tokens: int | None = None, *, ctx: Context | None = None, progress: bool = False) -> str:
        """An SAE that learns, beside the write-up's method: trained by sparsify on the layer over the
        standard library's sources, scored on held-out text, reading the 98 prompts; ``learned/``."""
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # it prints a notice on import
                import sparsify  # noqa: F401, PLC0415
        except ImportError:
            raise ReplicationError(
                "the learned arm needs eai-sparsify: pip install 'sae-replication[learned]'"
            ) from None
        from replication.experiments.learned import TOKENS, run_learned  # noqa: PLC0415

        result = run_learned(self.path, TOKENS if tokens is None else tokens, ctx=ctx, progress=progress)
        s = result["scores"]["learned"]
        return (
            f"learned: FVU {s['fvu']:.3f}, L0 {s['l0']:.1f}, CE recovered {s['ce_recovered_zero']:.3f} on held-out "
            f"text -> {self.path / layout.LEARNED_JSON}"
        )

    def bands(self, *, progress: bool = False) -> str:
        """Everything after the capture rerun as on other CPU kernels (the capture perturbed as they
        round it, other torch thread counts); ``bands.json``, the rounding band of each number the
        seeds and ablations move, to which ``compare`` holds a rerun on other kernels."""
        from replication.experiments.bands import measure_bands  # noqa: PLC0415

        return measure_bands(self.path, self.claims(), progress=progress)

    def export(self) -> str:
        """Each SAE of the run and its ablations in SAELens's format. Returns a line per SAE."""
        from replication.outputs.export import export_run  # noqa: PLC0415

        lines = []
        for name, entry in export_run(self.path)["saes"].items():
            where = self.path / layout.EXPORT / name if entry["exported"] else f"not exported: {entry['reason']}"
            lines.append(f"export: {name} -> {where}")
        return "\n".join(lines)

    def cards(self, every: bool = False, *, ctx: Context | None = None, progress: bool = False) -> str:
        """The token-states stage for the run and the ablation whose cards are drawn, then the cards."""
        from replication.outputs.cards import ABLATION, CARDS, write_cards  # noqa: PLC0415
        from replication.stages.context import Context  # noqa: PLC0415
        from replication.stages.runner import run_stage  # noqa: PLC0415

        ctx = ctx if ctx is not None else Context()
        run_stage(layout.TOKENS_STAGE, self.data.config, self.path, ctx=ctx, progress=progress)
        ablation = self.path / layout.VARIANT_RUNS / ABLATION
        if (ablation / layout.CODES).is_file():
            cfg = load_profile(str(ablation / layout.CONFIG))
            run_stage(layout.TOKENS_STAGE, cfg, ablation, ctx=ctx, progress=progress)
        files = write_cards(RunData(self.path), self.claims(), every=every)
        artifacts.record_addition(self.path, CARDS, files, {"all": every}, replaces=CARDS)
        return f"cards: {len(files) - 1} features -> {self.path / CARDS / 'index.html'}"

    def report(self, output: Path | None = None, command: str = "") -> str:
        """verdicts.json, the figures and REPORT.md (or ``output``)."""
        from replication.outputs.report import write_report  # noqa: PLC0415

        data = RunData(self.path)  # the files the steps above added
        results = evaluate_all(self.claims(), data)
        files = [write_verdicts(data, results)]
        output = output if output is not None else self.path / layout.REPORT
        written = write_report(data, results, output, command)
        files += [f for f in written if f.resolve().is_relative_to(self.path.resolve())]
        artifacts.record_addition(self.path, "report", files, {})
        return f"report: {len(results)} claims -> {output}"


def replicate(
    config: RunConfig,
    out: Path,
    *,
    claims_dir: Path = CLAIMS_DIR,
    output: Path | None = None,
    command: str = "",
    progress: bool = False,
    force: bool = False,
    echo: Callable[[str], object] = lambda line: None,
) -> Run:
    """The whole study in one process, the model loaded once: the stages, every verdict, 5 SAE seeds
    (3 sampling seeds where the model samples), the ablations, the SAELens export, the feature cards and
    the report; ``echo`` gets each step's lines."""
    from replication.stages.context import Context  # noqa: PLC0415

    ctx = Context()
    # The seeds and ablations are made again below: bands measured on older ones are dropped, not refused.
    artifacts.forget_addition(out, "bands", [layout.BANDS_JSON], stale_only=True)
    ran = run(config, out, ctx=ctx, progress=progress, force=force)
    for stage in layout.STAGES:
        if stage not in ran:
            echo(f"{stage}: up to date (same config and inputs), skipped; --force re-runs it")
    echo(f"run: done -> {out}")
    finished = Run(out, claims_dir)
    for result in finished.verdicts():
        echo(result.line())
    echo(finished.seeds(5, 3, ctx=ctx, progress=progress))
    echo(finished.ablations(ctx=ctx, progress=progress))
    echo(finished.power())
    echo(finished.export())
    echo(finished.cards(ctx=ctx, progress=progress))
    echo(finished.report(output, command))
    return finished
