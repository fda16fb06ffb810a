"""Claims of the write-up (claims/*.yaml): what each states, how it is read, and their validation.

A claim quotes the write-up verbatim and reads it as a metric compared with a value, which may scale
with the profile (``"2 * {d_model}"``); alternative readings are shown as sensitivity, never the verdict.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from replication.config import CLAIMS_DIR, FIXTURES_DIR
from replication.errors import ReplicationError
from replication.evaluation.metrics import METRICS

WRITEUP = FIXTURES_DIR / "writeup.md"
Profile = Literal["seed", "smollm2", "tiny"]
PROFILES: tuple[Profile, ...] = ("seed", "smollm2", "tiny")
COVERAGE_FILE = "coverage.yaml"
"""The coverage map beside the claim files (``evaluation.coverage``), which is no claim file."""
OPS = ("eq", "approx", "between", "ge", "le", "gt", "lt")
Kind = Literal["setup", "measured", "implied", "reading"]
"""setup: the run used the stated configuration; measured: a quantity that could have come out otherwise;
implied: from the write-up's own numbers, no run needed; reading: an interpretation tested against a null
and the untrained control."""


def _error(message: str) -> PydanticCustomError:
    """A check's own message, shown as it is (braces and all: it goes in as context)."""
    return PydanticCustomError("claim", "{message}", {"message": message})


def _as_tuple(value: Any) -> Any:
    """YAML gives lists; a tuple keeps the claim hashable. Anything else fails the tuple type."""
    return tuple(value) if isinstance(value, list) else value


Text = Annotated[str, StringConstraints(pattern=r"\S")]  # not blank
Tolerance = Annotated[int | float, Field(ge=0)]


class Reading(BaseModel):
    """One way to check a sentence: a metric and a comparison."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, use_attribute_docstrings=True)

    metric: Text
    """A name in replication.evaluation.metrics.METRICS."""
    op: Text
    """eq | approx (value, abs or rel) | between (low, high) | ge | le | gt | lt (value)."""
    value: Any = None
    low: Any = None
    high: Any = None
    abs: Tolerance | None = None
    rel: Tolerance | None = None
    why: str = ""
    """Why this measure and tolerance (shown in the report)."""

    @field_validator("value", "low", "high", "abs", "rel", mode="before")
    @classmethod
    def _finite(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            raise _error(f"field {info.field_name!r} must be finite, not {value}")
        return value

    @field_validator("metric", "op")
    @classmethod
    def _known(cls, name: str, info: ValidationInfo) -> str:
        if info.field_name == "metric" and name not in METRICS:
            raise _error(f"unknown metric {name!r}")
        if info.field_name == "op" and name not in OPS:
            raise _error(f"op {name!r} is not one of {', '.join(OPS)}")
        return name

    @model_validator(mode="after")
    def _operands(self) -> Self:
        """The op's operands are there (numbers or expressions unless eq); expressions evaluate."""
        for key in ("low", "high") if self.op == "between" else ("value",):
            operand = getattr(self, key)
            if operand is None:
                raise _error(f"op {self.op} needs field {key!r}")
            if self.op != "eq" and (isinstance(operand, bool) or not isinstance(operand, int | float | str)):
                raise _error(f"field {key!r} must be a number or an expression")
        if self.op == "approx" and (self.abs is None) == (self.rel is None):
            raise _error("op approx needs exactly one of 'abs' or 'rel'")
        for key in ("value", "low", "high"):
            try:
                _scaled(getattr(self, key), {"d_model": 1.0, "n_layers": 1.0, "n_prompts": 1.0})
            except ReplicationError as exc:
                raise _error(str(exc)) from None
        return self

    def expected(self, scale: dict[str, float]) -> str:
        """The claimed value as text, scaled to the run."""
        if self.op == "between":
            low, high = (format_value(_scaled(v, scale)) for v in (self.low, self.high))
            return f"in [{low}, {high}]"
        value = format_value(_scaled(self.value, scale))
        if self.op == "approx":
            tol = f"± {self.abs}" if self.abs is not None else f"± {(self.rel or 0.0) * 100:g}%"
            return f"≈ {value} {tol}"
        symbol = {"eq": "=", "ge": "≥", "le": "≤", "gt": ">", "lt": "<"}[self.op]
        return f"{symbol} {value}"

    def decided_on(self, low: float, high: float, scale: dict[str, float]) -> bool | None:
        """Whether the comparison holds for every value in [low, high] (True), for none (False), or for
        some only (None). What it accepts is an interval or a half-line, so the range's ends decide,
        unless a bounded interval lies between them."""
        ends = self.holds(low, scale), self.holds(high, scale)
        if any(ends):
            return True if all(ends) else None
        if self.op in ("eq", "between", "approx"):
            start = _scaled(self.low if self.op == "between" else self.value, scale)
            if self.op == "approx":
                start -= self.abs if self.abs is not None else (self.rel or 0.0) * abs(start)
            if not isinstance(start, int | float) or isinstance(start, bool) or low <= start <= high:
                return None
        return False

    def holds(self, measured: Any, scale: dict[str, float]) -> bool:
        if self.op == "eq":
            return bool(measured == _scaled(self.value, scale))
        if isinstance(measured, bool) or not isinstance(measured, int | float):
            return False  # e.g. "never" reached: a number was claimed
        if self.op == "between":
            return bool(_scaled(self.low, scale) <= measured <= _scaled(self.high, scale))
        value = _scaled(self.value, scale)
        if self.op == "approx":
            tol = self.abs if self.abs is not None else (self.rel or 0.0) * abs(value)
            return bool(abs(measured - value) <= tol)
        compare = {"ge": operator.ge, "le": operator.le, "gt": operator.gt, "lt": operator.lt}[self.op]
        return bool(compare(measured, value))


