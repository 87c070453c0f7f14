"""One entry point: `tiller <stage> --config FILE [--set key=value ...]`.

It fails like a command-line tool: a mistake the user can fix (a missing or wrong config, a
missing file or folder, bad data, a stage run before the one it needs) is one line on stderr,
`tiller <stage>: error: <what is wrong and what to do>`, and exit status 2, with no traceback;
`TILLER_DEBUG=1` re-raises it to show the traceback. These are the exceptions listed in
USER_ERRORS: ConfigError and DataError (both ValueError), any other ValueError, and the OS errors
that name a path. Anything else is a bug or a machine failure and keeps its traceback (exit 1).

At start it prints a short summary (run_dir, model, the stage's main settings), not the whole
resolved config: that is written to the stage folder (`<run_dir>/<stage>/config.yaml`) and
`--print-config` prints it. `TILLER_QUIET_CONFIG=1` silences the summary too.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

STAGES_HELP = """stages:
  data          load, filter and convert preference data into the run folder
  sft           supervised fine-tuning on conversations
  reward        train a Bradley-Terry reward model
  rloo          RLOO policy optimization against a reward
  ppo           PPO (policy and value model, GAE) against a reward
  dpo           Direct Preference Optimization on pairs
  eval          evaluate: `eval reward` (pairwise accuracy), `eval policy` (win rate, KL, length) or
                `eval curve` (the same for each checkpoint of a policy stage: over-optimization)
  pipeline      run the configured stages in order, skipping finished ones
  report        write the HTML report of a run folder
  playground    a local page to chat with a run's trained policy and its starting model side by
                side, each answer scored by the judge and the reward model (needs tiller[playground])
  plan          estimate per-GPU memory of a config under each distributed strategy
  serve-reward  serve a reward backend over HTTP

