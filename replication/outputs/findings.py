"""The report's first page: the bottom line of a run, its verdict counts, and each claim said once.

Every sentence of the bottom line is generated from the run's facts, with the number and the claim id
behind it, and says the opposite when the facts do: nothing here is written for one run.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from replication.config import load_profile
from replication.evaluation import stats, topics, writeup
from replication.evaluation.claims import format_value
from replication.evaluation.metrics import METRICS
from replication.evaluation.metrics.implied import DERIVED
from replication.evaluation.verdicts import COUNTED, FINDINGS, NO_EVIDENCE, NOT_REPLICATED, REPLICATED, WORDS, Result
from replication.rundir import layout
from replication.rundir.reader import RunData

CELL = 40
"""The widest value a table cell shows; the claim's entry below the table gives it whole."""


def shown(value: Any, pvalue: bool = False) -> str:
    """A measured value for a table cell: p-values as ``stats.format_p``, long text cut at CELL."""
    if pvalue and isinstance(value, float):
        return stats.format_p(value)
    text = format_value(value)
    return text if len(text) <= CELL else text[: CELL - 3] + "..."


def counts(results: list[Result]) -> dict[str, Any]:
    """The verdicts by kind, and why the claims that are no finding are none."""
    by_kind: dict[str, Counter[str]] = {kind: Counter() for kind in ("setup", "measured", "implied", "reading")}
    for r in results:
        by_kind[r.claim.kind][r.verdict] += 1
    counted = [r for r in results if r.claim.kind in COUNTED]
    return {
        "by_kind": by_kind,
        "counted": len(counted),
        "findings": Counter(r.verdict for r in counted if r.finding),
        "none": Counter(r.why for r in counted if not r.finding).most_common(),
        "fragile": [r.claim.id for r in counted if r.finding and r.verdict == REPLICATED and r.reading_dependent],
    }


def _what_ran(run: RunData) -> str:
    """The model, its scale and decoding, and what it stands in for."""
    info, generation = run.info, run.info["generation"]
    decoding = (
        f"sampling (temperature {generation['temperature']}, top-p {generation['top_p']})"
        if generation["do_sample"]
        else "greedy decoding"
    )
    padding = METRICS["padding_row_fraction"].compute(run)
    text = (
        f"**What ran:** {info['model']}, hooked at layer {info['layer']} of {info['n_layers']} (d_model "
        f"{info['d_model']}), {decoding}, {len(run.records)} prompts, an SAE {run.sae.d_in} -> {run.sae.d_hidden} "
        f"trained on {run.train_summary['train_rows']} rows"
        + (f", {padding:.0%} of them zero [padding](#padding)" if padding else "")
    )
    if run.config.profile != "seed" or run.config.model.source == "random_init":
        text += (
            f". It stands in for {load_profile('seed').model.name}, which did not run here (the write-up's SAE: "
            f"{writeup.D_IN} -> {writeup.D_HIDDEN})"
        )
    return text + "."


def _value(r: Result) -> str:
    """A claim's value named by its quantity, beside what its reading needs and, for a finding, why."""
    value = stats.format_p(r.measured) if METRICS[r.claim.metric].pvalue else format_value(r.measured)
    needs = r.claimed.removeprefix("= ")
    why = f"; {r.why}" if r.why and r.finding else ""
    return f"{r.claim.quantity or r.claim.metric} = {value} (needs {needs}, `{r.claim.id}`{why})"


