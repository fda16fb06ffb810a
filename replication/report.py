"""REPORT.md for reviewers: verdicts, evidence, the write-up's six figures, provenance."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from sklearn.manifold import TSNE

from replication import artifacts, health
from replication.analysis import sample_rows
from replication.claims import Result, format_value
from replication.config import REPO_ROOT
from replication.metrics import METRICS, RunData
from replication.pipeline import STAGES

FIGURE_PROMPTS = REPO_ROOT / "fixtures" / "figure_prompts.txt"
FIGURES = ("part2", "part2_1", "part2_2", "training_loss", "sparsity_curve", "pca_plot")
PNG_META = {"Software": None}  # no version string: the same figure gives the same bytes

DIFFERENCES = [
    (
        "Generation length",
        '"Approximately 50 tokens (set by `max_length=50`)"',
        "`max_length=50` counts the prompt: at most 50 - prompt length new tokens, fewer when EOS comes.",
    ),
    (
        "What a sample is",
        '"(1, 1, 4096) per sample"',
        "The hook overwrites its output on every forward call: a sample is the hidden state of the LAST "
        "decode step only (one token), or the whole prompt's prefill (1, prompt_len, d) when EOS came first.",
    ),
    (
        "Decoding",
        "not stated",
        "No sampling arguments: Llama-3.1-8B-Instruct's own config samples (temperature 0.6, top-p 0.9) and "
        "the original set no seed, so its texts cannot be reproduced exactly; SmolLM2's GGUF decodes greedily.",
    ),
    ("Prompt format", "not stated", "No chat template: the instruct model continues the raw prompt text."),
    ("Layer", '"the middle layers"', "Layer 10 of 32 (0-based block 10): relative depth 0.31."),
    (
        "Decoder",
        '"Encoder-decoder ... ReLU activations"',
        "A ReLU on the decoder OUTPUT too: reconstructions cannot be negative, yet about half of the residual "
        "stream is negative.",
    ),
    (
        "Sparsity penalty",
        '"L1 Penalty: 0.001"',
        "0.001 x the SUM of |z| over the whole batch (not a mean): the L1 term dominates the loss.",
    ),
    (
        "Optimisation",
        '"Training ran for 50 epochs max"',
        "Full batch: one Adam step per epoch, so at most 50 steps in all.",
    ),
    (
        "Split",
        "not stated",
        "Positional: the first 78 prompts train, the last 20 (web and databases) validate.",
    ),
    (
        "Prefill samples",
        "not stated",
        "Samples are zero-padded to the longest and flattened: a prefill sample makes every sample contribute "
        "T_max rows, most of them zeros; the analysis's view(1, -1) fails on them (here: the last row is "
        "encoded).",
    ),
    (
        '"Sparsity"',
        '"100% near-zero values (<0.01)"',
        "The fraction of TRAINING codes below 0.01 in that epoch's forward pass, not of the best SAE's codes.",
    ),
    (
        "PCA plot",
        '"PCA visualization of encoded features"',
        "PCA of the last epoch's training codes, not of the best (reloaded) SAE's.",
    ),
]

LIMITATIONS = [
    "Verdicts at the `smollm2` and `tiny` profiles test the method at another scale, not the 8B model's "
    "numbers; claims bound to the 8B model's absolute values are marked not testable there.",
    "The original sampled without a seed: its exact texts, activations and losses are not reproducible; "
    "a seed-profile run gives one draw of them.",
    'Readings of vague sentences ("middle layers", "a few", "vary widely", "good reconstruction") are '
    "stated next to each claim; another reading could change a verdict.",
    "Topic labels come from a fixed keyword rule (fixtures/topics.yaml), not from human judgement; the "
    "feature claims are tested against a permutation null of those labels.",
    "The splice test scores the captured sequences themselves (prompt + the model's own answer, at most 50 "
    "tokens each), not a held-out text corpus, and replaces every position including the first; the faithful "
    "SAE was trained on one state per prompt, so it is asked to reconstruct positions it never saw.",
    "The `standard_sae` ablation changes the four things named (linear decoder, unit-norm decoder directions, "
    "L1 per row averaged over rows, minibatches of 64) and keeps the rest of the original's recipe: MSE as a mean "
    "over all values, L1 coefficient 0.001, Adam 1e-3, early stopping on validation MSE; it is not tuned.",
]


def make_figures(run: RunData, out: Path) -> dict[str, Path]:
    """The write-up's six figures from the run's artifacts, as PNG files in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    x, _ = sample_rows(run.samples)
    rows = x.numpy()
    prompts = [r["prompt"] for r in run.records]
    chosen = [p for p in FIGURE_PROMPTS.read_text(encoding="utf-8").splitlines() if p in prompts]
    vectors = rows[[prompts.index(p) for p in chosen]]
    paths = {name: out / f"{name}.png" for name in FIGURES}

    fig = Figure(figsize=(10, 5))
    ax = fig.subplots()
    limit = float(np.percentile(np.abs(rows), 99)) or 1.0
    image = ax.imshow(rows, aspect="auto", cmap="coolwarm", vmin=-limit, vmax=limit, interpolation="nearest")
    fig.colorbar(image, ax=ax, label="activation (clipped at the 99th percentile of |x|)")
    ax.set(xlabel="dimension", ylabel="sample (prompt index)", title="Layer-10 activations, one row per sample")
    _save(fig, paths["part2"])

    fig = Figure(figsize=(8, 6))
    ax = fig.subplots()
    if len(chosen) > 10:
        embedded = TSNE(n_components=2, perplexity=10, random_state=42).fit_transform(vectors)
        ax.scatter(embedded[:, 0], embedded[:, 1])
        for (px, py), label in zip(embedded, chosen, strict=True):
            ax.annotate(label[:32], (px, py), fontsize=7)
    ax.set(title=f"t-SNE of the write-up's {len(chosen)} listed prompts (perplexity 10, seed 42)")
    _save(fig, paths["part2_1"])

    fig = Figure(figsize=(8, 7))
    ax = fig.subplots()
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    image = ax.imshow(unit @ unit.T, cmap="viridis", vmin=-1, vmax=1)
    fig.colorbar(image, ax=ax, label="cosine similarity")
    ax.set_xticks(range(len(chosen)), [c[:24] for c in chosen], rotation=90, fontsize=6)
    ax.set_yticks(range(len(chosen)), [c[:24] for c in chosen], fontsize=6)
    ax.set_title("Cosine similarity of the listed prompts' activations")
    _save(fig, paths["part2_2"])

    epochs = [r["epoch"] for r in run.history]
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    ax.plot(epochs, [r["train_loss"] for r in run.history], "o-", label="train loss (MSE + L1 term)")
    ax.plot(epochs, [r["val_loss"] for r in run.history], "s-", label="validation MSE")
    ax.set(xlabel="epoch", ylabel="loss", yscale="log", title="Training loss")
    ax.legend()
    _save(fig, paths["training_loss"])

    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    ax.plot(epochs, [r["sparsity"] for r in run.history], "o-")
    ax.set(xlabel="epoch", ylabel="fraction of training codes with |z| < 0.01", ylim=(0, 1.02), title="Sparsity")
    _save(fig, paths["sparsity_curve"])

    pca = artifacts.read_json(run.root / "analyze" / "pca.json")
    coords = np.asarray(pca["coords"])
    fig = Figure(figsize=(6, 5))
    ax = fig.subplots()
    ax.scatter(coords[:, 0], coords[:, 1], s=8, alpha=0.6)
    ratio = pca["explained_variance_ratio"]
    ax.set(
        xlabel=f"PC 1 ({ratio[0]:.1%})" if ratio else "PC 1",
        ylabel=f"PC 2 ({ratio[1]:.1%})" if ratio else "PC 2",
        title="PCA of the last epoch's training codes",
    )
    _save(fig, paths["pca_plot"])
    return paths


