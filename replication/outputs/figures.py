"""The write-up's six figures, and four SAE-health figures, drawn from a finished run's files."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from sklearn.manifold import TSNE

from replication.config import FIXTURES_DIR
from replication.evaluation import health
from replication.evaluation.metrics import METRICS
from replication.evaluation.metrics.initial import adam_steps, init_cosines, top_overlaps
from replication.rundir import artifacts, layout
from replication.rundir.reader import RunData, control_of
from replication.sae.data import sample_rows

FIGURE_PROMPTS = FIXTURES_DIR / "figure_prompts.txt"
PNG_META = {"Software": None}  # no version string: the same figure gives the same bytes


def _figure(width: float, height: float) -> Callable[[Callable[[RunData, Axes], None]], Callable[[RunData], Figure]]:
    """Draw on the one axes of a new figure of this size (inches); the figure is what the function gives."""

    def decorate(draw: Callable[[RunData, Axes], None]) -> Callable[[RunData], Figure]:
        @functools.wraps(draw)
        def figure(run: RunData) -> Figure:
            fig = Figure(figsize=(width, height))
            draw(run, fig.subplots())
            return fig

        return figure

    return decorate


def listed_prompts(run: RunData) -> list[str]:
    """The write-up's listed figure prompts that the run's corpus holds."""
    return [p for p in FIGURE_PROMPTS.read_text(encoding="utf-8").splitlines() if p in run.prompts]


def _listed_vectors(run: RunData) -> tuple[list[str], np.ndarray]:
    """The write-up's listed prompts present in the run, and their sample rows."""
    rows = sample_rows(run.activations)[0].numpy()
    chosen = listed_prompts(run)
    return chosen, rows[[run.prompts.index(p) for p in chosen]]


@_figure(10, 5)
def part2(run: RunData, ax: Axes) -> None:
    """The 98 samples' activations, one row each (the row the analysis encodes)."""
    rows = sample_rows(run.activations)[0].numpy()
    limit = float(np.percentile(np.abs(rows), 99)) or 1.0
    image = ax.imshow(rows, aspect="auto", cmap="coolwarm", vmin=-limit, vmax=limit, interpolation="nearest")
    ax.figure.colorbar(image, ax=ax, label="activation (clipped at the 99th percentile of |x|)")
    ax.set(xlabel="dimension", ylabel="sample (prompt index)", title="Layer-10 activations, one row per sample")


@_figure(8, 6)
def part2_1(run: RunData, ax: Axes) -> None:
    """t-SNE of the listed prompts' activations, as the original (perplexity 10, random_state 42)."""
    chosen, vectors = _listed_vectors(run)
    if len(chosen) > 10:  # t-SNE needs more points than its perplexity
        embedded = TSNE(n_components=2, perplexity=10, random_state=42).fit_transform(vectors)
        ax.scatter(embedded[:, 0], embedded[:, 1])
        for (px, py), label in zip(embedded, chosen, strict=True):
            ax.annotate(label[:32], (px, py), fontsize=7)
    ax.set(title=f"t-SNE of the write-up's {len(chosen)} listed prompts (perplexity 10, seed 42)")


@_figure(8, 7)
def part2_2(run: RunData, ax: Axes) -> None:
    """Cosine similarity between the listed prompts' activations."""
    chosen, vectors = _listed_vectors(run)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    image = ax.imshow(unit @ unit.T, cmap="viridis", vmin=-1, vmax=1)
    ax.figure.colorbar(image, ax=ax, label="cosine similarity")
    ax.set_xticks(range(len(chosen)), [c[:24] for c in chosen], rotation=90, fontsize=6)
    ax.set_yticks(range(len(chosen)), [c[:24] for c in chosen], fontsize=6)
    ax.set_title("Cosine similarity of the listed prompts' activations")


@_figure(7, 4)
def training_loss(run: RunData, ax: Axes) -> None:
    epochs = [r["epoch"] for r in run.history]
    ax.plot(epochs, [r["train_loss"] for r in run.history], "o-", label="train loss (MSE + L1 term)")
    ax.plot(epochs, [r["val_loss"] for r in run.history], "s-", label="validation MSE")
    ax.set(xlabel="epoch", ylabel="loss", yscale="log", title="Training loss")
    ax.legend()


