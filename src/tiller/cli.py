"""One entry point: `tiller <stage> --config FILE [--set key=value ...]`."""

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
  dpo           Direct Preference Optimization on pairs
  eval          evaluate: `eval reward` (pairwise accuracy) or `eval policy` (win rate, KL, length)
  pipeline      run the configured stages in order, skipping finished ones
  report        write the HTML report of a run folder
  plan          estimate per-GPU memory of a config under each distributed strategy
  serve-reward  serve a reward backend over HTTP
"""


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=False, help="YAML config file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set rloo.beta=0.05 (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tiller", description="Train chat models from human preferences.",
                                     epilog=STAGES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="stage", metavar="STAGE")
    sub.required = True
    p = sub.add_parser("data", help="prepare preference data")
    _add_common(p)
    for name, help_text in (("sft", "supervised fine-tuning"), ("reward", "train a reward model"),
                            ("rloo", "RLOO policy optimization"), ("dpo", "Direct Preference Optimization")):
        p = sub.add_parser(name, help=help_text)
        _add_common(p)
        p.add_argument("--resume", action="store_true", help="continue from the stage's last checkpoint")
    p = sub.add_parser("eval", help="evaluate a reward model or a policy")
    p.add_argument("what", choices=["reward", "policy"])
    _add_common(p)
    p.add_argument("--model", help="reward model folder (eval reward; default: the run's reward stage output)")
    p = sub.add_parser("pipeline", help="run the configured stages in order")
    _add_common(p)
    p.add_argument("--only", metavar="STAGE", help="run just this stage")
    p.add_argument("--from", dest="from_stage", metavar="STAGE", help="start at this stage (re-running it and later ones)")
    p.add_argument("--resume", action="store_true", help="resume an interrupted stage from its checkpoint")
    p = sub.add_parser("plan", help="estimate per-GPU memory for a config")
    _add_common(p)
    p = sub.add_parser("report", help="write the HTML report of a run folder")
    p.add_argument("run_dir")
    p = sub.add_parser("serve-reward", help="serve a reward backend over HTTP", add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "serve-reward":
        from tiller.rewards.server import main as serve_main

        return serve_main(argv[1:])
    args = build_parser().parse_args(argv)
    from tiller.config import ConfigError, load_config, to_yaml

    if args.stage == "report":
        from tiller.report import write_report

        path = write_report(Path(args.run_dir))
        print(f"report: {path}")
        return 0
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as e:
        print(f"tiller: config error: {e}", file=sys.stderr)
        return 2
    if not os.environ.get("TILLER_QUIET_CONFIG"):
        print(f"# resolved config ({args.config or 'defaults'})\n{to_yaml(cfg)}", flush=True)
    from tiller.recipes.pipeline import PipelineError

    try:
        return _dispatch(args, cfg)
    except (ValueError, FileNotFoundError, PipelineError) as e:
        # Data, config and file problems are the user's to fix: one clear line, no traceback.
        if os.environ.get("TILLER_DEBUG"):
            raise
        print(f"tiller {args.stage}: error: {e}", file=sys.stderr)
        return 1


def _dispatch(args, cfg) -> int:
    if args.stage == "data":
        from tiller.recipes import data

        data.run(cfg)
    elif args.stage == "reward":
        from tiller.recipes import reward

        reward.run(cfg, resume=args.resume)
    elif args.stage == "rloo":
        from tiller.recipes import rloo

        rloo.run(cfg, resume=args.resume)
    elif args.stage == "sft":
        from tiller.recipes import sft

        sft.run(cfg, resume=args.resume)
    elif args.stage == "dpo":
        from tiller.recipes import dpo

        dpo.run(cfg, resume=args.resume)
    elif args.stage == "eval":
        if args.what == "reward":
            from tiller.recipes import reward

            reward.run_eval(cfg, args.model)
        else:
            from tiller.recipes import evaluate

            evaluate.run(cfg)
    elif args.stage == "plan":
        from tiller import plan

        plan.run(cfg)
    elif args.stage == "pipeline":
        from tiller.recipes import pipeline

        pipeline.run(cfg, only=args.only, from_stage=args.from_stage, resume=args.resume)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