def health_figures(run: RunData, out: Path) -> dict[str, Path]:
    """L0 per encoded sample, and the feature-density histogram (beyond the write-up's figures)."""
    paths = {name: out / f"{name}.png" for name in ("l0_hist", "feature_density")}
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    ax.hist(health.l0(run.codes), bins=30)
    ax.set(xlabel="non-zero code dimensions (L0)", ylabel="samples", title="L0 of the encoded samples")
    _save(fig, paths["l0_hist"])
    density = health.feature_density(run.codes)
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    ax.hist(np.log10(density[density > 0]), bins=30)
    ax.set(
        xlabel="log10 fraction of samples on which a feature fires",
        ylabel="features",
        title=f"Feature density ({int((density == 0).sum())} features never fire, not shown)",
    )
    _save(fig, paths["feature_density"])
    return paths


def _seed_summary(run: RunData, manifest: dict[str, Any]) -> list[str]:
    """One summary line: the verdicts once the SAE seeds are combined."""
    if "seeds.json" not in manifest.get("files", {}):
        return []
    summary = artifacts.read_json(run.root / "seeds.json")
    combined = Counter(
        c["combined"] for c in summary["claims"].values() if c["verdicts"][0] != "not testable at this profile"
    )
    changed = [cid for cid, c in summary["claims"].items() if c["combined"] != c["verdicts"][0]]
    return [
        "",
        f"Over {len(summary['seeds'])} SAE seeds (see Seed robustness): **{combined['replicated']} replicated, "
        f"{combined['not replicated']} not replicated, {combined['inconclusive']} inconclusive**"
        + (f"; the seeds disagree on {', '.join(f'`{c}`' for c in changed)}." if changed else "."),
    ]