@_figure(7, 4)
def sparsity_curve(run: RunData, ax: Axes) -> None:
    ax.plot([r["epoch"] for r in run.history], [r["sparsity"] for r in run.history], "o-")
    ax.set(xlabel="epoch", ylabel="fraction of training codes with |z| < 0.01", ylim=(0, 1.02), title="Sparsity")


@_figure(6, 5)
def pca_plot(run: RunData, ax: Axes) -> None:
    """PCA of the last epoch's training codes, as the original plotted it."""
    coords = np.asarray(run.pca["coords"])
    ratio = run.pca["explained_variance_ratio"]
    ax.scatter(coords[:, 0], coords[:, 1], s=8, alpha=0.6)
    ax.set(
        xlabel=f"PC 1 ({ratio[0]:.1%})" if ratio else "PC 1",
        ylabel=f"PC 2 ({ratio[1]:.1%})" if ratio else "PC 2",
        title="PCA of the last epoch's training codes",
    )


@_figure(6, 4)
def l0_hist(run: RunData, ax: Axes) -> None:
    ax.hist(health.l0(run.codes), bins=30)
    ax.set(xlabel="non-zero code dimensions (L0)", ylabel="samples", title="L0 of the encoded samples")


@_figure(6, 4)
def init_cosine(run: RunData, ax: Axes) -> None:
    """Each encoder row's cosine with its initial value (the control's), beside the least median cosine
    Adam's per-step bound allows."""
    cosines = init_cosines(run, "encoder")
    if cosines is not None:
        ax.hist(cosines, bins=40)
        reach = METRICS["encoder_init_cosine"].reach
        bound = reach(run) if reach is not None else None
        if bound is not None:
            label = f"least median cosine Adam allows after {adam_steps(run)} step(s)"
            ax.axvline(bound.low, color="tab:red", linestyle="--", label=label)
            ax.legend()
    ax.set(xlabel="cosine of an encoder row with its initial value", ylabel="code dimensions")
    ax.set_title("How far training turned each encoder row")


@_figure(6, 4)
def top5_overlap(run: RunData, ax: Axes) -> None:
    """For each live dimension, how many of its top prompts the same dimension of the untrained SAE has."""
    k = run.config.analyze.top_k
    initial = control_of(run)
    if initial is not None and run.live:
        ax.hist(top_overlaps(run, initial), bins=[b - 0.5 for b in range(k + 2)])
    ax.set(xlabel=f"of a live dimension's top {k} prompts, how many the untrained SAE's has", ylabel="live dimensions")
    ax.set_title("Top prompts already there before training")


@_figure(6, 4)
def feature_density(run: RunData, ax: Axes) -> None:
    density = health.feature_density(run.codes)
    ax.hist(np.log10(density[density > 0]), bins=30)
    ax.set(
        xlabel="log10 fraction of samples on which a feature fires",
        ylabel="features",
        title=f"Feature density ({int((density == 0).sum())} features never fire, not shown)",
    )


@_figure(6, 4)
def planted_recovery(run: RunData, ax: Axes) -> None:
    """Planted directions each recipe recovers against the number of samples (``planted.json``)."""
    planted = run.json(layout.PLANTED_JSON)
    for name, rows in planted["recipes"].items():
        ax.plot([r["samples"] for r in rows], [r["recovered"] for r in rows], marker="o", label=name)
    ax.axvline(len(run.records), color="grey", linestyle=":", label="the study's samples")
    ax.set_xscale("log")
    ax.set_ylim(-0.04 * planted["features"], 1.04 * planted["features"])
    ax.set(xlabel="samples (rows)", ylabel=f"recovered, of {planted['features']} planted")
    ax.set_title(f"Planted features recovered (decoder cosine >= {planted['threshold']})")
    ax.legend()


