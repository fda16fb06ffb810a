"""The command line: ``python -m replication COMMAND [options]``, one subcommand per step, each with its own options."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from replication import api, files
from replication.config import ABLATIONS, CLAIMS_DIR, RunConfig, load_profile, parse_overrides
from replication.errors import ReplicationError
from replication.evaluation.claims import load_claims
from replication.evaluation.verdicts import verdicts_of
from replication.rundir import artifacts, layout

DEFAULT_PROFILE = "smollm2"
STAGE_HELP = {
    "run": "capture -> train -> analyze -> splice -> control -> shuffled",
    "capture": "generate an answer per prompt, keep the hooked layer's last call",
    "train": "train the sparse autoencoder on the captured activations",
    "analyze": "top-activating prompts per code dimension, PCA of the codes",
    "splice": "cross-entropy clean / with the SAE spliced in / zero-ablated, CE loss recovered",
    "control": "the untrained control: the same SAE at its initialisation through the same analysis",
    "shuffled": "the training curve's control: the same training on activations shuffled per dimension",
}


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see python -m replication --help)\n")


def _run_dir(parser: argparse.ArgumentParser, required: bool) -> None:
    parser.add_argument(
        "--run", "--out", dest="out", type=Path, required=required, help="run directory (default: runs/PROFILE)"
    )


def _stage_options(parser: argparse.ArgumentParser, default: str) -> None:
    """The options of a command that runs stages: the profile and what a run may override."""
    parser.add_argument("--profile", help=f"seed, smollm2, tiny or a YAML file (default: {default}{DEFAULT_PROFILE})")
    _run_dir(parser, required=False)
    parser.add_argument("--prompts", type=Path, help="prompt file, one prompt a line (replaces the corpus)")
    parser.add_argument("--batch-size", type=int, help="prompts per generate call (default 1, the original's way)")
    parser.add_argument("--random-init", action="store_true", help="the profile's architecture, RANDOM weights")
    parser.add_argument("--force", action="store_true", help="re-run stages that are up to date")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="python -m replication",
        description="Replicate the layer-10 sparse-autoencoder study, stage by stage. Any config field of a "
        "stage can be overridden: --capture.layer=12 --train.l1_coefficient=1e-4",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, text in STAGE_HELP.items():
        _stage_options(commands.add_parser(name, help=text, description=text), "the run's saved config, else ")
        commands.choices[name].set_defaults(handler=_stage)
    steps: dict[str, tuple[str, Callable[[argparse.Namespace, list[str]], int]]] = {
        "verify": ("check the run's files against its manifest, then print one verdict line per claim", _verify),
        "seeds": ("retrain the SAE with other seeds (and, where the model samples, capture again)", _seeds),
        "ablations": ("run the named ablations beside the run", _ablations),
        "power": ("Part 4 with power: the probe ceiling, the feature tests, the planted strengths detected", _power),
        "planted": ("the write-up's recipe and the field's on planted features of the run's shape", _planted),
        "learned": (
            "an SAE that learns (sparsify, TopK) on Python's own sources, read on the prompts",
            _learned,
        ),
        "bands": ("rerun everything after the capture as on other CPU kernels: each number's rounding band", _bands),
        "export": ("write the run's and its ablations' SAEs in SAELens's format (RUN/export/)", _export),
        "report": ("write verdicts.json, the figures and REPORT.md", _report),
        "cards": ("write the feature cards: RUN/cards/index.html and a page per selected feature", _cards),
        "compare": ("compare the run with a reference run: bytes, tolerance, verdicts; exit 1 if it differs", _compare),
    }
    for name, (text, handler) in steps.items():
        step = commands.add_parser(name, help=text, description=f"{text}; refuses a changed or stale run")
        _run_dir(step, required=True)
        if name not in ("export", "compare"):
            step.add_argument("--claims", type=Path, default=CLAIMS_DIR, help="claims directory")
        if name in ("seeds", "ablations", "cards", "bands", "planted", "learned"):
            step.add_argument("--quiet", action="store_true", help="no progress bars")
        step.set_defaults(handler=handler)
    seeds = commands.choices["seeds"]
    seeds.add_argument("--seeds", type=int, default=5, help="SAE seeds, 0..N-1 (default 5)")
    seeds.add_argument(
        "--sampling-seeds", type=int, default=3, help="captures with sampling seeds 0..M-1, where the model samples"
    )
    commands.choices["ablations"].add_argument(
        "--only", help=f"ablations to run, comma-separated (default: {','.join(ABLATIONS)})"
    )
    commands.choices["learned"].add_argument("--tokens", type=int, help="training tokens (default 250,000)")
    commands.choices["report"].add_argument("--output", type=Path, help="report file (default: RUN/REPORT.md)")
    commands.choices["cards"].add_argument("--all", action="store_true", help="a card for every feature")
    commands.choices["compare"].add_argument("--reference", type=Path, required=True, help="the reference run")
    replicate = commands.add_parser(
        "replicate",
        help="the whole study in one process: run, verify, seeds, ablations, power, export, cards, report",
        description="the whole study in one process (the model is loaded once): the stages, then verify, "
        "seeds, ablations, power, export, cards and report",
    )
    _stage_options(replicate, "")
    replicate.add_argument("--claims", type=Path, default=CLAIMS_DIR, help="claims directory")
    replicate.add_argument("--output", type=Path, help="report file (default: RUN/REPORT.md)")
    replicate.set_defaults(handler=_replicate)
    return parser


def resolve_config(args: argparse.Namespace, overrides: list[str]) -> RunConfig:
    """The profile named, else the run directory's saved config, else the default profile."""
    parsed = parse_overrides(overrides)
    if args.prompts is not None:
        parsed["capture.prompts"] = str(args.prompts.resolve())
    if args.batch_size is not None:
        parsed["capture.batch_size"] = args.batch_size
    saved = args.out / layout.CONFIG if args.out is not None else None
    if args.profile is None and args.command in layout.STAGES[1:] and saved is not None and saved.is_file():
        return load_profile(str(saved), parsed)
    cfg = load_profile(args.profile or DEFAULT_PROFILE, parsed)
    if args.random_init:
        if cfg.model.random_init_path is None:
            raise ReplicationError(f"profile {cfg.profile} has no model.random_init_path for --random-init")
        random = {"model.source": "random_init", "model.path": cfg.model.random_init_path}
        random["model.name"] = f"{cfg.model.name} (RANDOM WEIGHTS)"
        cfg = load_profile(args.profile or DEFAULT_PROFILE, {**random, **parsed})
    return cfg


