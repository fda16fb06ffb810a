"""REPORT.md: gathers one run's facts and renders them into ``templates/report.md.j2``.

Every fact comes from the run's files (the manifest records the machine each stage ran on); the
template holds the words. Only the command, the code commit and the date belong to the rendering.
"""

from __future__ import annotations

import datetime
import math
import os
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from replication.evaluation import health, topics
from replication.evaluation import writeup as implied
from replication.evaluation.claims import KINDS, format_value, load_coverage
from replication.evaluation.metrics import METRICS
from replication.evaluation.metrics.implied import writeup_dimension0
from replication.evaluation.metrics.part4 import max_hits, purity, purity_null
from replication.evaluation.metrics.parts12 import prompt_topics
from replication.evaluation.verdicts import COUNTED, Result, control_of
from replication.outputs import figures, rendering
from replication.rundir import artifacts, layout, provenance
from replication.rundir.reader import RunData

PURITY_ROWS = 12
HBM_BANDWIDTH = {"H200": 4.8e12, "H100": 3.35e12, "A100": 2.0e12}
"""Peak HBM bandwidth (bytes/s) by GPU name, from the vendors' data sheets: the bound on a decode
step that reads every weight once."""


def _environment() -> jinja2.Environment:
    env = rendering.environment(html=False)  # Markdown
    env.filters.update(
        value=format_value,
        code=lambda text: f"`{text}`",
        cell=lambda text: str(text).replace("|", "\\|"),
        fixed2=lambda x: f"{x:.2f}",
    )
    return env


def _seeds(run: RunData, kinds: Mapping[str, str]) -> dict[str, Any] | None:
    """The seed-robustness table and summary line, when the seeds step ran."""
    if not run.has(layout.SEEDS_JSON):
        return None
    summary = run.json(layout.SEEDS_JSON)
    tested = {
        cid: c
        for cid, c in summary["claims"].items()
        if c["verdicts"][0] != "not testable at this profile" and kinds.get(cid) in COUNTED
    }
    rows = []
    for cid, entry in tested.items():
        counts = Counter(entry["verdicts"] + entry.get("sampling_verdicts", []))
        interval = entry["interval"]
        shown = (
            f"{format_value(interval[0])} - {format_value(interval[1])}"
            if interval
            else ", ".join(format_value(m) for m in entry["measured"])
        )
        spread = ", ".join(f"{n} {v}" for v, n in counts.items())
        rows.append({"id": cid, "seed0": entry["verdicts"][0], "spread": spread, "shown": shown, **entry})
    return {
        **summary,
        "sampling": summary.get("sampling", {"seeds": [0], "applies": False, "note": "not run"}),
        "combined": Counter(c["combined"] for c in tested.values()),
        "changed": [cid for cid, c in tested.items() if c["combined"] != c["verdicts"][0]],
        "rows": rows,
    }


def _ablations(run: RunData, kinds: Mapping[str, str]) -> dict[str, Any] | None:
    if not run.has(layout.ABLATIONS_JSON):
        return None
    rows: dict[str, Any] = run.json(layout.ABLATIONS_JSON)
    faithful = rows["faithful"]["verdicts"]
    for name, row in rows.items():
        findings = [c for c in row.get("changed", []) if kinds.get(c) in COUNTED]
        changed = ", ".join(f"`{c}` ({faithful[c]} -> {row['verdicts'][c]})" for c in findings)
        row["changes"] = changed or ("—" if name == "faithful" else "none")
        row.setdefault("not_applicable", None)
    return rows


def _purity(run: RunData) -> dict[str, Any] | None:
    """Part 4 as statistics: topic purity of every live feature's top prompts, with p- and q-values."""
    rows = purity(run)
    if not rows:
        return None
    significant = [r for r in rows if r["q"] < topics.ALPHA]
    by_topic = Counter(r["topic"] for r in significant)
    prompts = {d["dim"]: d["top"] for d in run.live}
    best = sorted(rows, key=lambda r: (r["p"], r["dim"]))[:PURITY_ROWS]
    return {
        "live": len(rows),
        "significant": len(significant),
        "by_topic": ", ".join(f"{t}: {n}" for t, n in by_topic.most_common()),
        "topic_counts": ", ".join(f"{t} {n}" for t, n in sorted(Counter(prompt_topics(run)).items())),
        "best_p": (best_p := float(purity_null(run)[run.config.analyze.top_k])),
        "bh_min": math.ceil(best_p * len(rows) / topics.ALPHA),
        "histogram": ", ".join(f"{h}/k: {n}" for h, n in sorted(Counter(r["hits"] for r in rows).items())),
        "best": [
            {**r, "prompts": "; ".join(t["prompt"][:48].replace("|", "\\|") for t in prompts[r["dim"]])} for r in best
        ],
    }


