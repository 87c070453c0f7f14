"""The pipeline: the configured stages in order, each in its own folder of one run folder.

    tiller pipeline --config FILE [--only STAGE | --from STAGE] [--resume]

A stage whose folder holds a DONE marker is complete and skipped (the curve stage: when
eval/curve.jsonl exists; the eval stage, unless eval.policy names one policy: when
eval/policies.json also lists every policy stage the run holds, each evaluated after it last
finished). The eval stage evaluates every policy stage of pipeline.stages that the run holds
(sft, dpo, rloo...) side by side against one reference (`evaluate.run_policies`). `--from STAGE` re-runs that
stage and every later one; `--only STAGE` runs just that one (re-running it if complete);
`--resume` continues an interrupted training stage from its last checkpoint. A failing stage
stops the pipeline with a message naming it; the stages already finished stay as they are.
"""

from __future__ import annotations

import time
import traceback
from pathlib import Path

from tiller.config import Config


def is_complete(run_dir: Path, stage: str, cfg: Config | None = None) -> bool:
    if stage == "report":
        return False  # cheap, and it must reflect the latest state of the run
    if stage == "curve":  # it writes into eval/, the eval stage's folder, so no DONE of its own
        return (run_dir / "eval" / "curve.jsonl").is_file()
    if stage == "eval" and cfg is not None and not cfg.eval.policy:
        return _policies_evaluated(run_dir, cfg.pipeline.stages)
    return (run_dir / stage / "DONE").is_file()


def _policies_evaluated(run_dir: Path, stages: list[str]) -> bool:
    """Whether the eval stage evaluated every policy stage the run holds now, each after it last
    finished: one DONE cannot tell when a policy stage was added to pipeline.stages or re-trained
    (--only) since. Several stages: eval/policies.json lists exactly them. One stage: its
    eval/<stage>.json is enough, so a run evaluated before policies.json existed is not redone."""
    import json

    from tiller.eval_inputs import held_policy_stages
    from tiller.report_data import POLICIES_FILE

    held = held_policy_stages(run_dir, stages)
    if not (run_dir / "eval" / "DONE").is_file() or not held:
        return (run_dir / "eval" / "DONE").is_file()

    def written_after(path: Path, stage: str) -> bool:
        done = run_dir / stage / "DONE"
        return path.is_file() and (not done.is_file() or done.stat().st_mtime_ns <= path.stat().st_mtime_ns)

    if len(held) == 1:
        return written_after(run_dir / "eval" / f"{held[0]}.json", held[0])
    side = run_dir / "eval" / POLICIES_FILE
    return side.is_file() and json.loads(side.read_text()).get("stages") == held and all(
        written_after(side, s) for s in held)


def run_stage(cfg: Config, stage: str, resume: bool, accept_config_changes: bool = False,
              frozen_outputs=None) -> None:
    """`frozen_outputs` (a `tiller.frozen_prefix.FrozenOutputs`) carries the reward stage's
    frozen-layer outputs on the validation pairs to the judge stage."""
    if stage == "data":
        from tiller.recipes import data

        data.run(cfg)
    elif stage in ("reward", "judge"):
        from tiller.recipes import reward

        reward.run(cfg, stage=stage, resume=resume, accept_config_changes=accept_config_changes,
                   frozen_outputs=frozen_outputs)
    elif stage == "sft":
        from tiller.recipes import sft

        sft.run(cfg, resume=resume, accept_config_changes=accept_config_changes)
    elif stage == "rloo":
        from tiller.recipes import rloo

        rloo.run(cfg, resume=resume, accept_config_changes=accept_config_changes)
    elif stage == "ppo":
        from tiller.recipes import ppo

        ppo.run(cfg, resume=resume, accept_config_changes=accept_config_changes)
    elif stage == "dpo":
        from tiller.recipes import dpo

        dpo.run(cfg, resume=resume, accept_config_changes=accept_config_changes)
    elif stage == "eval":
        run_evaluation(cfg)
    elif stage == "curve":
        from tiller.recipes import evaluate

        # The policy stages this pipeline trains; each needs a saved model or checkpoints.
        evaluate.run_curve(cfg, stages=tuple(s for s in evaluate.POLICY_STAGES if s in cfg.pipeline.stages))
    elif stage == "report":
        from tiller.report import write_report

        print(f"[report] {write_report(Path(cfg.run_dir))}", flush=True)
    else:  # config validation already rejects unknown names
        raise ValueError(f"unknown stage {stage!r}")