def _answer(results: list[Result]) -> str:
    """One part's question, answered by its claims marked ``answers``: findings with their numbers,
    the claims that are no evidence and why, then what the write-up's own numbers imply."""
    found = [r for r in results if r.finding]
    yes = [r for r in found if r.verdict == REPLICATED]
    if not found:
        answer = "Not decided by this run" + (
            ", and it does not follow from the write-up's own numbers"
            if any(r.claim.kind == "implied" and r.verdict == WORDS["implied"][1] for r in results)
            else ""
        )
    else:
        answer = "Yes" if len(yes) == len(found) else ("No" if not yes else f"In part, {len(yes)} of {len(found)}")
    part = results[0].claim.section.partition(":")[0]
    said = [
        f"{verdict}: {', '.join(_value(r) for r in found if r.verdict == verdict)}"
        for verdict in FINDINGS
        if any(r.verdict == verdict for r in found)
    ]
    why: dict[str, list[str]] = {}
    for r in results:
        if not r.finding and r.claim.kind in COUNTED:
            why.setdefault(r.why or r.verdict, []).append(f"`{r.claim.id}`")
    if why:
        said.append(f"{NO_EVIDENCE}: " + "; ".join(f"{', '.join(ids)} ({reason})" for reason, ids in why.items()))
    body = "; ".join(said)
    text = f"**{part}. {results[0].claim.question}** {answer}." + (f" {body[:1].upper()}{body[1:]}." if said else "")
    own = [r for r in results if r.claim.kind == "implied"]
    for verdict in WORDS["implied"]:
        mine = [_value(r) for r in own if r.verdict == verdict]
        if mine:
            text += f" {verdict[:1].upper()}{verdict[1:]} from the write-up's own numbers: {', '.join(mine)}."
    return text


def _tally(results: list[Result]) -> str:
    c = counts(results)
    fragile = f" (`{'`, `'.join(c['fragile'])}` only under its primary reading)" if c["fragile"] else ""
    none = ", ".join(f"{n} {why}" for why, n in c["none"])
    implied = c["by_kind"]["implied"]
    setup = c["by_kind"]["setup"]
    return (
        f"**Counts:** of {c['counted']} measured and reading claims, {c['findings'].total()} are findings: "
        f"{c['findings'][REPLICATED]} replicated{fragile}, {c['findings'][NOT_REPLICATED]} not replicated. "
        f"{c['counted'] - c['findings'].total()} are no evidence: {none}. Setup: {setup['conforms']} of "
        f"{setup.total()} conform. Implied: {implied['follows']} of the write-up's {implied.total()} conclusions "
        "follow from its own numbers."
    )


def _strengths(power: dict[str, Any], test: str) -> str:
    """The planted strengths ``test`` detects, the smallest to the largest over topics, as the report words it."""
    found = {topic: t["detected"].get(test) for topic, t in power["topics"].items()}
    hit = [strength for strength in found.values() if strength is not None]
    if not hit:
        return f"at no strength up to {power['strengths'][-1]}"
    missed = [topic for topic, strength in found.items() if strength is None]
    span = f"{min(hit)}" if min(hit) == max(hit) else f"{min(hit)}-{max(hit)}"
    return f"from {span}" + (f" (none for {', '.join(missed)})" if missed else "")


def _carried(tested: dict[str, Any], sae: str) -> str:
    """The topics some feature of ``sae`` carries (family-wise p < ALPHA), each beside its untrained p."""
    carried = [
        f"{topic} (p {stats.format_p(f[sae]['p'])}"
        + (f"; untrained p {stats.format_p(f['untrained']['p'])})" if "untrained" in f else ")")
        for topic, t in tested.items()
        if (f := t["features"])[sae]["p"] < topics.ALPHA
    ]
    least = min(t["features"][sae]["p"] for t in tested.values())
    if not carried:
        return f"no topic beyond chance (least p {stats.format_p(least)})"
    corrected = least < topics.ALPHA / len(tested)  # Bonferroni over the topics tested
    return ", ".join(carried) + (
        "" if corrected else f", which a correction for the {len(tested)} topics would not keep"
    )


