"""The installed dependencies held to the package's own requirements before any work starts."""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

DISTRIBUTION = "sae-replication"
CHECKOUT = Path(__file__).resolve().parent.parent / "pyproject.toml"
"""pyproject.toml where the package runs from its checkout (``PYTHONPATH=.``, no install)."""


def requirements(extras: tuple[str, ...] = ()) -> list[str]:
    """The package's requirements and those of ``extras``: its checkout's pyproject.toml, else the
    installed metadata."""
    if CHECKOUT.is_file():
        project = tomllib.loads(CHECKOUT.read_text(encoding="utf-8")).get("project", {})
        if project.get("name") == DISTRIBUTION:
            optional = project.get("optional-dependencies", {})
            return [*project["dependencies"], *(r for extra in extras for r in optional.get(extra, []))]
    try:
        listed = importlib.metadata.requires(DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:  # neither installed nor in its checkout
        return []
    wanted = [f'extra == "{extra}"' for extra in extras]
    return [r.partition(";")[0].strip() for r in listed if "extra ==" not in r or any(w in r for w in wanted)]


def unmet(required: list[str]) -> list[tuple[str, str]]:
    """Each requirement the environment misses or holds at another version: what is wrong, and the
    requirement that mends it."""
    try:
        from packaging.requirements import Requirement  # noqa: PLC0415 (itself a requirement)
    except ImportError:
        return [("packaging is missing (needs any version)", "packaging")]
    found = []
    for text in required:
        requirement = Requirement(text)
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        try:
            version = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            found.append((f"{requirement.name} is missing (needs {requirement.specifier or 'any version'})", text))
            continue
        if not requirement.specifier.contains(version, prereleases=True):
            found.append((f"{requirement.name} {version} is installed, {requirement.specifier} is needed", text))
    return found


def problem(required: list[str] | None = None) -> str | None:
    """One line naming the first unmet requirement and the command that meets them all, or None."""
    required = requirements() if required is None else required
    found = unmet(required)
    if not found:
        return None
    more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
    command = "python -m pip install " + " ".join(f"'{text}'" for _, text in found)
    return f"{found[0][0]}{more}; to fix: {command}"
