"""REPORT.md: gathers one run's facts and renders them into ``templates/report.md.j2``.

Every fact comes from the run's files (the manifest records the machine each stage ran on); the
template holds the words. Only the command, the code commit and the date belong to the rendering.
"""

from __future__ import annotations

import datetime
import os
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from replication.evaluation import health, writeup
from replication.evaluation.coverage import load_coverage
from replication.evaluation.metrics import METRICS
from replication.evaluation.metrics.implied import writeup_dimension0
from replication.evaluation.metrics.part3 import relu_decoder_floor
from replication.evaluation.metrics.part4 import sample_types
from replication.evaluation.metrics.parts12 import prompt_topics
from replication.evaluation.verdicts import COUNTED, Result, testable
from replication.outputs import figures, findings, rendering
from replication.rundir import artifacts, layout, provenance
from replication.rundir.reader import RunData

HBM_BANDWIDTH = (
    ("H200", 4.8e12),
    ("H100 NVL", 3.9e12),
    ("H100 PCIe", 2.0e12),
    ("H100", 3.35e12),  # SXM: "NVIDIA H100 80GB HBM3"
    ("A100 80GB PCIe", 1.935e12),
    ("A100-SXM4-80GB", 2.039e12),
    ("A100", 1.555e12),  # the 40 GB cards
)
"""Peak HBM bandwidth (bytes/s) by the GPU's name as CUDA reports it, the most specific first, from
NVIDIA's data sheets: the bound on a decode step that reads every weight once."""


def hbm_bandwidth(gpu: str) -> float | None:
    return next((bandwidth for name, bandwidth in HBM_BANDWIDTH if name in gpu), None)


def _seeds(run: RunData, results: list[Result]) -> dict[str, Any] | None:
    """The seed-robustness table, when the seeds step ran: each measured or reading claim testable
    here, its verdict per seed and combined."""
    if not run.has(layout.SEEDS_JSON):
        return None
    summary = run.json(layout.SEEDS_JSON)
    rows = []
    for r in results:
        entry = summary["claims"].get(r.claim.id)
        if entry is None or r.claim.kind not in COUNTED or not testable(r.claim, run):
            continue
        pvalue, interval = METRICS[r.claim.metric].pvalue, entry["interval"]
        shown = (
            f"{findings.shown(interval[0], pvalue)} - {findings.shown(interval[1], pvalue)}"
            if interval
            else "; ".join(sorted({findings.shown(m) for m in entry["measured"]}))
        )
        spread = Counter(entry["verdicts"] + entry.get("sampling_verdicts", []))
        rows.append(
            {
                "id": r.claim.id,
                "seed0": entry["verdicts"][0],
                "spread": ", ".join(f"{n} {v}" for v, n in spread.items()),
            }
            | {"shown": shown, "combined": entry["combined"], "combined_why": entry.get("combined_why")}
        )
    return {**summary, "sampling": summary.get("sampling", {"seeds": [0], "applies": False}), "rows": rows}


def _ablations(run: RunData, kinds: Mapping[str, str]) -> dict[str, Any] | None:
    if not run.has(layout.ABLATIONS_JSON):
        return None
    rows: dict[str, Any] = run.json(layout.ABLATIONS_JSON)
    faithful = rows["faithful"]["verdicts"]
    for name, row in rows.items():
        counted = [c for c in row.get("changed", []) if kinds.get(c) in COUNTED]
        changed = ", ".join(f"`{c}` ({faithful[c]} -> {row['verdicts'][c]})" for c in counted)
        row["changes"] = changed or ("—" if name == "faithful" else "none")
        row.setdefault("not_applicable", None)
    return rows