def _seeds(run: RunData, manifest: dict[str, Any]) -> list[str]:
    """The seed-robustness table, when the seeds stage ran."""
    if "seeds.json" not in manifest.get("files", {}):
        return []
    summary = artifacts.read_json(run.root / "seeds.json")
    features = summary["features"]
    sampling = summary.get("sampling", {"seeds": [0], "applies": False, "note": "not run"})
    resampled = f"{len(sampling['seeds']) - 1} further captures with sampling seeds" if sampling["applies"] else ""
    lines = [
        f"## Seed robustness ({len(summary['seeds'])} SAE seeds)",
        "",
        "The same activations, the SAE retrained with seeds "
        f"{', '.join(map(str, summary['seeds']))} (0 is the faithful run above)"
        + (f", and {resampled} {', '.join(map(str, sampling['seeds'][1:]))}" if resampled else "")
        + ". A claim whose verdict differs across them is **inconclusive**. Claims not testable at this "
        f"profile are left out. Sampling during generation: {sampling['note']}.",
        "",
        "| id | seed 0 | verdicts over seeds | measured (min - max) | combined |",
        "|---|---|---|---|---|",
    ]
    for cid, entry in summary["claims"].items():
        if entry["verdicts"][0] == "not testable at this profile":
            continue
        counts = Counter(entry["verdicts"] + entry.get("sampling_verdicts", []))
        spread = ", ".join(f"{n} {v}" for v, n in counts.items())
        interval = entry["interval"]
        shown = (
            f"{format_value(interval[0])} - {format_value(interval[1])}"
            if interval
            else ", ".join(format_value(m) for m in entry["measured"])
        )
        lines.append(f"| `{cid}` | {entry['verdicts'][0]} | {spread} | {shown} | **{entry['combined']}** |")
    lines += [
        "",
        f"Features matched across seeds by the best cosine of their decoder directions: {features['stable']} of "
        f"{features['live']} live features of seed 0 have a match of cosine >= {features['threshold']} in every "
        f"other seed (median best cosine per seed: "
        f"{', '.join(f'{c:.2f}' for c in features['median_best_cosine'])}).",
        "",
    ]
    return lines


