"""``python -m replication``: the dependencies checked first, then the command line (``cli.py``)."""

from __future__ import annotations

import sys

from replication.dependencies import problem


def main(argv: list[str] | None = None) -> int:
    found = problem()
    if found is not None:
        print(f"error: {found}", file=sys.stderr)
        return 2
    from replication.cli import main as cli

    return cli(argv)


if __name__ == "__main__":
    sys.exit(main())
