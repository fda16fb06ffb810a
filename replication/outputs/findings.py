"""The report's first page: the bottom line of a run, its verdict counts, and each claim said once.

Every sentence of the bottom line is generated from the run's facts, with the number and the claim id
behind it, and says the opposite when the facts do: nothing here is written for one run.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from replication.config import load_profile
from replication.evaluation import stats, topics
from replication.evaluation.claims import format_value
from replication.evaluation.metrics import METRICS
from replication.evaluation.metrics.implied import DERIVED, TIE_ORDER
from replication.evaluation.metrics.part4 import sample_types
from replication.evaluation.metrics.part4_topics import max_hits
from replication.evaluation.metrics.parts12 import prompt_topics
from replication.evaluation.stats import STABLE_COSINE
from replication.evaluation.verdicts import COUNTED, FINDINGS, WHY, Result
from replication.evaluation.writeup import writeup_strength
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
    """The verdicts by kind: findings (measured and reading claims scored here, neither fixed by design
    nor holding untrained) apart from everything that is not a finding."""
    by_kind: dict[str, Counter[str]] = {kind: Counter() for kind in ("setup", "measured", "implied", "reading")}
    for r in results:
        by_kind[r.claim.kind][r.verdict] += 1
    scored = Counter(r.verdict for r in results if r.claim.kind in COUNTED)
    return {
        "by_kind": by_kind,
        "findings": {v: scored[v] for v in FINDINGS},
        "n_findings": sum(scored[v] for v in FINDINGS),
        "not_findings": {
            v: scored[v]
            for v in (
                "fixed by design",
                "holds untrained",
                "within chance",
                "not testable",
                "not testable at this profile",
            )
        },
    }


def _by_id(results: list[Result]) -> dict[str, Result]:
    return {r.claim.id: r for r in results}


def _initialisation(r: dict[str, Result]) -> str | None:
    moved, implied = r.get("part3.moved_from_init"), r.get("part4.implied_random_features")
    if moved is None or implied is None or not isinstance(moved.measured, float):
        return None
    bound = f"the write-up's own numbers (one Adam step) keep its SAE's at {implied.measured:.4f} or more"
    if moved.measured >= STABLE_COSINE:
        return (
            f"The trained SAE's weights barely left their random initialisation: its encoder rows keep a median "
            f"cosine of {moved.measured:.4f} with their initial values (`part3.moved_from_init`), and {bound} "
            "(`part4.implied_random_features`)."
        )
    return (
        f"Training moved the SAE away from its initialisation, to a median encoder-row cosine of "
        f"{moved.measured:.3f} (`part3.moved_from_init`), while {bound} (`part4.implied_random_features`)."
    )


def _dimension0(r: dict[str, Result]) -> str | None:
    origin = r.get("part4.dim0_tie_order")
    if origin is None:
        return None
    if origin.measured == TIE_ORDER:
        return (
            "The write-up's \"OOP feature\", its dimension 0, lists exactly the top 5 that numpy 1.24's argsort "
            "gives for 98 equal values: the tie order of a dead feature (`part4.dim0_tie_order`)."
        )
    return "The write-up's dimension-0 list is not a tie order of equal values (`part4.dim0_tie_order`)."


def _losses(r: dict[str, Result]) -> str | None:
    initial, mass = r.get("part3.implied_initial_loss"), r.get("part3.implied_reconstruction")
    if initial is None or mass is None:
        return None
    first = (
        f"By the write-up's own numbers, its loss of 17 matches the untrained SAE's L1 penalty (its epoch-1 "
        f"sparsity predicts {initial.measured:.2f} times 17, `part3.implied_initial_loss`)"
        if initial.verdict == "inconsistent"
        else f"By the write-up's own numbers, its loss of 17 is not the untrained SAE's L1 penalty "
        f"({initial.measured:.2f} times it, `part3.implied_initial_loss`)"
    )
    left = f"about {mass.measured:.2%} of the codes' initial mass or less, if the untrained MSE is small next to 17"
    return f"{first}, and its final loss leaves {left} (`part3.implied_reconstruction`)."


def _data(run: RunData) -> str | None:
    """What the samples are, when most of them are not the write-up's (1, 1, d) decode-step states."""
    types = sample_types(run)
    prefill = types.count("prefill")
    if prefill * 2 <= len(types):
        return None
    padding = METRICS["padding_row_fraction"].compute(run)
    return (
        f"Most of this run's samples ({prefill} of {len(types)}) hold a prompt's rows, as EOS was the first new "
        "token, not one generated token's (1, 1, d) as the write-up's do, and "
        f"{padding:.0%} of the training rows are zero padding: the Part 3 and 4 verdicts describe that "
        "data (`part2.sample_shape`, and `part2.generated_length` by the same cause)."
    )