def _performance(manifest: dict[str, Any]) -> dict[str, Any]:
    stages = manifest["stages"]
    capture = stages.get("capture", {})
    facts: dict[str, Any] = {"stages": {n: stages[n] for n in layout.STAGES if n in stages}, "capture": None}
    if "tokens_per_s" not in capture:
        return facts
    facts["capture"] = capture
    facts["per_call_ms"] = capture["generate_s"] / capture["forward_calls"] * 1000
    gpu = capture["environment"].get("gpu") or ""
    bandwidth = hbm_bandwidth(gpu)
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
        "env": env,
        "cfg": run.config,
        "info": run.info,
        "manifest": manifest,
        "definitions": _definitions(results),
        "metric": lambda name: METRICS[name].compute(run),
        "summary": run.train_summary,
        "facts": {
            "prefill": sum(r["source"] == "prefill" for r in run.records),
            "decode_slots": _decode_slots(run),
        },
        "health": {
            "l0_mean": float(sample_l0.mean()),
            "l0_median": float(np.median(sample_l0)),
            "l0_max": int(sample_l0.max()),
            "density_median": float(np.median(density)),
            "density_max": float(density.max()),
            "relu_floor": (floor.low if (floor := relu_decoder_floor(run)) is not None else None),
        },
        "splice": run.splice,
        "split": _split(run),
        "figures": {"writeup": figures.FIGURES, "health": figures.HEALTH_FIGURES, "links": links},
        "captions": figures.captions(run),
        "seeds": _seeds(run, results),
        "opening": findings.opening(results, run),
        "counts": findings.counts(results),
        "entries": findings.entries(results),
        "stage_commits": _stage_commits(manifest),
        "ablations": _ablations(run, kinds),
        "export": (export := run.json(layout.EXPORT_INDEX) if run.has(layout.EXPORT_INDEX) else None),
        "export_rows": _export_rows(export),
        "derivations": [derive() for derive in writeup.DERIVATIONS.values()],
        "dimension0": writeup_dimension0(),
        "coverage": _coverage(),
        "dependent": [r.claim.id for r in results if r.reading_dependent],
        "performance": _performance(manifest),
        "bench": run.json(layout.BENCH) if run.has(layout.BENCH) else None,
        "power": run.json(layout.POWER_JSON) if run.has(layout.POWER_JSON) else None,
        "planted": run.json(layout.PLANTED_JSON) if run.has(layout.PLANTED_JSON) else None,
        "learned": run.json(layout.LEARNED_JSON) if run.has(layout.LEARNED_JSON) else None,
        "prompts": run.prompts,
    }


def _definitions(results: list[Result]) -> dict[str, str]:
    """Each metric's definition, or where a claim's entry gives it, a pointer there."""
    given = {r.claim.metric: r.claim.id for r in reversed(results)}
    return {name: f"as for `{given[name]}`" if name in given else m.definition for name, m in METRICS.items()}


def _decode_slots(run: RunData) -> float | None:
    """The share of the live features' positive top-5 slots that decode-step samples fill."""
    types = sample_types(run)
    slots = [types[t["index"]] for d in run.live for t in d["top"] if t["value"] > 0]
    return sum(s == "decode" for s in slots) / len(slots) if slots else None


def _export_rows(export: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The export index, SAEs with the same outcome in one row: each reason said once."""
    groups: dict[tuple[bool, str], list[str]] = {}
    for name, entry in (export or {}).get("saes", {}).items():
        where = f"`export/{entry['directory']}/`" if entry["exported"] else entry["reason"]
        groups.setdefault((bool(entry["exported"]), where), []).append(name)
    return [{"names": names, "exported": exported, "where": where} for (exported, where), names in groups.items()]


def _stage_commits(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The code commit each artifact stage ran at (the manifest records it per stage), stages of one
    commit together, in the order they ran; the report's own stage is the report's line of its own."""
    groups: dict[str, list[str]] = {}
    for name, stage in manifest["stages"].items():
        if name == "report":
            continue
        groups.setdefault(stage.get("environment", {}).get("code_commit") or "unknown", []).append(name)
    return [{"commit": commit, "stages": names} for commit, names in groups.items()]


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


def write_report(run: RunData, results: list[Result], output: Path, command: str) -> list[Path]:
    """The figures into ``<run>/figures/`` and the report to ``output``; the files written."""
    paths = figures.draw_all(run)
    links = {name: os.path.relpath(path, output.parent) for name, path in paths.items()}
    context = facts(run, results, links, command)
    cards = run.root / layout.CARDS_INDEX
    context["cards"] = os.path.relpath(cards, output.parent) if run.has(layout.CARDS_INDEX) else None
    env = rendering.environment(html=False)  # Markdown
    env.filters.update(
        value=findings.shown,
        code=lambda text: f"`{text}`",
        cell=lambda text: str(text).replace("|", "\\|"),
        fixed2=lambda x: f"{x:.2f}",
    )
    artifacts.write_text(output, env.get_template("report.md.j2").render(context) + "\n")
    return [*paths.values(), output]