class Claim(Reading):
    """One checkable sentence of the write-up, its primary reading inline."""

    id: Text
    section: Text
    quote: Text
    """Verbatim from the write-up."""
    kind: Kind
    profiles: Annotated[tuple[Profile, ...], BeforeValidator(_as_tuple), Field(min_length=1)]
    """Where the claim can be tested; elsewhere it is no evidence."""
    alternatives: Annotated[tuple[Reading, ...], BeforeValidator(_as_tuple)] = ()
    """Other readings of the same sentence: shown as sensitivity, never the verdict."""
    source: str = ""
    """The claim file it came from."""
    question: Text | None = None
    """The question its file's part of the write-up answers, asked on the report's first screen."""
    answers: bool = False
    """Whether the claim's verdict answers that question there."""
    says: str = ""
    """The write-up's own words or value, in a few words (the claims table's "write-up")."""
    quantity: str = ""
    """What the metric measures, in a few words (the first screen names the value by it)."""


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "—" if value is None else str(value)


def load_claims(directory: Path = CLAIMS_DIR, writeup: Path = WRITEUP) -> list[Claim]:
    """Every claim of every ``*.yaml`` file in ``directory``, validated; one-line errors."""
    files = sorted(p for p in directory.glob("*.yaml") if p.name != COVERAGE_FILE)
    if not files:
        raise ReplicationError(f"no claim file (*.yaml) in {directory}")
    text = writeup.read_text(encoding="utf-8")
    claims: list[Claim] = []
    seen: dict[str, str] = {}
    for path in files:
        for claim in _load_file(path, text):
            if claim.id in seen:
                raise ReplicationError(f"{path.name}: claim {claim.id}: duplicate id (also in {seen[claim.id]})")
            seen[claim.id] = path.name
            claims.append(claim)
    return claims


def _load_file(path: Path, writeup: str) -> Iterable[Claim]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ReplicationError(f"{path.name}{line}: malformed YAML") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ReplicationError(f"{path.name}: unreadable ({type(exc).__name__})") from None
    if not isinstance(data, dict) or not isinstance(data.get("claims"), list):
        raise ReplicationError(f"{path.name}: expected a mapping with a 'claims' list")
    shared = {"section": data.get("section"), "question": data.get("question")}  # the file's, for each claim
    for index, raw in enumerate(data["claims"]):
        yield _claim(raw, path.name, index, shared, writeup)


def _claim(raw: Any, name: str, index: int, shared: dict[str, Any], writeup: str) -> Claim:
    cid = raw.get("id") if isinstance(raw, dict) else None
    where = f"{name}: claim {cid if isinstance(cid, str) else f'#{index + 1}'}"
    if isinstance(raw, dict) and ({"source", "question"} & raw.keys()):  # the loader's and the file's to set
        raise ReplicationError(f"{where}: unknown field {sorted({'source', 'question'} & raw.keys())[0]!r}")
    fields = (
        {"section": shared["section"], **raw, "question": shared["question"], "source": name}
        if isinstance(raw, dict)
        else raw
    )
    try:
        claim = Claim.model_validate(fields)
    except ValidationError as exc:
        raise ReplicationError(f"{where}: {_one_line(exc.errors()[0])}") from None
    if claim.quote not in writeup:
        raise ReplicationError(f"{where}: quote is not verbatim in the write-up")
    return claim


def _one_line(error: ErrorDetails) -> str:
    """Pydantic's first error on one line, naming the alternative and the field at fault."""
    loc, prefix = error["loc"], ""
    if loc[:1] == ("alternatives",) and len(loc) > 1:
        loc, prefix = loc[2:], f"alternative {int(loc[1]) + 1}: "
    if error["type"] == "claim" or not loc:  # a check of ours names the field in its message
        return prefix + error["msg"]
    return prefix + f"field {loc[0]!r}: {error['msg']}"


_NUMERIC = re.compile(r"[\d\s.+\-*/()]+")
_ARITH = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def _scaled(value: Any, scale: dict[str, float]) -> Any:
    """A claim operand: a literal, or an arithmetic expression over {d_model}, {n_layers}, ..."""
    if not isinstance(value, str) or not (("{" in value) or _NUMERIC.fullmatch(value)):
        return value
    try:
        tree = ast.parse(value.replace("{", "").replace("}", ""), mode="eval")
        result = _evaluate(tree.body, scale)
        if not math.isfinite(result):  # e.g. 1e308 * 10: a claimed number is finite
            raise OverflowError
    except (SyntaxError, KeyError, ZeroDivisionError, RecursionError, MemoryError, OverflowError):
        shown = value if len(value) <= 40 else value[:37] + "..."
        raise ReplicationError(f"bad expression {shown!r}") from None
    return int(result) if float(result).is_integer() else result


def _evaluate(node: ast.AST, scale: dict[str, float]) -> float:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return float(node.value)
    if isinstance(node, ast.Name):
        return scale[node.id]
    if isinstance(node, ast.BinOp) and type(node.op) in _ARITH:
        return float(_ARITH[type(node.op)](_evaluate(node.left, scale), _evaluate(node.right, scale)))
    raise KeyError(type(node).__name__)