def _with_power(run: RunData) -> str | None:
    """Part 4 beyond the claims, as four questions: is each topic in the layer (the probe), could the
    write-up's design find a feature (planted features), does an SAE that learns find it, and did the
    write-up's SAE (its feature test, and how small a planted topic that test detects)."""
    said, k = [], run.config.analyze.top_k
    power = run.json(layout.POWER_JSON) if run.has(layout.POWER_JSON) else None
    if power is not None:
        tested = power["topics"]
        found = [
            f"{topic} yes (probe AUROC {t['probe']['auroc']:.2f})"
            for topic, t in tested.items()
            if t["probe"]["p"] < topics.ALPHA
        ]
        missed = [
            f"{topic} not shown ({t['prompts']} prompts)"
            for topic, t in tested.items()
            if t["probe"]["p"] >= topics.ALPHA
        ]
        said.append(
            f"In layer {run.config.capture.layer}? {', '.join(found + missed)}; the probe detects a planted topic "
            f"direction {_strengths(power, 'probe')} of the median row norm."
        )
    if run.has(layout.PLANTED_JSON):
        planted = run.json(layout.PLANTED_JSON)
        said.append(
            f"Could the write-up's design find it? Of {planted['features']} planted features, "
            + "; ".join(
                f"`{name}` recovers " + ", ".join(f"{r['recovered']} at {r['samples']} samples" for r in [r[0], r[-1]])
                for name, r in planted["recipes"].items()
            )
            + "."
        )
    if run.has(layout.LEARNED_JSON):
        learned = run.json(layout.LEARNED_JSON)
        score = learned["scores"]["learned"]
        said.append(
            f"Does an SAE that learns find it? Trained by sparsify on {learned['corpus']['tokens']:,} tokens of "
            f"Python source (held-out FVU {score['fvu']:.2f}, CE recovered {score['ce_recovered_zero']:.2f}), it "
            f"carries {_carried(learned['topics'], 'learned')}."
        )
    if power is not None:
        said.append(
            f"Did the write-up's SAE find it? It carries {_carried(power['topics'], 'trained')}, "
            f"where its feature test detects a planted topic direction {_strengths(power, 'features, trained')} "
            f"of the median row norm (the write-up's top-{k} design {_strengths(power, f'top {k}, trained')})."
        )
    if not said:
        return None
    return "**Part 4 with power (beyond the write-up).** " + " ".join(said)


def opening(results: list[Result], run: RunData) -> list[str]:
    """The report's first screen: what ran; each part's question, answered by its claims marked
    ``answers`` in the claim files; Part 4 with power, where measured; the counts."""
    by_question: dict[str, list[Result]] = {}
    for r in results:
        if r.claim.answers and r.claim.question:
            by_question.setdefault(r.claim.question, []).append(r)
    power = _with_power(run)
    return [
        _what_ran(run),
        *(_answer(group) for group in by_question.values()),
        *([power] if power else []),
        _tally(results),
    ]


def entries(results: list[Result]) -> list[dict[str, Any]]:
    """Each claim once: its reading, what was measured and on the untrained SAE, whether it could have
    failed. A definition, a reading or a design argument already given for an earlier claim is named,
    not repeated."""
    first: dict[str, str] = {}

    def once(text: str | None, cid: str, what: str) -> str | None:
        if not text:
            return text
        if text in first and first[text] != cid:
            return f"{what} as for `{first[text]}`"
        first.setdefault(text, cid)
        return text

    rows = []
    for r in results:
        spec, cid = METRICS[r.claim.metric], r.claim.id
        text = spec.definition
        if spec.name in DERIVED:  # its arithmetic is in the report's section of the write-up's numbers
            text = (
                f"From the write-up's numbers: **{DERIVED[spec.name]().name}** (What the write-up's own numbers imply)"
            )
        definition = once(text, cid, f"`{spec.name}`,")
        reading = once(r.claim.why, cid, "Read")
        parts = [p if p.endswith(".") else p + "." for p in (definition, reading) if p]
        control_detail = r.control_detail if r.control_detail != r.detail else "the same"
        rows.append(
            {
                "result": r,
                "reading": " ".join(parts),
                "measured": shown(r.measured, spec.pvalue) if not isinstance(r.measured, str) else r.measured,
                "untrained": None if r.control is None else shown(r.control.measured, spec.pvalue),
                "control_detail": control_detail,
                "design": once(r.design, cid, "the same"),
                "alternatives": [
                    {
                        "why": once(alt.why, cid, "Read")
                        or once(METRICS[alt.metric].definition, cid, f"`{alt.metric}`,"),
                        "outcome": o,
                        "value": shown(o.measured, METRICS[alt.metric].pvalue),
                    }
                    for alt, o in zip(r.claim.alternatives, r.alternatives, strict=True)
                ],
            }
        )
    return rows
