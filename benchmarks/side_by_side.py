"""``nox -s bench``: the bare reference (benchmarks/bare_reference.py), the project's run, the whole
replication and the learned arm, one after the other on this machine, each into a fresh directory.
Prints their wall times and ratios to the bare reference; with ``--record RUN`` writes them, with the
machine, to RUN/bench.json, which the report's Performance section shows.

The fair yardstick loads the same plain Hugging Face folder of SmolLM2 that the package loads from its
converted-model cache (converting the GGUF is how SmolLM2 ships, not part of the original's method); the
bare reference that converts the GGUF on every run is timed too, for comparison."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from replication.rundir import artifacts, layout, provenance

OUT = Path("build") / "bench"
CONVERTED = (
    "from replication.config import load_profile\n"
    "from replication.model import cache, loading\n"
    "cfg = load_profile('smollm2').model\n"
    "loading.load_model(cfg, loading.resolve_device('cpu'))  # fills the cache if it is empty\n"
    "directory, _ = loading._gguf_location(cfg)\n"
    "print(cache.Entry(directory / (cfg.gguf_file or ''), loading._conversion(cfg.dtype)).lookup())"
)
"""Prints the converted-model cache's folder of SmolLM2 (built first if missing; not timed)."""
STEPS = {
    "bare reference": [sys.executable, "benchmarks/bare_reference.py", "--model"],
    "bare reference, GGUF": [sys.executable, "benchmarks/bare_reference.py"],
    "run": [sys.executable, "-m", "replication", "run", "--profile", "smollm2", "--out", str(OUT / "run"), "--quiet"],
    "whole replication": [
        *(sys.executable, "-m", "replication", "replicate", "--profile", "smollm2"),
        *("--out", str(OUT / "replicate"), "--quiet"),
    ],
    "learned arm": [sys.executable, "-m", "replication", "learned", "--run", str(OUT / "replicate"), "--quiet"],
}
COMMANDS = {
    "bare reference": "python benchmarks/bare_reference.py --model FOLDER (load the plain folder the package's cache "
    "holds, 98 answers one at a time, train; no package code)",
    "bare reference, GGUF": "python benchmarks/bare_reference.py (the same, converting the GGUF file on every run)",
    "run": "python -m replication run --profile smollm2 (capture, train, analyze, splice, control, shuffled)",
    "whole replication": "python -m replication replicate --profile smollm2 (the run, then seeds through report)",
    "learned arm": "python -m replication learned --run RUN (an SAE trained by sparsify on 250,000 tokens, scored, "
    "reading the prompts; beside the whole replication, not in it)",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--record", type=Path, help="a run directory to write bench.json into")
    args = parser.parse_args()
    shutil.rmtree(OUT, ignore_errors=True)
    folder = subprocess.run([sys.executable, "-c", CONVERTED], capture_output=True, text=True, check=True)
    STEPS["bare reference"].append(folder.stdout.strip().splitlines()[-1])
    rows = []
    for name, command in STEPS.items():
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            print(done.stderr[-3000:], file=sys.stderr)
            print(f"error: {name} failed (exit {done.returncode})", file=sys.stderr)
            return 1
        rows.append({"step": name, "command": COMMANDS[name], "wall_s": wall})
    bare, gguf = rows[0]["wall_s"], rows[1]["wall_s"]
    for row in rows:
        row["ratio"] = row["wall_s"] / bare
        row["ratio_to_gguf"] = row["wall_s"] / gguf
    environment = provenance.environment()
    result = {
        "machine": f"{environment['cpu']}, {environment['cores']} cores"
        + (f", {environment['gpu']}" if environment["gpu"] else ""),
        "rows": rows,
        "note": "one after the other in one session; the converted-model cache as a user has it after the first "
        "load; ratios to the bare reference loading the same plain folder (ratio_to_gguf: to the one converting "
        "the GGUF on every run)",
    }
    print(f"measured on {result['machine']}")
    for row in rows:
        print(
            f"{row['step']:>20}: {row['wall_s']:7.1f} s  {row['ratio']:5.2f}x the bare reference "
            f"({row['ratio_to_gguf']:.2f}x the GGUF-converting one)"
        )
    if args.record is not None:
        artifacts.write_json(args.record / layout.BENCH, result)
        artifacts.record_addition(args.record, "bench", [args.record / layout.BENCH], {})
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
