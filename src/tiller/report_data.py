"""Reading what the stages left in a run folder, for the report: tolerant of partial runs.

A missing file reads as nothing (None or no rows), a JSONL line cut by a killed process is
skipped, and metric values the tracker wrote as strings ("nan", "inf") read as floats, so a
run that is still going or was interrupted still gives a report.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Optional

STAGES = ("data", "sft", "reward", "judge", "dpo", "rloo", "ppo", "eval")
# In eval/: the pipeline's eval stage's summary of every policy stage against one reference
# (tiller.recipes.evaluate.run_policies); each stage's own summary is eval/<stage>.json beside it.
POLICIES_FILE = "policies.json"


def read_json(path: Path) -> Optional[dict]:
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def read_jsonl(path: Path) -> list[dict]:
    """Rows of a JSONL file; a line cut by a killed process is skipped, not fatal."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def metrics_rows(path: Path) -> list[dict]:
    """Same as tracking.read_metrics (merged by step, last one wins), tolerant of a torn last line."""
    from tiller.tracking import read_metrics

    try:
        return read_metrics(path)
    except (ValueError, KeyError, TypeError):
        by_step: dict = {}
        for row in read_jsonl(path):
            if isinstance(row.get("step"), (int, float)):
                by_step[row["step"]] = {**by_step.get(row["step"], {}), **row}
        return [by_step[s] for s in sorted(by_step)]


def number(value: Any) -> Optional[float]:
    """A float from a metric value; the tracker writes non-finite values as strings ("nan", "inf")."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def series(rows: list[dict], key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for row in rows:
        y = number(row.get(key))
        x = number(row.get("step"))
        if y is not None and x is not None:
            xs.append(x)
            ys.append(y)
    if not any(math.isfinite(y) for y in ys):
        return [], []
    return xs, ys


def stages_found(run_dir: Path) -> list[str]:
    found = [s for s in STAGES if (run_dir / s).is_dir()]
    extra = sorted(p.name for p in run_dir.iterdir() if p.is_dir() and p.name not in STAGES and (p / "config.yaml").is_file()) \
        if run_dir.is_dir() else []
    return found + extra


def configured_stages(run_dir: Path) -> Optional[list[str]]:
    """pipeline.stages of the run's resolved config: the run's config.yaml, else the first stage
    config.yaml found (each stage writes the whole resolved config, pipeline included); None when
    no config in the folder says."""
    import yaml

    for path in [run_dir / "config.yaml"] + [run_dir / s / "config.yaml" for s in STAGES]:
        if not path.is_file():
            continue
        try:
            cfg = yaml.safe_load(path.read_text(encoding="utf-8", errors="replace"))
        except yaml.YAMLError:
            continue
        pipeline = cfg.get("pipeline") if isinstance(cfg, dict) else None
        stages = pipeline.get("stages") if isinstance(pipeline, dict) else None
        if isinstance(stages, list):
            return [str(s) for s in stages]
    return None


def eval_summaries(run_dir: Path) -> list[tuple[str, dict]]:
    folder = run_dir / "eval"
    found = []
    for path in sorted(folder.glob("*.json")):
        if path.name.endswith("_model.json") or path.name == POLICIES_FILE:
            continue
        try:
            summary = read_json(path) or {}
        except (ValueError, OSError) as e:
            summary = {"error": f"{type(e).__name__}: {e}"}
        found.append((str(summary.get("label") or path.stem), {**summary, "_stem": path.stem}))
    return found


def policies_summary(run_dir: Path) -> Optional[dict]:
    """eval/policies.json (every policy stage against one reference); None when absent."""
    return read_json(run_dir / "eval" / POLICIES_FILE)


def eval_samples(run_dir: Path, summary: dict) -> list[dict]:
    return read_jsonl(run_dir / "eval" / f"{summary['_stem']}_samples.jsonl")


def curve_rows(run_dir: Path) -> dict[str, list[dict]]:
    """`tiller eval curve`'s rows (eval/curve.jsonl) by stage, each stage's in step order (a row
    without a step last); empty when the curve was not run."""
    by_stage: dict[str, list[dict]] = {}
    for row in read_jsonl(run_dir / "eval" / "curve.jsonl"):
        by_stage.setdefault(str(row.get("stage", "?")), []).append(row)
    for rows in by_stage.values():
        rows.sort(key=lambda r: (number(r.get("step")) is None, number(r.get("step")) or 0.0))
    return by_stage
