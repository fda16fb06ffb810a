"""Feature cards: one offline HTML page per selected SAE feature, and an index beside the verdicts.

What a card shows, and which features get one, is ``card_data``'s; this module writes the pages. They
are self-contained (no URL outside the cards directory) and need no model: the token states and the
read-out are files the token-states stage wrote.
"""

from __future__ import annotations

from pathlib import Path

import torch

from replication.errors import ReplicationError
from replication.evaluation.claims import Claim, format_value
from replication.evaluation.verdicts import evaluate_all
from replication.outputs import rendering
from replication.outputs.card_data import View, cited_dims, feature_card, select
from replication.rundir import artifacts, layout
from replication.rundir.reader import RunData, control_of

CARDS = layout.CARDS
INDEX = "index.html"
SIZE_BUDGET = 20_000
"""Bytes a card may take on average (the committed reference run's cards are held to it)."""
ABLATION = "standard_sae"


def page_name(sae: str, dim: int) -> str:
    """A card's file, relative to the cards directory."""
    return f"{sae}/dim{dim:04d}.html"


def load_views(run: RunData, claims: list[Claim]) -> list[View]:
    """The faithful SAE (with its seeds) and, where the ablation ran, the standard SAE."""
    views = [_view("faithful", run, claims)]
    if run.has(layout.SEEDS_JSON):
        seeds = run.json(layout.SEEDS_JSON)
        for seed in seeds["seeds"][1:]:
            path = run.root / layout.SEED_RUNS / f"seed{seed}" / layout.SAE
            if path.is_file():
                views[0].seeds.append((seed, RunData(path.parent.parent).sae.decoder.weight.detach().numpy()))
        views[0].random_baseline = seeds["features"]["random_median_best_cosine"]
    ablation = run.root / layout.VARIANT_RUNS / ABLATION
    if (ablation / layout.TOKEN_STATES).is_file():
        views.append(_view(ABLATION, RunData(ablation), claims))
    return views


def _view(name: str, run: RunData, claims: list[Claim]) -> View:
    sae = run.sae.eval()
    with torch.no_grad():
        codes = [sae.encode(s).numpy() for s in run.token_states]
    return View(name, run, evaluate_all(claims, run), codes, control_of(run))


def write_cards(run: RunData, claims: list[Claim], every: bool = False) -> list[Path]:
    """``RUN/cards/index.html`` and one page per selected feature (every feature with ``every``);
    the directory is replaced as a whole, so a failure leaves the previous cards."""
    if not run.has(layout.TOKEN_STATES):
        raise ReplicationError(f"{run.root} has no {layout.TOKEN_STATES}: run its token-states stage first")
    if len(run.token_states) != len(run.records):
        raise ReplicationError(f"{len(run.token_states)} token sequences for {len(run.records)} samples")
    views = load_views(run, claims)
    env = rendering.environment(html=True)
    env.filters["num"] = lambda v: "n/a" if v is None else format_value(v)
    env.filters["v"] = lambda v: f"{v:.4g}"
    env.filters["tok"] = lambda t: "\u201c" + t.replace("\n", "\u21b5") + "\u201d"
    env.globals.update(page_name=page_name, zip=zip)
    facts = {key: run.info[key] for key in ("model", "layer", "n_layers", "d_model")} | {
        "samples": len(run.records),
        "split_index": run.split_index,
        "positions": run.config.capture.positions,
    }
    pages: dict[str, str] = {}
    rows = []
    for view in views:
        chosen = select(view)
        if every:
            for dim in range(view.run.codes.shape[1]):
                chosen.setdefault(dim, [])
        for dim in sorted(chosen):
            card = feature_card(view, dim, chosen[dim])
            pages[page_name(view.name, dim)] = env.get_template("card.html.j2").render(card=card, run=facts)
            rows.append(card)
    links = {view.name: {r.claim.id: cited_dims(r.claim, view.run) for r in view.results} for view in views}
    pages[INDEX] = env.get_template("cards_index.html.j2").render(
        run=facts,
        views=views,
        rows=rows,
        links=links,
        drawn={(r["sae"], r["dim"]) for r in rows},
        ordered=sorted(views[0].results, key=lambda r: not links[views[0].name][r.claim.id]),
        ablation={r.claim.id: r.verdict for r in views[1].results} if len(views) > 1 else {},
    )
    return artifacts.write_tree(run.root / CARDS, pages)
