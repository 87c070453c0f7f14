"""`make gpu-check` (scripts/gpu_check.py) as its CPU dry run: the script that only ever runs on a
GPU machine must still run here, and must still find the recipe functions it times by name."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def gpu_check_dry_run(tmp_path, *args: str) -> tuple[dict, str]:
    """`scripts/gpu_check.py --tiny *args` in this Python: (its JSON summary, what it printed)."""
    out = tmp_path / "gpu-check.json"
    command = [sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--tiny", *args,
               "--workdir", str(tmp_path / "work"), "--out", str(out)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return json.loads(out.read_text()), run.stdout


@pytest.mark.slow
def test_gpu_check_dry_run_labels_every_part_it_times(tmp_path):
    summary, _ = gpu_check_dry_run(tmp_path, "--engine", "transformers", "--phases", "build,rloo,reward")
    assert summary["ok"] and set(summary["phases"]) == {"build", "rloo", "reward"}
    for name in ("rloo", "reward"):
        phase = summary["phases"][name]
        # a recipe function renamed under the check leaves its part unlabelled: it said so, silently
        assert "could not label" not in (phase.get("notes") or {}), (name, phase["notes"])
    assert {"generate", "reward", "reference", "train", "save"} <= set(summary["phases"]["rloo"]["parts"])
    assert {"train", "eval", "save"} <= set(summary["phases"]["reward"]["parts"])
    steps = summary["phases"]["rloo"]["steps"]
    assert len(steps) == 3 and all(row["time/weight_sync"] <= row["time/generate"] for row in steps)
