"""The test session's set-up: torch on one thread in every process, the order the tests run in, and
the shared fixtures (``shared_fixtures.py``), which only a process that runs tests loads.

The tests run torch on one thread, in this process and in every command line they start: a test
session may run on every core at once (``pytest -n auto``), and a float32 sum rounds the same way in
every process of the session. Under pytest-xdist the process that only hands out the tests never
imports torch or the package: the workers start seconds sooner.
"""

from __future__ import annotations

import os

import pytest

SMOLLM2_FIXTURES = {"smollm2", "smollm2_package"}
"""A test that uses one of these runs SmolLM2: it is marked slow whatever its module says."""


THREADS = "1"
"""torch's threads in every process of a test session (OMP_NUM_THREADS, which torch reads at start)."""


def pytest_configure(config: pytest.Config) -> None:
    os.environ["OMP_NUM_THREADS"] = THREADS  # the command lines the tests start inherit it
    hands_out_only = bool(getattr(config.option, "numprocesses", None)) and not hasattr(config, "workerinput")
    if not hands_out_only:
        config.pluginmanager.import_plugin("shared_fixtures")


def _rank(item: pytest.Item, first_reader: pytest.Item | None) -> int:
    """Where a test goes in a session of several workers (``--dist=worksteal``: each takes a share
    of this order from its start, and a worker that runs out takes over the end of another's)."""
    names = set(getattr(item, "fixturenames", ()))
    if names & {"smollm2_rerun", "rerun_on_one_thread"}:
        return 0  # the longest pieces of work (SmolLM2 end to end, its trained parts) start first
    if item is first_reader:
        return 1  # its worker makes the tiny run while the others work on
    if SMOLLM2_FIXTURES & names:
        return 4  # by then the rerun has filled the session's model cache
    return 3 if "tiny_run" in names else 2


@pytest.hookimpl(tryfirst=True)  # before -m "not slow" deselects
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Marks the SmolLM2 tests slow, and orders the session so that no worker sits waiting for a
    shared run to be made (``_rank``); within a rank the order is the files' own. The longest tests
    each head another worker's share: in one share they ran one after the other."""
    for item in items:
        if SMOLLM2_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
    first_reader = next((item for item in items if "tiny_run" in getattr(item, "fixturenames", ())), None)
    items.sort(key=lambda item: _rank(item, first_reader))
    workers = getattr(config, "workerinput", {}).get("workercount", 1)
    longest = [item for item in items if _rank(item, first_reader) == 0]
    if workers > 1 and len(longest) > 1:
        items[:] = _heading_shares(longest, [item for item in items if item not in longest], workers)


def _heading_shares(longest: list[pytest.Item], rest: list[pytest.Item], workers: int) -> list[pytest.Item]:
    """``longest`` dealt to the heads of the shares worksteal cuts from the front of the order (each
    worker in turn takes what is left over the workers left), ``rest`` filling the shares after them."""
    order: list[pytest.Item] = []
    left = len(longest) + len(rest)
    for worker in range(workers):
        share = left // (workers - worker)
        head = longest[worker::workers]
        order += head + rest[: share - len(head)]
        rest = rest[max(share - len(head), 0) :]
        left -= share
    return order + rest