_WRITEUP = (part2, part2_1, part2_2, training_loss, sparsity_curve, pca_plot)
_HEALTH = (init_cosine, top5_overlap, l0_hist, feature_density)
DRAW: dict[str, Callable[[RunData], Figure]] = {draw.__name__: draw for draw in (*_WRITEUP, *_HEALTH)}
FIGURES = tuple(DRAW)[:6]
"""The write-up's six figures; the others are SAE health beyond it."""
HEALTH_FIGURES = tuple(DRAW)[6:]


def draw_all(run: RunData) -> dict[str, Path]:
    """Every figure as a PNG in ``<run>/figures/``, by name."""
    draw_now = {**DRAW, **({"planted_recovery": planted_recovery} if run.has(layout.PLANTED_JSON) else {})}
    paths = {name: run.root / layout.figure(name) for name in draw_now}
    for name, draw in draw_now.items():
        fig = draw(run)
        fig.tight_layout()
        artifacts.write_png(paths[name], fig, dpi=100, metadata=PNG_META)
    return paths


def captions(run: RunData) -> dict[str, str]:
    """Under each figure: what the write-up said it shows (where it has the figure), and what this run's shows."""
    history = run.history
    first, last = history[0], history[-1]
    full = METRICS["first_full_sparsity_epoch"].compute(run)
    listed = listed_prompts(run)
    l0, density = health.l0(run.codes), health.feature_density(run.codes)
    return {
        "part2": 'The write-up: layer-10 activations of its 98 prompts, "mostly non-zero" and varying widely. '
        f"This run: {METRICS['nonzero_fraction'].compute(run):.4f} of the values are not exactly 0, and over the "
        f"plotted rows the 99th percentile of |x| is {METRICS['plotted_spread_p99_over_median'].compute(run):.1f} "
        "times the median.",
        "part2_1": f"The write-up: a t-SNE of 11 listed prompts, with no reading given. This run: the {len(listed)} "
        "of them in its corpus, perplexity 10, seed 42, as the original.",
        "part2_2": "The write-up: the cosine similarity of the same prompts' activations, with no reading given. "
        f"This run: the same {len(listed)} prompts' sample rows.",
        "training_loss": "The write-up: the training loss fell fast from 17 to 0.013 and validation stabilized at "
        f"0.014. This run: train loss {first['train_loss']:.4g} in epoch 1, {last['train_loss']:.4g} in epoch "
        f"{len(history)}; validation {first['val_loss']:.4g} to {last['val_loss']:.4g} (best epoch "
        f"{run.train_summary['best_epoch']}).",
        "sparsity_curve": "The write-up: sparsity rising from 0.5578 in epoch 1 to 1.0000 by epoch 4. This run: "
        f"{first['sparsity']:.4f} in epoch 1, {last['sparsity']:.4f} in epoch {len(history)}; 1.0000 "
        + (f"first in epoch {full}." if full != "never" else "in no epoch."),
        "pca_plot": "The write-up: a PCA visualization of encoded features. This run: a PCA of the last epoch's "
        "training codes, as the original plotted them (not of the best SAE's codes).",
        "init_cosine": "Beyond the write-up: each encoder row's cosine with its random initial value (the untrained "
        f"control's); median {METRICS['encoder_init_cosine'].compute(run) or float('nan'):.4f}, 1 = not moved. The "
        "dashed line, where drawn, is the least median Adam's per-step bound allows after the steps taken.",
        "top5_overlap": "Beyond the write-up: for each live dimension, how many of its top prompts the same "
        "dimension of the untrained SAE already has; share with at least "
        f"{run.config.analyze.top_k - 1} of them: {METRICS['top5_shared_with_untrained'].compute(run) or 0:.2f}.",
        "l0_hist": "Beyond the write-up, which shows no such figure: the number of non-zero codes of each encoded "
        f"sample (best SAE), mean {l0.mean():.1f} of {run.codes.shape[1]}.",
        "feature_density": "Beyond the write-up: on what fraction of the samples each feature fires (best SAE); "
        f"{int((density == 0).sum())} of {density.size} never do.",
    }