def _performance(manifest: dict[str, Any]) -> dict[str, Any]:
    stages = manifest["stages"]
    capture = stages.get("capture", {})
    facts: dict[str, Any] = {"stages": {n: stages[n] for n in layout.STAGES if n in stages}, "capture": None}
    if "tokens_per_s" not in capture:
        return facts
    facts["capture"] = capture
    facts["per_call_ms"] = capture["generate_s"] / capture["forward_calls"] * 1000
    gpu = capture["environment"].get("gpu") or ""
    bandwidth = next((bw for name, bw in HBM_BANDWIDTH.items() if name in gpu), None)
    facts["bound"] = None
    if capture["device"].startswith("cuda") and bandwidth:
        facts["bound"] = {
            "gpu": gpu,
            "weight_gb": capture["weight_bytes"] / 1e9,
            "tb_per_s": bandwidth / 1e12,
            "ms": capture["weight_bytes"] / bandwidth * 1000,
        }
    return facts


def _split(run: RunData) -> dict[str, Any]:
    """The positional split as run: how many prompts train, how many validate, and their topics."""
    n_val = len(run.records) - run.split_index
    topics = Counter(prompt_topics(run)[-n_val:])
    return {
        "train": run.split_index,
        "val": n_val,
        "val_topics": ", ".join(f"{t} {n}" for t, n in topics.most_common()),
    }


def _verdicts(results: list[Result]) -> dict[str, Any]:
    """The headline's counts by kind, the notes of each claim, and the alternative readings."""
    by_kind = Counter(r.claim.kind for r in results)
    findings = [r for r in results if r.claim.kind in COUNTED]
    counts: dict[str, Any] = Counter(r.verdict for r in findings)
    counts["untrained"] = sum(r.holds_untrained for r in findings)

    def held(kind: str) -> dict[str, int]:
        tested = [r for r in results if r.claim.kind == kind and r.verdict != "not testable at this profile"]
        return {"replicated": sum(r.verdict == "replicated" for r in tested), "tested": len(tested)}

    notes = {
        r.claim.id: "; ".join(
            note
            for note, flag in (("holds untrained", r.holds_untrained), ("depends on the reading", r.reading_dependent))
            if flag
        )
        for r in results
    }
    readings = []
    for r in results:
        if r.claim.alternatives and r.verdict != "not testable at this profile":
            readings.append({"id": r.claim.id, "label": "primary: " + (r.claim.why or r.claim.metric), **vars(r)})
            readings += [
                {"id": r.claim.id, "label": alt.why or alt.metric, **vars(outcome)}
                for alt, outcome in zip(r.claim.alternatives, r.alternatives, strict=True)
            ]
    return {
        "kinds": {kind: by_kind[kind] for kind in KINDS},
        "findings": counts,
        "setup": held("setup"),
        "implied_counts": held("implied"),
        "dependent": [r.claim.id for r in results if r.reading_dependent],
        "notes": notes,
        "readings": readings,
    }


def _power(run: RunData, control: RunData | None) -> dict[str, Any] | None:
    """The Part 4 topic tests on the trained SAE and the control, with their best p and power."""
    rows, notes = [], []
    for topic in topics.TESTED:
        size = sum(t == topic for t in prompt_topics(run))
        for name, view in (("trained", run), ("untrained", control)):
            test = None if view is None else max_hits(view, topic)
            if test is None:
                continue
            power = " / ".join(f"{test.power[h]:.2f}" if h in test.power else "—" for h in (3, 4, 5))
            rows.append(
                {"topic": topic, "size": size, "sae": name, "observed": test.observed, "p": test.p}
                | {"best_p": test.best_p, "power": power}
            )
            if name == "trained" and not test.testable:
                notes.append(
                    f"{topic}: not testable with this corpus -- {size} prompts, so no feature can hold more than "
                    f"{size} in its top 5, and even that gives p = {test.best_p:.2g} against {len(run.live)} live "
                    "dimensions."
                )
    if not rows:
        return None
    return {"rows": rows, "notes": notes, "permutations": topics.PERMUTATIONS, "plantings": topics.PLANTINGS}


