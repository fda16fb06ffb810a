"""Check the package's tie order against numpy 1.24.4 itself, in an environment of its own.

Runs where ``numpy==1.24.4`` is installed and this package is NOT (``nox -s tieorder`` builds one):
it loads ``replication/sae/tieorder.py`` by its path (the module needs numpy only) and requires

1. numpy 1.24.4's ``np.argsort(np.zeros(98))[-5:][::-1]`` -- the top 5 of a dead feature -- to be
   the write-up's dimension-0 list, its five prompts looked up in the corpus: 97, 24, 26, 27, 28;
2. ``tieorder.argsort`` to equal ``np.argsort`` on many float32 columns with ties (all zeros, a
   few distinct values, ReLU-like codes, NaN, sorted runs, and median-of-three killers that drive
   the introsort into its heapsort fallback) and without, and ``tieorder.top_k(column, 5)`` to
   equal ``np.argsort(column)[-5:][::-1]`` on each;
3. with ``--self-test``, a stable sort (which breaks ties otherwise) to be caught as different.

    python scripts/check_tie_order.py [--self-test]

Prints one line per check; exit status 1 when one fails, 2 when the environment is wrong.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
EXPECTED_NUMPY = "1.24.4"


def load_tieorder() -> object:
    spec = importlib.util.spec_from_file_location("tieorder", ROOT / "replication" / "sae" / "tieorder.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def writeup_dimension0() -> list[int]:
    """The corpus indices of the five prompts the write-up lists for its dimension 0, in its order."""
    text = (ROOT / "fixtures" / "writeup.md").read_text(encoding="utf-8")
    block = text.split("### Feature 1", 1)[1].split("* **Interpretation:**", 1)[0]
    listed = re.findall(r"^\s*\d\.\s+(.*?) \(Activation: ", block, flags=re.MULTILINE)
    corpus = (ROOT / "fixtures" / "prompts.txt").read_text(encoding="utf-8").splitlines()
    return [corpus.index(prompt) for prompt in listed]


def killer(n: int) -> np.ndarray:
    """Musser's median-of-three killer: quicksort partitions it badly at every level."""
    half = n // 2
    values = np.zeros(n, dtype=np.float32)
    for i in range(1, half + 1):
        if i % 2 == 1:
            values[i - 1], values[i] = i, half + i
        values[half + i - 1] = 2 * i
    return values


def columns(seed: int = 0) -> Iterator[np.ndarray]:
    rng = np.random.default_rng(seed)
    for n in [*range(1, 40), 97, 98, 99, 200, 1000, 8192]:
        for kind in range(7):
            if kind == 0:
                column = np.zeros(n, dtype=np.float32)
            elif kind == 1:
                column = rng.integers(0, 3, n).astype(np.float32)
            elif kind == 2:  # ReLU codes: mostly exact zeros
                column = np.where(rng.random(n) < 0.7, 0.0, rng.random(n)).astype(np.float32)
            elif kind == 3:
                column = rng.random(n).astype(np.float32)
                column[rng.random(n) < 0.2] = np.nan
            elif kind == 4:
                column = np.sort(rng.integers(0, 4, n)).astype(np.float32)[::-1].copy()
            elif kind == 5:
                column = killer(n) if n % 2 == 0 and n >= 64 else rng.permutation(n).astype(np.float32) % 5
            else:  # all different: top_k's own-numpy path
                column = rng.permutation(n).astype(np.float32)
            yield column


def mismatches(sort: Callable[[np.ndarray], np.ndarray], top: int | None = None) -> tuple[int, int]:
    """(columns where ``sort`` differs from np.argsort -- in its last ``top`` reversed, if given --, columns)."""
    cases = bad = 0
    for column in columns():
        cases += 1
        expected = np.argsort(column) if top is None else np.argsort(column)[-top:][::-1]
        bad += not np.array_equal(sort(column), expected)
    return bad, cases


def main(argv: list[str]) -> int:
    if np.__version__ != EXPECTED_NUMPY:
        print(f"error: numpy {np.__version__} here; this check needs numpy {EXPECTED_NUMPY}", file=sys.stderr)
        return 2
    tieorder = load_tieorder()
    failed = 0
    listed = writeup_dimension0()
    dead = np.argsort(np.zeros(98, dtype=np.float32))[-5:][::-1].tolist()
    ok = dead == listed == tieorder.top_k(np.zeros(98, dtype=np.float32), 5).tolist()  # type: ignore[attr-defined]
    failed += not ok
    print(
        f"numpy {np.__version__}: top 5 of an all-zero column {dead}; the write-up's dimension 0: {listed}; "
        f"{'the same' if ok else 'DIFFERENT'}"
    )
    bad, cases = mismatches(tieorder.argsort)  # type: ignore[attr-defined]
    failed += bad > 0
    print(f"tieorder.argsort vs numpy {np.__version__} np.argsort: {cases - bad} of {cases} columns equal")
    bad, cases = mismatches(lambda column: tieorder.top_k(column, 5), top=5)  # type: ignore[attr-defined]
    failed += bad > 0
    print(f"tieorder.top_k vs numpy {np.__version__} np.argsort()[-5:][::-1]: {cases - bad} of {cases} columns equal")
    if "--self-test" in argv:
        caught, _ = mismatches(lambda column: np.argsort(column, kind="stable"))
        failed += caught == 0
        print(f"self-test: a stable sort differs on {caught} columns ({'caught' if caught else 'NOT CAUGHT'})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