def _stage(args: argparse.Namespace, rest: list[str]) -> int:
    cfg = resolve_config(args, rest)
    run_dir = args.out if args.out is not None else Path("runs") / cfg.profile
    stages = layout.STAGES if args.command == "run" else (args.command,)
    ran = api.run(cfg, run_dir, stages=stages, progress=not args.quiet, force=args.force)  # one Context
    for stage in stages:
        if stage not in ran:
            print(f"{stage}: up to date (same config and inputs), skipped; --force re-runs it")
    print(f"{args.command}: done -> {run_dir}")
    return 0


def _verify(args: argparse.Namespace, rest: list[str]) -> int:
    for result in api.Run(args.out, args.claims).verdicts():
        print(result.line())
    return 0


def _seeds(args: argparse.Namespace, rest: list[str]) -> int:
    print(api.Run(args.out, args.claims).seeds(args.seeds, args.sampling_seeds, progress=not args.quiet))
    return 0


def _planted(args: argparse.Namespace, rest: list[str]) -> int:
    print(api.Run(args.out, args.claims).planted(progress=not args.quiet))
    return 0


def _learned(args: argparse.Namespace, rest: list[str]) -> int:
    print(api.Run(args.out, args.claims).learned(args.tokens, progress=not args.quiet))
    return 0


def _power(args: argparse.Namespace, rest: list[str]) -> int:
    print(api.Run(args.out, args.claims).power())
    return 0


def _ablations(args: argparse.Namespace, rest: list[str]) -> int:
    names = args.only.split(",") if args.only else None
    print(api.Run(args.out, args.claims).ablations(names, progress=not args.quiet))
    return 0


def _bands(args: argparse.Namespace, rest: list[str]) -> int:
    artifacts.forget_addition(args.out, "bands", [layout.BANDS_JSON])  # measured anew: its own record may be stale
    print(api.Run(args.out, args.claims).bands(progress=not args.quiet))
    return 0


def _export(args: argparse.Namespace, rest: list[str]) -> int:
    print(api.Run(args.out).export())
    return 0


def _report(args: argparse.Namespace, rest: list[str]) -> int:
    command = "python -m replication " + shlex.join(args.argv)
    print(api.Run(args.out, args.claims).report(args.output, command))
    return 0


def _cards(args: argparse.Namespace, rest: list[str]) -> int:
    print(api.Run(args.out, args.claims).cards(every=args.all, progress=not args.quiet))
    return 0


def _compare(args: argparse.Namespace, rest: list[str]) -> int:
    from replication.rundir.compare import compare_runs

    api.Run(args.out)
    reference = api.Run(args.reference)
    comparison = compare_runs(args.out, reference.path, verdicts_of(load_claims(CLAIMS_DIR)))
    print(f"compare: {comparison.line()}")
    return 0 if comparison.reproduced else 1


def _replicate(args: argparse.Namespace, rest: list[str]) -> int:
    """The whole study in one process (``api.replicate``): the model each step needs is loaded once."""
    cfg = resolve_config(args, rest)
    out = args.out if args.out is not None else Path("runs") / cfg.profile
    command = "python -m replication " + shlex.join(args.argv)
    api.replicate(
        cfg,
        out,
        claims_dir=args.claims,
        output=args.output,
        command=command,
        progress=not args.quiet,
        force=args.force,
        echo=print,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args, rest = build_parser().parse_known_args(argv)
    args.argv = argv
    if getattr(args, "quiet", False):
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    try:
        if rest and args.handler not in (_stage, _replicate):
            raise ReplicationError(f"unrecognised argument {rest[0]!r}")
        return int(args.handler(args, rest))
    except ReplicationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the file system refused what no artifact writer wrapped: still one line
        print(f"error: {files.disk_error(exc, None, 'using')}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