def _seeds(seeds: dict[str, Any] | None, r: dict[str, Result]) -> str | None:
    if not seeds:
        return None
    f = seeds["features"]
    medians = ", ".join(f"{m:.2f}" for m in f["median_best_cosine"])
    some = "No feature reproduces" if f["stable"] == 0 else f"{f['stable']} of {f['live']} features reproduce"
    text = (
        f"{some} across {len(seeds['seeds'])} SAE seeds: {f['stable']} of {f['live']} live features have a decoder "
        f"match of cosine >= {f['threshold']} in every other seed (median best cosine {medians}; random directions "
        f"{f['random_median_best_cosine']:.2f}; `seeds.json`)"
    )
    moved = r.get("part3.moved_from_init")
    decoder = moved.alternatives[0].measured if moved is not None and moved.alternatives else None
    if f["stable"] == 0 and isinstance(decoder, float) and decoder >= STABLE_COSINE:
        text += (
            f", as it must be when decoder columns stay at a median cosine of {decoder:.4f} with their random "
            "start (seed 0, `part3.moved_from_init`)"
        )
    return text + "."


def _splice(run: RunData) -> str | None:
    splice = run.splice
    if not splice or splice.get("ce_loss_recovered") is None:
        return None
    sae, zero = splice["ce_sae"], splice["ce_zero"]
    compared = "worse than" if sae > zero else "better than"
    text = (
        f"Spliced into the model, the SAE does {compared} zeroing the layer: cross-entropy {sae:.2f} nats against "
        f"{zero:.2f} (CE loss recovered {splice['ce_loss_recovered']:.2f}, `splice/splice.json`)"
    )
    uniform = splice.get("ce_uniform")
    if uniform is not None and math.isclose(zero, uniform, rel_tol=1e-4):
        text += f"; zeroing gives ln {splice['vocab_size']} = {uniform:.4f}, uniform logits over the vocabulary"
    return text + "."


READING_WORDS = {
    "holds untrained": "the untrained SAE meets {} too",
    "within chance": "the tests of {} could not have flagged an effect as large as the write-up's own example",
    "not replicated": "{} failed",
    "not testable": "{} could flag no outcome",
    "inconclusive": "{} gave no value",
}
"""How the bottom line says why a Part 4 reading did not replicate, by its verdict."""


def _readings(results: list[Result]) -> str | None:
    readings = [r for r in results if r.claim.kind == "reading" and r.verdict != "not testable at this profile"]
    if not readings:
        return None
    beat = [r.claim.id for r in readings if r.verdict == "replicated"]
    by_verdict: dict[str, list[str]] = {}
    for r in readings:
        if r.verdict != "replicated":
            by_verdict.setdefault(r.verdict, []).append(f"`{r.claim.id}`")
    why = [
        READING_WORDS.get(verdict, "{} " + verdict).format(", ".join(ids))
        for verdict, ids in sorted(by_verdict.items())
    ]
    rest = "; ".join(why)
    if not beat:
        return f"No Part 4 reading of {len(readings)} replicated: {rest}."
    return (
        f"{len(beat)} of {len(readings)} Part 4 readings replicated beyond the untrained control: "
        f"{', '.join(f'`{c}`' for c in beat)}" + (f"; {rest}." if rest else ".")
    )


def _tally(results: list[Result]) -> str:
    c = counts(results)
    f, nf = c["findings"], c["not_findings"]
    fragile = [f"`{r.claim.id}`" for r in results if r.finding and r.verdict == "replicated" and r.reading_dependent]
    caveat = f" ({', '.join(fragile)} only under its primary reading)" if fragile else ""
    return (
        f"Of the {len(results)} claims, {c['n_findings']} are findings: {f['replicated']} replicated{caveat}, "
        f"{f['not replicated']} not replicated, {f['inconclusive']} inconclusive; {nf['fixed by design']} fixed by "
        f"design, {nf['holds untrained']} holding untrained, {nf['within chance']} within chance and "
        f"{nf['not testable'] + nf['not testable at this profile']} not testable here are not counted (Summary)."
    )


ANSWER_WORDS = {(True, False): "Yes", (False, True): "No", (True, True): "In part"}
"""The answer by (some answering claim replicated, some not replicated)."""


