"""The coverage map (claims/coverage.yaml): every sentence of the write-up, in order and verbatim,
with the claims that check it or why none does; loading it fails on a sentence left out."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from replication.config import CLAIMS_DIR
from replication.errors import ReplicationError
from replication.evaluation.claims import COVERAGE_FILE, WRITEUP, load_claims

COVERAGE = CLAIMS_DIR / COVERAGE_FILE
"""Every sentence of the write-up, in order and verbatim, with its claims or why it has none."""
_MARKUP = re.compile(r"(?:\s|#|\*|-|\d+\.(?=\s))*")


def load_coverage(path: Path = COVERAGE, writeup: Path = WRITEUP, claims: Path = CLAIMS_DIR) -> list[dict[str, Any]]:
    """The coverage map, checked: its sentences, in order, leave nothing of the write-up but markup;
    each names known claims or a reason, not both. One-line errors."""
    try:
        entries = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("sentences")
    except (OSError, UnicodeDecodeError, yaml.YAMLError, AttributeError) as exc:
        raise ReplicationError(f"{path.name}: unreadable ({type(exc).__name__})") from None
    if not isinstance(entries, list):
        raise ReplicationError(f"{path.name}: expected a mapping with a 'sentences' list")
    text = writeup.read_text(encoding="utf-8")
    known = {claim.id for claim in load_claims(claims, writeup)}
    position = 0
    for number, entry in enumerate(entries, start=1):
        where = f"{path.name}: sentence {number}"
        sentence = entry.get("text") if isinstance(entry, dict) else None
        if not isinstance(sentence, str) or sentence not in text:
            raise ReplicationError(f"{where}: not verbatim in the write-up")
        found = text.find(sentence, position)
        gap = text[position:found] if found >= 0 else text[position:]
        if found < 0 or not _MARKUP.fullmatch(gap):
            missed = " ".join(gap.split())[:60] if found >= 0 else sentence[:60]
            raise ReplicationError(f"{where}: the write-up's text before it, {missed!r}, is not in the coverage map")
        position = found + len(sentence)
        ids, reason = entry.get("claims"), entry.get("none")
        if ids and reason:
            raise ReplicationError(f"{where}: claims or a reason, not both")
        if not ids and not (isinstance(reason, str) and reason.strip()):
            raise ReplicationError(f"{where}: needs claims or a reason ('none')")
        unknown = [cid for cid in ids or [] if cid not in known]
        if unknown:
            raise ReplicationError(f"{where}: unknown claim {unknown[0]!r}")
    if not _MARKUP.fullmatch(text[position:]):
        rest = " ".join(text[position:].split())[:60]
        raise ReplicationError(f"{path.name}: the write-up's text {rest!r} at its end is not in the coverage map")
    return entries
