"""Command line: ``python -m replication STAGE --profile NAME --out DIR [--section.key=value]``."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import NoReturn

from transformers.utils import logging as hf_logging

from replication import artifacts
from replication.claims import CLAIMS_DIR, evaluate_all, load_claims
from replication.config import RunConfig, load_profile, parse_overrides
from replication.errors import ReplicationError
from replication.export import EXPORT_DIR, export_run
from replication.metrics import RunData
from replication.pipeline import STAGES, run_stage
from replication.report import write_report
from replication.variants import ABLATIONS, ABLATIONS_FILE, SEEDS_FILE, run_ablations, run_seeds

DEFAULT_PROFILE = "smollm2"
EPILOG = """stages:
  run      capture -> train -> analyze -> splice
  capture  generate an answer per prompt, keep the hooked layer's last call
  train    train the sparse autoencoder on the captured activations
  analyze  top-activating prompts per code dimension, PCA of the codes
  splice   cross-entropy clean / with the SAE spliced in / zero-ablated, CE loss recovered
  verify   check the run's files against its manifest, then one verdict line per claim
  seeds    verify, then retrain the SAE with --seeds N seeds (and, where the model samples, capture
           with --sampling-seeds M seeds): every claim per seed, one combined verdict
  ablations  verify, then run the named ablations beside the run (--only l1_1e-4,standard_sae,...)
  export   verify, then write the run's and its ablations' SAEs in SAELens's format (RUN/export/)
  report   verify, then write REPORT.md with verdicts, figures and provenance

Any config field can be overridden: --capture.layer=12 --train.l1_coefficient=1e-4
"""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see python -m replication --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="python -m replication",
        description="Replicate the layer-10 sparse-autoencoder study, stage by stage.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("stage", choices=("run", *STAGES, "verify", "seeds", "ablations", "export", "report"))
    parser.add_argument(
        "--profile", help=f"seed, smollm2 or tiny (default: the run's saved config, else {DEFAULT_PROFILE})"
    )
    parser.add_argument("--out", "--run", dest="out", type=Path, help="run directory (default: runs/PROFILE)")
    parser.add_argument("--prompts", type=Path, help="prompt file, one prompt a line (replaces the corpus)")
    parser.add_argument("--claims", type=Path, default=CLAIMS_DIR, help="claims directory (verify, report)")
    parser.add_argument("--output", type=Path, help="report file (default: RUN/REPORT.md)")
    parser.add_argument("--seeds", type=int, default=5, help="SAE seeds for the seeds stage (default 5)")
    parser.add_argument(
        "--sampling-seeds",
        type=int,
        default=3,
        help="captures with sampling seeds 0..N-1 for the seeds stage, where the model samples (default 3)",
    )
    parser.add_argument("--only", help=f"ablations to run, comma-separated (default: {','.join(ABLATIONS)})")
    parser.add_argument("--batch-size", type=int, help="prompts per generate call (default 1, the original's way)")
    parser.add_argument(
        "--random-init", action="store_true", help="the profile's architecture with RANDOM weights (no download)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--force", action="store_true", help="re-run stages that are up to date")
    return parser


def resolve_config(args: argparse.Namespace, overrides: list[str]) -> RunConfig:
    """The profile named, else the run directory's saved config, else the default profile."""
    parsed = parse_overrides(overrides)
    if args.prompts is not None:
        parsed["capture.prompts"] = str(args.prompts.resolve())
    if args.batch_size is not None:
        parsed["capture.batch_size"] = args.batch_size
    saved = args.out / artifacts.CONFIG if args.out is not None else None
    if args.profile is None and args.stage in ("train", "analyze", "splice") and saved is not None and saved.is_file():
        return load_profile(str(saved), parsed)
    cfg = load_profile(args.profile or DEFAULT_PROFILE, parsed)
    if args.random_init:
        if cfg.model.random_init_path is None:
            raise ReplicationError(f"profile {cfg.profile} has no model.random_init_path for --random-init")
        random = {"model.source": "random_init", "model.path": cfg.model.random_init_path}
        random["model.name"] = f"{cfg.model.name} (RANDOM WEIGHTS)"
        cfg = load_profile(args.profile or DEFAULT_PROFILE, {**random, **parsed})
    return cfg


def check(args: argparse.Namespace, argv: list[str]) -> int:
    """verify, seeds, ablations, export, report: refuse a run whose files changed or went stale, then work on it."""
    if args.out is None:
        raise ReplicationError(f"{args.stage} needs --run DIR")
    manifest = artifacts.verify_manifest(args.out)
    claims = load_claims(args.claims)
    run = RunData(args.out)
    if run.config.hash() != manifest["config_hash"]:
        raise ReplicationError(f"{args.out}/config.yaml does not match the manifest's config hash")
    if args.stage == "seeds":
        summary = run_seeds(args.out, claims, args.seeds, args.sampling_seeds, progress=not args.quiet)
        changed = sum(c["combined"] == "inconclusive" for c in summary["claims"].values())
        print(f"seeds: {args.seeds} seeds, {changed} claims inconclusive across seeds -> {args.out / SEEDS_FILE}")
        return 0
    if args.stage == "ablations":
        names = args.only.split(",") if args.only else list(ABLATIONS)
        rows = run_ablations(args.out, claims, names, progress=not args.quiet)
        print(f"ablations: {', '.join(names)} -> {args.out / ABLATIONS_FILE} ({len(rows) - 1} rows)")
        return 0
    if args.stage == "export":
        index = export_run(args.out)
        for name, entry in index["saes"].items():
            where = args.out / EXPORT_DIR / name if entry["exported"] else f"not exported: {entry['reason']}"
            print(f"export: {name} -> {where}")
        return 0
    results = evaluate_all(claims, run)
    if args.stage == "verify":
        for result in results:
            print(result.line())
        return 0
    output = args.output or args.out / "REPORT.md"
    command = "python -m replication " + shlex.join(argv)
    report, files = write_report(run, results, output, command)
    if report.resolve().is_relative_to(args.out.resolve()):
        files.append(report)
    artifacts.record_addition(args.out, "report", files, {})
    print(f"report: {len(results)} claims -> {report}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args, rest = build_parser().parse_known_args(argv)
    if args.quiet:
        hf_logging.disable_progress_bar()
    try:
        if args.stage in ("verify", "seeds", "ablations", "export", "report"):
            if rest:
                raise ReplicationError(f"unrecognised argument {rest[0]!r}")
            return check(args, argv)
        cfg = resolve_config(args, rest)
        run_dir = args.out if args.out is not None else Path("runs") / cfg.profile
        stages = STAGES if args.stage == "run" else (args.stage,)
        for stage in stages:
            if not run_stage(stage, cfg, run_dir, progress=not args.quiet, force=args.force):
                print(f"{stage}: up to date (same config and inputs), skipped; --force re-runs it")
    except ReplicationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    print(f"{args.stage}: done -> {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