def _ablations(run: RunData, manifest: dict[str, Any]) -> list[str]:
    """The ablation table, when the ablations stage ran."""
    if "ablations.json" not in manifest.get("files", {}):
        return []
    rows = artifacts.read_json(run.root / "ablations.json")
    lines = [
        "## Ablations",
        "",
        "Each a named config variant run beside the faithful one (`<run>/variants/<name>/`). Sparsity: the last "
        "epoch's fraction of training codes below 0.01; L0: non-zero codes per encoded sample; FVU on the "
        "validation rows; dead: code dimensions zero on every sample; CE recovered: the splice test (SAE health "
        "below); topic features: live dimensions with a topic-pure top 5 at q < 0.05 (Part 4 statistics below); "
        "decode-shaped: samples of shape (1, 1, d).",
        "",
        "| variant | what | stop epoch | sparsity | L0 | val FVU | dead | CE recovered | topic features | "
        "decode-shaped | verdicts that change |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        if "not_applicable" in row:
            lines.append(f"| `{name}` | {row['description']} | not applicable: {row['not_applicable']} |||||||||")
            continue
        changed = ", ".join(
            f"`{c}` ({rows['faithful']['verdicts'][c]} -> {row['verdicts'][c]})" for c in row.get("changed", [])
        )
        lines.append(
            f"| `{name}` | {row['description']} | {row['stop_epoch']} | {row['last_sparsity']:.3f} | "
            f"{row['sample_code_l0']:.1f} | {row['val_fvu']:.3f} | {row['never_active_fraction']:.3f} | "
            f"{format_value(row.get('ce_loss_recovered'))} | {format_value(row.get('significant_topic_features'))} | "
            f"{row['decode_shaped_fraction']:.2f} | {changed or ('—' if name == 'faithful' else 'none')} |"
        )
    return [*lines, ""]


def _health(run: RunData, figures: dict[str, Path], output: Path) -> list[str]:
    sample_l0 = health.l0(run.codes)
    density = health.feature_density(run.codes)
    value = {name: METRICS[name].compute(run) for name in ("train_fvu", "val_fvu", "val_mean_predictor_fvu")}
    lines = [
        "## SAE health (beyond the write-up)",
        "",
        "| metric | value | definition |",
        "|---|---|---|",
        f"| L0 per encoded sample | mean {sample_l0.mean():.1f}, median {np.median(sample_l0):.0f}, "
        f"max {sample_l0.max()} of {run.codes.shape[1]} | non-zero code dimensions of one sample (best SAE) |",
        f"| FVU, training rows | {value['train_fvu']:.3f} | {METRICS['train_fvu'].definition} |",
        f"| FVU, validation rows | {value['val_fvu']:.3f} | {METRICS['val_fvu'].definition} |",
        f"| mean-predictor FVU, validation | {value['val_mean_predictor_fvu']:.3f} | "
        f"{METRICS['val_mean_predictor_fvu'].definition} |",
        f"| dead fraction | {health.dead_fraction(run.codes):.3f} | {METRICS['never_active_fraction'].definition} |",
        f"| feature density | median {np.median(density):.3f}, max {density.max():.3f} | "
        "fraction of the samples on which a code dimension is non-zero |",
    ]
    if run.splice is not None:
        lines += [
            f"| {key.replace('_', ' ')} | {format_value(run.splice[key])} | {METRICS[key].definition} |"
            for key in ("ce_clean", "ce_sae", "ce_zero", "ce_loss_recovered")
        ]
        lines += [
            "",
            f"Splice test: the model scores its {run.splice['sequences']} captured sequences ({run.splice['tokens']} "
            f"predicted tokens: {run.splice['scored']}) with `{run.splice['hook']}`'s output left alone, replaced "
            "by the SAE's reconstruction, or replaced by zeros.",
        ]
    lines.append("")
    for name, path in figures.items():
        lines += [f"![{name}]({os.path.relpath(path, output.parent)})", ""]
    return lines


PURITY_ROWS = 12


def _purity(run: RunData) -> list[str]:
    """Part 4 as statistics: topic purity of every live feature's top prompts, with p- and q-values."""
    rows = run.purity
    if not rows:
        return []
    significant = [r for r in rows if r["q"] < 0.05]
    by_topic = Counter(r["topic"] for r in significant)
    best = sorted(rows, key=lambda r: (r["p"], r["dim"]))[:PURITY_ROWS]
    prompts = {d["dim"]: d["top"] for d in run.live}
    lines = [
        "## Part 4 statistics: topic purity of every feature",
        "",
        "Each prompt has a topic by the fixed rule of `fixtures/topics.yaml` (counts: "
        + ", ".join(f"{t} {n}" for t, n in sorted(Counter(run.topics).items()))
        + "). For each of the "
        f"{len(rows)} live dimensions: the topic holding most of its top-{run.config.analyze.top_k} prompts "
        "(positive codes only), purity = that count / k, and the exact permutation p-value -- the chance that "
        "shuffled labels give some topic at least as many of the same k prompts (multivariate hypergeometric, "
        "enumerated). q: Benjamini-Hochberg over all live dimensions.",
        "",
        f"**{len(significant)} of {len(rows)} live dimensions are topic-pure at q < 0.05**"
        + (f" ({', '.join(f'{t}: {n}' for t, n in by_topic.most_common())})." if significant else "."),
        f"Purity histogram: {', '.join(f'{h}/k: {n}' for h, n in sorted(Counter(r['hits'] for r in rows).items()))}.",
        "",
        f"The {len(best)} purest dimensions:",
        "",
        "| dim | topic | purity | p | q | top prompts |",
        "|---|---|---|---|---|---|",
    ]
    for r in best:
        shown = "; ".join(t["prompt"][:48].replace("|", "\\|") for t in prompts[r["dim"]])
        lines.append(f"| {r['dim']} | {r['topic']} | {r['purity']:.1f} | {r['p']:.4f} | {r['q']:.3f} | {shown} |")
    return [*lines, ""]


def _export(run: RunData, manifest: dict[str, Any]) -> list[str]:
    """Which SAEs were exported in SAELens's format, and why the others were not."""
    if "export/index.json" not in manifest.get("files", {}):
        return []
    index = artifacts.read_json(run.root / "export" / "index.json")
    lines = [
        "## SAELens export",
        "",
        f"Format: {index['format']}; `cfg.json` + `sae_weights.safetensors` per SAE, with the encoder's output on "
        "the encoded samples in `reference_codes.safetensors`. `nox -s saelens` loads each exported SAE with "
        "SAELens in an environment without this package and requires the same codes.",
        "",
        "| SAE | exported | where / why not |",
        "|---|---|---|",
    ]
    for name, entry in index["saes"].items():
        where = f"`export/{entry['directory']}/`" if entry["exported"] else entry["reason"]
        lines.append(f"| `{name}` | {'yes' if entry['exported'] else 'no'} | {where} |")
    return [*lines, ""]


def _save(fig: Figure, path: Path) -> None:
    fig.tight_layout()
    artifacts.atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100, metadata=PNG_META))


def commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        )
        # The code and claims only: writing a report changes the run's own tracked files.
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "replication", "claims", "fixtures"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return out.stdout.strip() + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def render(
    run: RunData,
    results: list[Result],
    figures: dict[str, Path],
    health_figs: dict[str, Path],
    *,
    output: Path,
    command: str,
) -> str:
    manifest = artifacts.read_json(run.root / artifacts.MANIFEST)
    info, cfg = run.info, run.config
    counts = Counter(r.verdict for r in results)
    tested = counts["replicated"] + counts["not replicated"] + counts["inconclusive"]
    env = manifest["stages"]["capture"]["environment"]
    hardware = env.get("cuda") or f"CPU ({platform.processor() or env['machine']}, {os.cpu_count()} cores)"
    lines = [
        "# Replication report",
        "",
        "Generated by `python -m replication report`; do not edit by hand.",
        "",
        f"- **Command:** `{command}`",
        f"- **Profile:** `{cfg.profile}` -- model {info['model']} (weights: {info['weights']}), "
        f"hook `{info['hook']}` = layer {info['layer']} of {info['n_layers']}, d_model {info['d_model']}, "
        f"dtype {info['dtype']}, device {info['device']}",
        f"- **Config hash:** `{manifest['config_hash']}`",
        f"- **Code commit:** {commit()}; **date:** {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- **Hardware:** {hardware}; torch {env['packages']['torch']}, transformers "
        f"{env['packages']['transformers']}, Python {env['python']}",
        "",
        "## Summary",
        "",
        f"{len(results)} claims of the write-up; {tested} tested at this profile: "
        f"**{counts['replicated']} replicated, {counts['not replicated']} not replicated, "
        f"{counts['inconclusive']} inconclusive**; {counts['not testable at this profile']} not testable "
        f"at this profile.",
        *_seed_summary(run, manifest),
        "",
        *_run_facts(run),
        "",
        "## Claims",
        "",
        "| id | quote | claimed | measured | verdict | evidence |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        quote = r.claim.quote.replace("|", "\\|")
        lines.append(
            f"| `{r.claim.id}` | {quote} | {r.claimed} | {format_value(r.measured)} | "
            f"**{r.verdict}** | `{r.evidence}` |"
        )
    lines += ["", "### How each claim is measured", ""]
    for r in results:
        why = f" {r.claim.why}" if r.claim.why else ""
        lines.append(
            f"- `{r.claim.id}` ({r.claim.section}): `{r.claim.metric}` -- {METRICS[r.claim.metric].definition}{why}"
        )
    lines += ["", "## Figures", ""]
    for name, path in figures.items():
        rel = os.path.relpath(path, output.parent)
        lines += [f"### {name}", "", f"![{name}]({rel})", ""]
    lines += [
        "## What the write-up says vs what its code ran",
        "",
        "| topic | write-up | code (what ran here) |",
        "|---|---|---|",
    ]
    lines += [f"| {topic} | {said} | {ran} |" for topic, said, ran in DIFFERENCES]
    lines += ["", *_seeds(run, manifest)]
    lines += [*_ablations(run, manifest)]
    lines += [*_health(run, health_figs, output)]
    lines += [*_purity(run)]
    lines += [*_export(run, manifest)]
    lines += [*_performance(manifest)]
    lines += ["", "## Limitations", ""] + [f"- {item}" for item in LIMITATIONS] + [""]
    return "\n".join(lines)


# Peak HBM bandwidth (bytes/s) by GPU name: the bound on a decode step that reads every weight once.
HBM_BANDWIDTH = {"H200": 4.8e12, "H100": 3.35e12, "A100": 2.0e12}


def _performance(manifest: dict[str, Any]) -> list[str]:
    stages = manifest["stages"]
    lines = ["## Performance", "", "| stage | wall time (s) | peak RSS (MiB) | peak CUDA (MiB) |", "|---|---|---|---|"]
    for name in STAGES:
        if name in stages:
            rec = stages[name]
            cuda = rec.get("peak_cuda_mib")
            lines.append(
                f"| {name} | {rec['wall_s']:.1f} | {rec['peak_rss_mib']:.0f} | "
                f"{'—' if cuda is None else f'{cuda:.0f}'} |"
            )
    capture = stages.get("capture", {})
    if "tokens_per_s" in capture:
        per_call = capture["generate_s"] / capture["forward_calls"] * 1000
        lines += [
            "",
            f"Capture on {capture['device']} ({capture['dtype']}), batch size {capture['batch_size']}: model load "
            f"{capture['load_s']:.1f} s, generation {capture['generate_s']:.1f} s for {capture['new_tokens']} new "
            f"tokens = **{capture['tokens_per_s']:.1f} tokens/s**; {per_call:.1f} ms per forward call of one "
            f"prompt ({capture['forward_calls']} calls).",
        ]
        gpu = capture["environment"].get("cuda") or ""
        bandwidth = next((bw for name, bw in HBM_BANDWIDTH.items() if name in gpu), None)
        if capture["device"].startswith("cuda") and bandwidth:
            bound = capture["weight_bytes"] / bandwidth * 1000
            lines.append(
                f"Memory-bandwidth bound on {gpu}: {capture['weight_bytes'] / 1e9:.1f} GB of weights / "
                f"{bandwidth / 1e12:.2f} TB/s = {bound:.1f} ms per decode step."
            )
    return lines


def _run_facts(run: RunData) -> list[str]:
    records = run.records
    prefill = sum(r["source"] == "prefill" for r in records)
    summary = artifacts.read_json(run.root / "train" / "summary.json")
    return [
        "Run facts:",
        "",
        f"- {len(records)} samples: {len(records) - prefill} from a decode step (1, 1, d), {prefill} from the "
        f"prefill (EOS was the first new token); mean new tokens {METRICS['mean_new_tokens'].compute(run):.1f}, "
        f"mean total tokens {METRICS['mean_total_tokens'].compute(run):.1f}.",
        f"- SAE trained on {summary['train_rows']} rows ({summary['rows_per_sample']} per sample; "
        f"{METRICS['padding_row_fraction'].compute(run):.0%} zero padding), validated on {summary['val_rows']}; "
        f"stopped after epoch {summary['last_epoch']}, best epoch {summary['best_epoch']} (reloaded).",
        f"- Dead features: {METRICS['dead_features'].compute(run)} of {run.sae.d_hidden}; validation FVU of the "
        f"best SAE {METRICS['val_fvu'].compute(run):.3f} (predicting the mean: 1.0).",
    ]


def write_report(run: RunData, results: list[Result], output: Path, command: str) -> tuple[Path, list[Path]]:
    """Figures into ``<run>/figures``, verdicts into ``<run>/verdicts.json``, the report to ``output``."""
    figures = make_figures(run, run.root / "figures")
    health_figs = health_figures(run, run.root / "figures")
    verdicts = [
        {
            "id": r.claim.id,
            "verdict": r.verdict,
            "claimed": r.claimed,
            "measured": r.measured,
            "evidence": r.evidence,
        }
        for r in results
    ]
    artifacts.write_json(run.root / "verdicts.json", verdicts)
    artifacts.write_text(output, render(run, results, figures, health_figs, output=output, command=command))
    return output, [run.root / "verdicts.json", *figures.values(), *health_figs.values()]
