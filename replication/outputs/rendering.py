"""The templates' jinja2 environment, shared by the report (Markdown) and the feature cards (HTML)."""

from __future__ import annotations

from pathlib import Path

import jinja2

TEMPLATES = Path(__file__).resolve().parent / "templates"


def environment(*, html: bool) -> jinja2.Environment:
    """Templates from ``replication/outputs/templates``; an undefined name is an error; HTML is autoescaped."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        autoescape=html,
    )