def run_evaluation(cfg: Config) -> None:
    """The eval stage: accuracy of each reward model, then each trained policy against the start."""
    from tiller.recipes import evaluate, reward

    run_dir = Path(cfg.run_dir)
    for stage in ("reward", "judge"):
        if not (run_dir / stage / "model").exists():
            continue
        if (run_dir / stage / "DONE").is_file() and (run_dir / stage / "eval.json").is_file():
            # The stage scored the same validation pairs with the same weights when it finished
            # (the report shows it): scoring them again would only repeat it.
            print(f"[eval] {stage} model: validation accuracy from {run_dir / stage / 'eval.json'} "
                  f"(computed when it was trained)", flush=True)
            continue
        reward.run_eval(cfg, stage=stage)
    if cfg.eval.policy:  # the one policy the config names, against what it started from
        evaluate.run(cfg)
    else:  # every policy stage of the pipeline that the run holds, against one reference
        from tiller.eval_inputs import held_policy_stages

        held = held_policy_stages(run_dir, cfg.pipeline.stages)
        if not held:
            raise FileNotFoundError(f"the eval stage found no trained policy stage of {cfg.pipeline.stages} in "
                                    f"{run_dir} (a <stage>/model with <stage>/started_from.json)")
        evaluate.run_policies(cfg, held)
    (run_dir / "eval" / "DONE").write_text("done\n")


def select_stages(stages: list[str], only: str | None, from_stage: str | None) -> tuple[list[str], set[str]]:
    """(stages to visit, stages to force re-running)."""
    for name, value in (("--only", only), ("--from", from_stage)):
        if value is not None and value not in stages:
            raise ValueError(f"{name} {value}: not one of this config's pipeline.stages {stages}")
    if only and from_stage:
        raise ValueError("give --only or --from, not both")
    if only:
        return [only], {only}
    if from_stage:
        chosen = stages[stages.index(from_stage):]
        return chosen, set(chosen)
    return list(stages), set()


def run(cfg: Config, only: str | None = None, from_stage: str | None = None, resume: bool = False,
        accept_config_changes: bool = False) -> int:
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    stages, forced = select_stages(cfg.pipeline.stages, only, from_stage)
    finished: list[str] = []
    started = time.time()
    # The reward and judge stages validate on the same pairs: where both are adapters on the same
    # last layers of one base, the judge reuses the frozen layers' output (in memory, this run only).
    from tiller.frozen_prefix import FrozenOutputs

    frozen_outputs = FrozenOutputs()
    for stage in stages:
        if stage not in forced and is_complete(run_dir, stage, cfg):
            print(f"[pipeline] {stage}: complete, skipped ({run_dir / stage})", flush=True)
            finished.append(stage)
            continue
        if stage in forced:
            (run_dir / stage / "DONE").unlink(missing_ok=True)
        if stage not in ("reward", "judge"):
            frozen_outputs.clear()  # they serve the next reward model only: free the memory
        print(f"[pipeline] {stage}: starting", flush=True)
        t0 = time.time()
        try:
            run_stage(cfg, stage, resume, accept_config_changes, frozen_outputs)
        except Exception as e:  # a stage failure ends the pipeline with a clear message
            traceback.print_exc()
            raise PipelineError(
                f"stage '{stage}' failed: {type(e).__name__}: {e}\n"
                f"finished stages are intact in {run_dir}: {finished or 'none'}; fix the cause and run the "
                f"same command again (add --resume to continue '{stage}' from its last checkpoint)"
            ) from e
        print(f"[pipeline] {stage}: done in {time.time() - t0:.0f} s", flush=True)
        finished.append(stage)
    print(f"[pipeline] finished {finished} in {time.time() - started:.0f} s", flush=True)
    _print_final_summary(run_dir)
    return 0


class PipelineError(RuntimeError):
    pass


def _print_final_summary(run_dir: Path) -> None:
    import json

    from tiller.recipes.evaluate import format_side_by_side, format_summary
    from tiller.report_data import POLICIES_FILE

    for path in sorted((run_dir / "eval").glob("*.json")):
        if path.name.endswith("_model.json") or path.name == POLICIES_FILE:
            continue
        print(format_summary(json.loads(path.read_text())), flush=True)
    if (run_dir / "eval" / POLICIES_FILE).is_file():  # last: the table that compares them
        print(format_side_by_side(json.loads((run_dir / "eval" / POLICIES_FILE).read_text())), flush=True)
    report = run_dir / "report.html"
    if report.is_file():
        print(f"report: {report.resolve()}", flush=True)