def _what_ran(run: RunData) -> str:
    """The model, its scale and decoding, and what it stands in for."""
    info, generation = run.info, run.info["generation"]
    decoding = (
        f"sampling (temperature {generation['temperature']}, top-p {generation['top_p']})"
        if generation["do_sample"]
        else "greedy decoding"
    )
    text = (
        f"**What ran:** {info['model']}, hooked at layer {info['layer']} of {info['n_layers']} (d_model "
        f"{info['d_model']}), {decoding}, {len(run.records)} prompts"
    )
    original = load_profile("seed").model.name
    if run.config.profile != "seed" or run.config.model.source == "random_init":
        text += f". It stands in for {original}, which did not run here"
    return text + "."


def _answer(results: list[Result]) -> str:
    """One part's question, answered by its claims marked ``answers``: the run's findings with their
    numbers, those that are none and why, then what the write-up's own numbers imply."""
    found = [r for r in results if r.finding]
    own = [r for r in results if r.claim.kind == "implied"]
    answer = ANSWER_WORDS.get(
        (any(r.verdict == "replicated" for r in found), any(r.verdict == "not replicated" for r in found)),
        "Not decided by this run",
    )
    part = results[0].claim.section.partition(":")[0]
    said = [f"`{r.claim.id}` {r.verdict} ({shown(r.measured)}; the write-up: {r.claimed})" for r in found]
    why: dict[str, list[str]] = {}
    for r in results:
        if not r.finding and r not in own:
            why.setdefault(WHY.get(r.verdict, r.verdict), []).append(f"`{r.claim.id}`")
    none = "; ".join(f"{reason} for {', '.join(ids)}" for reason, ids in why.items())
    text = f"**{part}: {results[0].claim.question}** {answer}"
    text += f": {'; '.join(said)}" if said else ""
    text += f". No evidence either way: {none}." if none else "."
    implied = [f"`{r.claim.id}` {r.verdict} ({shown(r.measured)}; its reading: {r.claimed})" for r in own]
    return text + (f" By the write-up's own numbers, no run needed: {'; '.join(implied)}." if implied else "")


def opening(results: list[Result], run: RunData) -> list[str]:
    """The report's first screen: what ran; each part's question, answered by its claims marked
    ``answers`` in the claim files; the tally."""
    by_question: dict[str, list[Result]] = {}
    for r in results:
        if r.claim.answers and r.claim.question:
            by_question.setdefault(r.claim.question, []).append(r)
    return [_what_ran(run), *(_answer(group) for group in by_question.values()), _tally(results)]


def bottom_line(results: list[Result], run: RunData, seeds: dict[str, Any] | None) -> list[str]:
    """At most eight sentences, each with its number and the claim or file behind it."""
    r = _by_id(results)
    sentences = [
        _initialisation(r),
        _dimension0(r),
        _losses(r),
        _seeds(seeds, r),
        _splice(run),
        _readings(results),
        _data(run),
    ]
    return [s for s in sentences if s]


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

    derived = dict(DERIVED)
    rows = []
    for r in results:
        spec, cid = METRICS[r.claim.metric], r.claim.id
        text = spec.definition
        if spec.name in derived:  # its arithmetic is in the report's section of the write-up's numbers
            text = (
                f"From the write-up's numbers: **{derived[spec.name]().name}** (What the write-up's own numbers imply)"
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


def topic_tests(run: RunData, control: RunData | None) -> dict[str, Any] | None:
    """The Part 4 topic tests on the trained SAE and the control: the most topic prompts in a top 5,
    its p, and the fewest the test flags."""
    rows = []
    for topic in topics.TESTED:
        size = sum(t == topic for t in prompt_topics(run))
        for name, view in (("trained", run), ("untrained", control)):
            test = None if view is None else max_hits(view, topic)
            if test is not None:
                flagged = (
                    "none reachable" if test.threshold is None else f"{test.threshold} of {run.config.analyze.top_k}"
                )
                rows.append(
                    {"topic": topic, "size": size, "sae": name, "observed": test.observed}
                    | {"p": stats.format_p(test.p), "flags": flagged, "writeup": writeup_strength(topic)}
                )
    if not rows:
        return None
    types = sample_types(run)
    slots = [types[t["index"]] for d in run.live for t in d["top"] if t["value"] > 0]
    decode = [i for i, t in enumerate(types) if t == "decode"]
    labels = prompt_topics(run)
    skew = {
        topic: {"decode": sum(labels[i] == topic for i in decode), "all": labels.count(topic)}
        for topic in topics.TESTED
    }
    return {
        "rows": rows,
        "permutations": topics.PERMUTATIONS,
        "decode_slots": (sum(t == "decode" for t in slots) / len(slots)) if slots else None,
        "decode_samples": len(decode),
        "skew": skew,
    }
