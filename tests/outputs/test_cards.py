"""Feature cards: every number on a card equals the run's codes, recomputed here by another route;
the cards are self-contained, cite the claims, and are written as a whole or not at all."""

from __future__ import annotations

import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from helpers import REPO_ROOT

from replication.__main__ import main
from replication.evaluation.claims import load_claims
from replication.model.loading import LoadedModel
from replication.outputs import card_data, cards
from replication.rundir.reader import RunData

REFERENCE_CARDS = REPO_ROOT / "runs" / "smollm2" / cards.CARDS


class Card(HTMLParser):
    """A card's facts as its page states them: the samples with their tokens, and data attributes."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.samples: list[dict[str, Any]] = []
        self.attrs: dict[str, dict[str, str]] = {}
        self.bars: list[int] = []
        self.body: dict[str, str] = {}
        self._token: dict[str, Any] | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "body":
            self.body = a
        if "id" in a:
            self.attrs[a["id"]] = a
        if tag == "div" and a.get("class") == "sample":
            self.samples.append({"index": int(a["data-index"]), "value": float(a["data-value"]), "tokens": []})
        if tag == "i" and self.samples:
            classes = a.get("class", "").split()
            self._token = {"v": a.get("data-v"), "row": "r" in classes, "fed": "nf" not in classes, "text": ""}
            self.samples[-1]["tokens"].append(self._token)
        if tag == "rect" and "data-count" in a:
            self.bars.append(int(a["data-count"]))

    def handle_endtag(self, tag: str) -> None:
        if tag == "i":
            self._token = None

    def handle_data(self, data: str) -> None:
        if self._token is not None:
            self._token["text"] += data


@pytest.fixture(scope="module")
def carded(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the tiny run with its cards (the shared run stays as the other tests expect it)."""
    run = tmp_path_factory.mktemp("cards") / "run"
    shutil.copytree(tiny_run, run)
    assert main(["cards", "--run", str(run), "--quiet"]) == 0
    return run


def pages(run: Path) -> dict[tuple[str, int], Path]:
    found = {}
    for page in (run / cards.CARDS).glob("*/dim*.html"):
        found[(page.parent.name, int(page.stem[3:]))] = page
    return found


def test_every_number_on_a_card_equals_the_codes(carded: Path, tiny_model: LoadedModel) -> None:
    run = RunData(carded)
    layer = run.config.capture.layer
    drawn = pages(carded)
    assert drawn and {sae for sae, _ in drawn} == {"faithful"}
    # Another route to the states: the model's own hidden_states output (index layer + 1 is layer's output).
    codes = []
    for record in run.records:
        ids = torch.tensor([record["token_ids"][:-1]])
        with torch.no_grad():
            hidden = tiny_model.model(input_ids=ids, output_hidden_states=True).hidden_states[layer + 1][0]
            codes.append(run.sae.encode(hidden.float()).numpy())
    everywhere = np.concatenate(codes)
    for (_, dim), page in drawn.items():
        card = Card(page.read_text())
        column = run.codes[:, dim]
        assert float(card.attrs["density"]["data-density"]) == pytest.approx((column > 0).mean(), rel=1e-3)
        assert float(card.attrs["density"]["data-token-density"]) == pytest.approx(
            (everywhere[:, dim] > 0).mean(), rel=1e-3
        )
        assert float(card.body["data-scale"]) == pytest.approx(everywhere[:, dim].max(), rel=1e-3)
        histogram = card.attrs["histogram"]
        assert int(histogram["data-tokens"]) == everywhere.shape[0]
        assert int(histogram["data-zeros"]) == int((everywhere[:, dim] == 0).sum())
        assert sum(card.bars) == int((everywhere[:, dim] > 0).sum())
        top = [t["index"] for t in run.top["dimensions"][dim]["top"]]
        assert [s["index"] for s in card.samples[: len(top)]] == top  # the analysis's list, tie order kept
        for sample in card.samples:
            record = run.records[sample["index"]]
            tokens = sample["tokens"]
            assert len(tokens) == len(record["token_ids"])
            assert [t["fed"] for t in tokens] == [True] * (len(tokens) - 1) + [False]
            assert [i for i, t in enumerate(tokens) if t["row"]] == [len(tokens) - 2]
            assert sample["value"] == pytest.approx(run.codes[sample["index"], dim], rel=1e-3, abs=1e-9)
            expected = codes[sample["index"]][:, dim]
            shown = np.array([float(t["v"] or 0) for t in tokens[:-1]])
            np.testing.assert_allclose(shown, expected, rtol=1e-3, atol=1e-6)
            assert all((t["v"] is None) == (e == 0) for t, e in zip(tokens, expected, strict=False))
            # The row the analysis encoded carries the analysis's own code.
            assert shown[-1] == pytest.approx(run.codes[sample["index"], dim], rel=1e-3, abs=1e-6)
        lower = [s["value"] for s in card.samples[len(top) :]]
        assert lower == sorted(lower, reverse=True) and all(v > 0 for v in lower)