def facts(run: RunData, results: list[Result], links: dict[str, str], command: str) -> dict[str, Any]:
    """Everything the template shows, from the run's files."""
    manifest = run.manifest
    env = manifest["stages"]["capture"]["environment"]
    density = health.feature_density(run.codes)
    sample_l0 = health.l0(run.codes)
    kinds = {r.claim.id: r.claim.kind for r in results}
    return {
        "command": command,
        "commit": provenance.code_commit(),
        "date": f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M}",
        "hardware": (
            f"GPU ({env['gpu']}, {env['gpu_memory_gib']} GiB)"
            if env["gpu"]
            else f"CPU ({env['cpu']}, {env['cores']} cores)"
        ),
        "env": env,
        "cfg": run.config,
        "info": run.info,
        "manifest": manifest,
        "results": results,
        "definitions": {name: m.definition for name, m in METRICS.items()},
        "summary": run.train_summary,
        "facts": {
            "samples": len(run.records),
            "prefill": sum(r["source"] == "prefill" for r in run.records),
            "mean_new_tokens": METRICS["mean_new_tokens"].compute(run),
            "mean_total_tokens": METRICS["mean_total_tokens"].compute(run),
            "padding": METRICS["padding_row_fraction"].compute(run),
            "dead": METRICS["dead_features"].compute(run),
            "d_hidden": run.sae.d_hidden,
            "val_fvu": METRICS["val_fvu"].compute(run),
        },
        "health": {
            "l0_mean": float(sample_l0.mean()),
            "l0_median": float(np.median(sample_l0)),
            "l0_max": int(sample_l0.max()),
            "train_fvu": METRICS["train_fvu"].compute(run),
            "val_mean_predictor_fvu": METRICS["val_mean_predictor_fvu"].compute(run),
            "dead_fraction": health.dead_fraction(run.codes),
            "density_median": float(np.median(density)),
            "density_max": float(density.max()),
        },
        "splice": run.splice,
        "split": _split(run),
        "figures": {"writeup": figures.FIGURES, "health": figures.HEALTH_FIGURES, "links": links},
        "seeds": _seeds(run, kinds),
        "ablations": _ablations(run, kinds),
        "purity": _purity(run),
        "export": run.json(layout.EXPORT_INDEX) if run.has(layout.EXPORT_INDEX) else None,
        "derivations": [derive() for derive in implied.DERIVATIONS],
        "cannot": implied.CANNOT,
        "dimension0": writeup_dimension0(),
        "dead_listing": _dead_listing(run),
        "power": _power(run, control_of(run)),
        "coverage": _coverage(),
        **_verdicts(results),
        "performance": _performance(manifest),
        "bench": run.json(layout.BENCH) if run.has(layout.BENCH) else None,
    }


def _coverage() -> dict[str, Any]:
    """How the write-up's sentences are accounted for in claims/coverage.yaml."""
    entries = load_coverage()
    reasons = Counter(str(e["none"]).split(":")[0] for e in entries if not e.get("claims"))
    return {
        "sentences": len(entries),
        "claimed": sum(bool(e.get("claims")) for e in entries),
        "unclaimed": sum(reasons.values()),
        "reasons": ", ".join(f"{reason} {n}" for reason, n in reasons.most_common()),
    }


def _dead_listing(run: RunData) -> str:
    share = METRICS["dead_dims_with_writeup_list"].compute(run)
    dead = METRICS["dead_features"].compute(run)
    if share is None:
        return "it has no dead dimension"
    return f"{share:.0%} of its {dead} dead dimensions list these five prompts in this order"


def render(context: dict[str, Any]) -> str:
    return _environment().get_template("report.md.j2").render(context) + "\n"


def write_report(run: RunData, results: list[Result], output: Path, command: str) -> list[Path]:
    """The figures into ``<run>/figures/`` and the report to ``output``; the files written."""
    paths = figures.draw_all(run)
    links = {name: os.path.relpath(path, output.parent) for name, path in paths.items()}
    context = facts(run, results, links, command)
    cards = run.root / layout.CARDS_INDEX
    context["cards"] = os.path.relpath(cards, output.parent) if run.has(layout.CARDS_INDEX) else None
    artifacts.write_text(output, render(context))
    return [*paths.values(), output]
