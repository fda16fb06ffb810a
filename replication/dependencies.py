"""The installed dependencies held to the package's own requirements before any work starts."""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path
from typing import Any

DISTRIBUTION = "sae-replication"
PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def checkout() -> dict[str, Any] | None:
    """The ``[project]`` table of the checkout the package runs from (``PYTHONPATH=.``, an editable
    install), or None for an installed package."""
    if not PYPROJECT.is_file():
        return None
    project: dict[str, Any] = tomllib.loads(PYPROJECT.read_text(encoding="utf-8")).get("project", {})
    return project if project.get("name") == DISTRIBUTION else None


def requirements(extras: tuple[str, ...] = ()) -> list[str]:
    """The package's requirements that apply here, and those of ``extras``: its checkout's
    pyproject.toml, else the installed metadata; markers evaluated, then dropped."""
    project = checkout()
    if project is not None:
        optional = project.get("optional-dependencies", {})
        listed = [*project["dependencies"], *(r for extra in extras for r in optional.get(extra, []))]
    else:
        try:
            listed = importlib.metadata.requires(DISTRIBUTION) or []
        except importlib.metadata.PackageNotFoundError:  # neither installed nor in its checkout
            return []
    return [text.partition(";")[0].strip() for text in listed if _applies(text, extras)]


def _applies(text: str, extras: tuple[str, ...]) -> bool:
    """Whether a requirement's marker holds on this machine, for the package itself or one of ``extras``."""
    try:
        from packaging.requirements import Requirement  # noqa: PLC0415 (itself a requirement)
    except ImportError:  # unmet() names packaging
        return ";" not in text
    marker = Requirement(text).marker
    return marker is None or any(marker.evaluate({"extra": extra}) for extra in ("", *extras))


def unmet(required: list[str]) -> list[tuple[str, str]]:
    """Each requirement the environment misses or holds at another version: what is wrong, and the
    requirement that mends it."""
    try:
        from packaging.requirements import Requirement  # noqa: PLC0415 (itself a requirement)
        from packaging.version import InvalidVersion  # noqa: PLC0415
    except ImportError:
        return [("packaging is missing (needs any version)", "packaging")]
    found = []
    for text in required:
        requirement = Requirement(text)
        try:
            version = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            found.append((f"{requirement.name} is missing (needs {requirement.specifier or 'any version'})", text))
            continue
        try:
            met = requirement.specifier.contains(version, prereleases=True)
        except InvalidVersion:  # a version string PEP 440 cannot read meets no specifier
            met = False
        if not met:
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