A mistake in the command, the config or the data prints one line and exits with status 2;
set TILLER_DEBUG=1 to see the traceback instead.
"""

# Stages that write their resolved config to <run_dir>/<stage>/config.yaml.
WRITES_CONFIG = ("data", "sft", "reward", "rloo", "ppo", "dpo")
# Errors the user can fix: one line, exit 2 (see the module docstring). ConfigError and DataError
# are ValueErrors; a PipelineError counts when the stage failed with one of these.
USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=False, help="YAML config file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set rloo.beta=0.05 (repeatable)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tiller", description="Train chat models from human preferences.",
                                     epilog=STAGES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="stage", metavar="STAGE")
    sub.required = True
    p = sub.add_parser("data", help="prepare preference data")
    _add_common(p)
    for name, help_text in (("sft", "supervised fine-tuning"), ("reward", "train a reward model"),
                            ("rloo", "RLOO policy optimization"), ("ppo", "PPO with a value model"), ("dpo", "Direct Preference Optimization")):
        p = sub.add_parser(name, help=help_text)
        _add_common(p)
        p.add_argument("--resume", action="store_true", help="continue from the stage's last checkpoint")
        p.add_argument("--accept-config-changes", action="store_true",
                       help="with --resume: continue although the config changed in ways that alter the run "
                            "(the new lr and schedule take effect from the current step)")
    p = sub.add_parser("eval", help="evaluate a reward model or a policy")
    p.add_argument("what", choices=["reward", "policy", "curve"])
    _add_common(p)
    p.add_argument("--model", help="reward model folder (eval reward; default: the run's reward stage output)")
    # evaluate.POLICY_STAGES, written out: importing the recipe would load torch for every command.
    p.add_argument("--stage", dest="policy_stage", choices=["rloo", "ppo", "dpo"],  # args.stage is the subcommand
                   help="policy stage whose checkpoints to evaluate (eval curve; default: each one with a saved model "
                        "or checkpoints)")
    p = sub.add_parser("pipeline", help="run the configured stages in order")
    _add_common(p)
    p.add_argument("--only", metavar="STAGE", help="run just this stage")
    p.add_argument("--from", dest="from_stage", metavar="STAGE", help="start at this stage (re-running it and later ones)")
    p.add_argument("--resume", action="store_true", help="resume an interrupted stage from its checkpoint")
    p.add_argument("--accept-config-changes", action="store_true",
                   help="with --resume: continue although the config changed in ways that alter the run")
    p = sub.add_parser("plan", help="estimate per-GPU memory for a config")
    _add_common(p)
    p = sub.add_parser("report", help="write the HTML report of a run folder")
    p.add_argument("run_dir")
    p = sub.add_parser("playground", help="chat with a run's trained policy next to its starting model")
    p.add_argument("run_dir")
    p.add_argument("--stage", dest="policy_stage", help="policy stage to talk to first (default: the first of "
                   "rloo, ppo, dpo, sft the run holds; the page can switch)")
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, help="port to serve on (default: a free one, printed)")
    p = sub.add_parser("serve-reward", help="serve a reward backend over HTTP", add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "serve-reward":
        from tiller.rewards.server import main as serve_main

        return serve_main(argv[1:])
    args = build_parser().parse_args(argv)  # a malformed command line: argparse's usage, exit 2
    stage = args.stage if args.stage != "eval" else f"eval {args.what}"
    try:
        return _run(args)
    except Exception as e:
        if os.environ.get("TILLER_DEBUG") or not _is_user_error(e):
            raise
        # One line: a message of several lines (a pipeline failure) is joined with "; ".
        message = "; ".join(line.strip() for line in str(e).splitlines() if line.strip())
        print(f"tiller {stage}: error: {message or type(e).__name__}", file=sys.stderr, flush=True)
        return 2


def _is_user_error(e: BaseException) -> bool:
    from tiller.recipes.pipeline import PipelineError

    if isinstance(e, PipelineError):  # it wraps whatever the stage raised (and printed its traceback)
        return e.__cause__ is None or _is_user_error(e.__cause__)
    from tiller.checkpoint import CheckpointError
    from tiller.rewards.http import RemoteRewardError
    from tiller.playground import MissingExtraError
    from tiller.training import NonFiniteError

    # Failures whose message says what happened and what to do: a damaged checkpoint, a remote
    # reward service that failed, training stopped by the non-finite guard, an optional extra missing.
    return isinstance(e, USER_ERRORS + (CheckpointError, RemoteRewardError, NonFiniteError, MissingExtraError))


def _run(args) -> int:
    if args.stage == "report":
        from tiller.report import write_report

        path = write_report(Path(args.run_dir))
        print(f"report: {path}")
        return 0
    if args.stage == "playground":
        from tiller.playground import serve

        serve(args.run_dir, host=args.host, port=args.port, stage=args.policy_stage)
        return 0
    from tiller.config import ConfigError, summary, to_yaml
    from tiller.config_loading import load_config

    if args.config is None:
        example = f"tiller {args.stage}{' ' + args.what if args.stage == 'eval' else ''} --config configs/demo.yaml"
        raise ConfigError(f"--config FILE is required (the configs shipped with tiller are in configs/, e.g. `{example}`)")

    cfg = load_config(args.config, args.overrides)
    if args.print_config:
        print(to_yaml(cfg), end="", flush=True)
        return 0
    # Under accelerate every process runs this; one summary is enough.
    if not os.environ.get("TILLER_QUIET_CONFIG") and os.environ.get("RANK", "0") == "0":
        sets = f" with {len(args.overrides)} --set" if args.overrides else ""
        if args.stage in WRITES_CONFIG:
            where = str(Path(cfg.run_dir) / args.stage / "config.yaml")
        elif args.stage == "pipeline":
            where = str(Path(cfg.run_dir) / "<stage>" / "config.yaml")
        else:
            where = "--print-config prints it"
        body = "\n".join(f"  {line}" for line in summary(cfg, args.stage).splitlines())
        print(f"# config {args.config}{sets}\n{body}\n  (full resolved config: {where})", flush=True)
    return _dispatch(args, cfg)


def _dispatch(args, cfg) -> int:
    if args.stage == "data":
        from tiller.recipes import data

        data.run(cfg)
    elif args.stage == "reward":
        from tiller.recipes import reward

        reward.run(cfg, resume=args.resume, accept_config_changes=args.accept_config_changes)
    elif args.stage == "rloo":
        from tiller.recipes import rloo

        rloo.run(cfg, resume=args.resume, accept_config_changes=args.accept_config_changes)
    elif args.stage == "ppo":
        from tiller.recipes import ppo

        ppo.run(cfg, resume=args.resume, accept_config_changes=args.accept_config_changes)
    elif args.stage == "sft":
        from tiller.recipes import sft

        sft.run(cfg, resume=args.resume, accept_config_changes=args.accept_config_changes)
    elif args.stage == "dpo":
        from tiller.recipes import dpo

        dpo.run(cfg, resume=args.resume, accept_config_changes=args.accept_config_changes)
    elif args.stage == "eval":
        if args.what == "reward":
            from tiller.recipes import reward

            reward.run_eval(cfg, args.model)
        elif args.what == "curve":
            from tiller.recipes import evaluate

            evaluate.run_curve(cfg, stage=args.policy_stage)
        else:
            from tiller.recipes import evaluate

            evaluate.run(cfg)
    elif args.stage == "plan":
        from tiller import plan

        plan.run(cfg)
    elif args.stage == "pipeline":
        from tiller.recipes import pipeline

        pipeline.run(cfg, only=args.only, from_stage=args.from_stage, resume=args.resume,
                     accept_config_changes=args.accept_config_changes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