def test_a_card_shows_the_tokens_and_the_control(carded: Path, tiny_model: LoadedModel) -> None:
    run = RunData(carded)
    control = RunData(carded, overlay="control")
    (_, dim), page = next(iter(sorted(pages(carded).items())))
    card = Card(page.read_text())
    record = run.records[card.samples[0]["index"]]
    assert "".join(t["text"] for t in card.samples[0]["tokens"]) == tiny_model.tokenizer.decode(
        record["token_ids"], clean_up_tokenization_spaces=False
    )
    assert float(card.attrs["control"]["data-density"]) == pytest.approx((control.codes[:, dim] > 0).mean(), rel=1e-3)
    for (sae, dim), page in pages(carded).items():  # the top 5 shared with the untrained SAE, counted here
        card = Card(page.read_text())
        trained = {t["index"] for t in run.top["dimensions"][dim]["top"]}
        untrained = {t["index"] for t in control.top["dimensions"][dim]["top"]}
        assert int(card.attrs["control"]["data-overlap"]) == len(trained & untrained), (sae, dim)


def test_cards_cite_the_claims_that_point_at_them(carded: Path) -> None:
    run = RunData(carded)
    index = (carded / cards.CARDS / cards.INDEX).read_text()
    drawn = pages(carded)
    for claim in load_claims():
        dims = card_data.cited_dims(claim, run)
        row = re.search(rf'<tr data-claim="{re.escape(claim.id)}">(.*?)</tr>', index, re.DOTALL)
        assert row, claim.id
        linked = [int(d) for d in re.findall(r'href="faithful/dim(\d+)\.html"', row.group(1))]
        assert linked == [d for d in dims if ("faithful", d) in drawn]
        for dim in linked[: card_data.PER_CLAIM]:
            assert claim.id in drawn[("faithful", dim)].read_text()
    top = json.loads((carded / "analyze/top_prompts.json").read_text())["dimensions"]
    dead = [d["dim"] for d in top if all(t["value"] < 5e-5 for t in d["top"])]  # all print as 0.0000
    assert dead, "the tiny run has dead dimensions"
    claim = next(c for c in load_claims() if c.metric == "dead_features")
    assert card_data.cited_dims(claim, run) == dead  # the dead-feature claim cites exactly them


def test_cards_are_self_contained(carded: Path) -> None:
    for page in (carded / cards.CARDS).rglob("*.html"):
        text = page.read_text()
        assert not re.search(r"(https?:)?//", re.sub(r"<script>.*?</script>", "", text, flags=re.DOTALL)), page
        assert not re.search(r"<(link|img|iframe)\b|\bsrc=|@import|url\(", text), page
        for target in re.findall(r'href="([^"]+)"', text):
            assert (page.parent / target).is_file(), (page, target)


def test_the_cards_are_recorded_and_a_second_write_replaces_them(carded: Path) -> None:
    manifest = json.loads((carded / "manifest.json").read_text())
    listed = {name for name in manifest["files"] if name.startswith("cards/")}
    assert listed == {str(p.relative_to(carded)) for p in (carded / "cards").rglob("*.html")}
    assert main(["cards", "--run", str(carded), "--quiet", "--all"]) == 0
    every = RunData(carded).codes.shape[1]
    assert len(pages(carded)) == every
    assert main(["verify", "--run", str(carded)]) == 0
    assert main(["cards", "--run", str(carded), "--quiet"]) == 0
    assert len(pages(carded)) < every
    assert main(["verify", "--run", str(carded)]) == 0  # the dropped pages are no longer listed


def test_a_failed_write_leaves_the_previous_cards(carded: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = {p: p.read_bytes() for p in (carded / "cards").rglob("*.html")}

    def broken(*args: Any, **kwargs: Any) -> dict[str, Any]:
        raise RuntimeError("boom")

    monkeypatch.setattr(cards, "feature_card", broken)
    with pytest.raises(RuntimeError):
        main(["cards", "--run", str(carded), "--quiet"])
    assert {p: p.read_bytes() for p in (carded / "cards").rglob("*.html")} == before
    assert not [p for p in carded.iterdir() if p.name.startswith(".cards")]


def test_cards_of_a_directory_that_is_no_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cards", "--run", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "manifest" in err


def test_the_committed_cards_keep_their_size_budget() -> None:
    drawn = list(REFERENCE_CARDS.glob("*/dim*.html"))
    total = sum(p.stat().st_size for p in REFERENCE_CARDS.rglob("*.html"))
    assert len(drawn) >= 20
    assert total / len(drawn) <= cards.SIZE_BUDGET
    index = (REFERENCE_CARDS / cards.INDEX).read_text()
    assert sorted(re.findall(r'<a href="(\w+/dim\d+\.html)">\d+</a></td>', index)) == sorted(
        str(p.relative_to(REFERENCE_CARDS)) for p in drawn
    )


def test_cards_split_samples_where_the_run_split_them(carded: Path, tmp_path: Path) -> None:
    """A run made with --train.train_fraction=0.5 trained on the first half of its samples: every card
    says so (the note and each sample's tag), not the default's 80 %. (The cards read the split from
    the run's config; the copy's config says 0.5.)"""
    run = tmp_path / "half"
    shutil.copytree(carded, run)
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["train"]["train_fraction"] = 0.5
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    cards.write_cards(RunData(run), load_claims())
    n = len(json.loads((run / "capture/samples.json").read_text()))
    trained = n // 2  # int(0.5 * n): the positional split
    assert trained != int(0.8 * n)
    drawn = list((run / cards.CARDS).glob("*/dim*.html"))
    assert drawn
    for page in drawn:
        text = page.read_text()
        assert f"Samples 0-{trained - 1} trained the SAE" in text, page.name
        tags = re.findall(r"prompt (\d+) \([^,]+, (?:prefill|decode), (training|validation)\)", text)
        assert tags, page.name
        for index, split in tags:
            assert split == ("training" if int(index) < trained else "validation"), (page.name, index)
