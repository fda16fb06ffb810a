"""The committed feature cards in a real browser: Debian's headless Chromium, driven by Playwright
(pointed at the system browser; nothing is downloaded), opening the pages from the file system.

Run by ``nox -s browser``. Checks the DOM against the run's own files, that no page logs a console
error or makes a network request, and saves screenshots to ``build/screenshots/``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Request, sync_playwright

from replication.evaluation.metrics.implied import writeup_dimension0
from replication.outputs import cards
from replication.rundir.reader import RunData

REPO_ROOT = Path(__file__).resolve().parents[1]
RUN = Path(os.environ.get("CARDS_RUN", REPO_ROOT / "runs" / "smollm2"))
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = REPO_ROOT / "build" / "screenshots"
# Without these, Chromium tries to reach Google's services at start (refused on a closed network).
QUIET = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install chromium (or set CHROMIUM)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=QUIET)
        yield launched
        launched.close()


class Watched:
    """A page with every console error, page error and request it made."""

    def __init__(self, browser: Browser) -> None:
        self.page: Page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.on("request", self._request)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def _request(self, request: Request) -> None:
        self.requests.append(request.url)

    def open(self, path: Path) -> Page:
        self.page.goto(path.as_uri())
        self.page.wait_for_load_state("load")
        return self.page

    def check_offline(self) -> None:
        assert self.errors == []
        outside = [url for url in self.requests if not url.startswith((RUN / cards.CARDS).as_uri())]
        assert outside == [], outside


@pytest.fixture
def watched(browser: Browser) -> Iterator[Watched]:
    view = Watched(browser)
    yield view
    view.page.close()


def drawn() -> list[Path]:
    return sorted((RUN / cards.CARDS).glob("*/dim*.html"))


def test_the_index_lists_every_card_and_verdict(watched: Watched) -> None:
    page = watched.open(RUN / cards.CARDS / cards.INDEX)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / "index.png", full_page=True)
    rows = page.locator("#features tbody tr")
    assert rows.count() == len(drawn())
    verdicts = RunData(RUN).json("verdicts.json")
    assert page.locator("#verdicts tr[data-claim]").count() == len(verdicts)
    for row in verdicts:
        cell = page.locator(f'#verdicts tr[data-claim="{row["id"]}"] td').nth(2)
        shown = cell.inner_text().splitlines()
        assert shown == [row["verdict"]]
    # Each Part 4 card link opens a card that names the claim.
    link = page.locator('#verdicts tr[data-claim="part4.dead_feature"] a').first
    link.click()
    page.wait_for_load_state("load")
    assert "part4.dead_feature" in page.locator("#claims").inner_text()
    watched.check_offline()


def test_sorting_and_search(watched: Watched) -> None:
    page = watched.open(RUN / cards.CARDS / cards.INDEX)
    header = page.locator("#features th", has_text="density").first

    def densities() -> list[float]:
        keys = page.locator("#features tbody tr:not([hidden]) td:nth-child(4)").evaluate_all(
            "cells => cells.map(c => parseFloat(c.dataset.key))"
        )
        return [float(k) for k in keys]

    header.click()
    assert densities() == sorted(densities())
    header.click()
    assert densities() == sorted(densities(), reverse=True)
    prompts = page.locator("#features tbody tr").evaluate_all("rows => rows.map(r => r.dataset.prompts)")
    page.fill("#search", "javascript")
    shown = page.locator("#features tbody tr:not([hidden])")
    assert shown.count() == sum("javascript" in p for p in prompts) > 0
    assert page.inner_text("#shown").startswith(f"{shown.count()} of {len(prompts)}")
    page.fill("#search", "no prompt says this")
    assert shown.count() == 0
    page.fill("#search", "")
    page.select_option("#sae", "faithful")
    assert shown.count() == len([p for p in drawn() if p.parent.name == "faithful"])
    page.screenshot(path=SCREENSHOTS / "index-filtered.png", full_page=True)
    watched.check_offline()


@pytest.mark.parametrize("which", ["live", "dead"])
def test_a_card_shades_tokens_by_the_sae_code(watched: Watched, which: str) -> None:
    run = RunData(RUN)
    dead = {d["dim"] for d in run.top["dimensions"] if all(t["value"] < 5e-5 for t in d["top"])}  # print as 0
    page_path = next(
        p for p in drawn() if p.parent.name == "faithful" and (int(p.stem[3:]) in dead) == (which == "dead")
    )
    dim = int(page_path.stem[3:])
    page = watched.open(page_path)
    page.screenshot(path=SCREENSHOTS / f"card-{which}.png", full_page=True)
    assert page.inner_text("#status") == which
    samples = page.locator(".sample")
    top = [t["index"] for t in run.top["dimensions"][dim]["top"]]
    indices = [int(i) for i in samples.evaluate_all("s => s.map(e => e.dataset.index)")]
    assert indices[: len(top)] == top
    # The outlined token is the analysed row: its shown code is the SAE's code of that sample's row,
    # which the analysis computed from the captured activation (analyze/codes.safetensors).
    for n, index in enumerate(indices):
        row = samples.nth(n).locator("i.r")
        assert row.count() == 1
        value = row.get_attribute("data-v")
        expected = float(run.codes[index, dim])
        assert float(value or 0) == pytest.approx(expected, rel=2e-3, abs=1e-6)
    if which == "live":
        shaded = page.locator(".text i[data-v]").first
        alpha = shaded.evaluate("e => getComputedStyle(e).getPropertyValue('--a')")
        scale = float(page.locator("body").get_attribute("data-scale") or 0)
        assert float(alpha) == pytest.approx(min(float(shaded.get_attribute("data-v") or 0) / scale, 1), abs=0.006)
        background = shaded.evaluate("e => getComputedStyle(e).backgroundColor")
        painted = re.fullmatch(r"rgba?\(230, 110, 0(?:, ([\d.]+))?\)", background)
        assert painted, background
        assert float(painted.group(1) or 1) == pytest.approx(float(alpha), abs=0.006)
    else:
        assert "order of ties" in page.inner_text("#density")
        if run.config.analyze.tie_order == "numpy_1_24":  # the write-up's "OOP" dimension 0, drawn
            assert indices[:5] == writeup_dimension0()
    watched.check_offline()
