"""What the training-step benchmarks share (bench/reward_batches.py, bench/dpo_batches.py): their
two command-line options, and the demo's config with its training pairs (the data stage on the
bundled sample with `configs/demo.yaml`, in a temporary folder)."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def step_arguments(doc: str, ways: str) -> argparse.Namespace:
    """--steps (measured steps per way, 0: the whole epoch) and --reps (alternations of `ways`)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=0, help="measured steps per way (0: the whole epoch)")
    parser.add_argument("--reps", type=int, default=1, help=f"alternations ({ways}, ...)")
    return parser.parse_args()


def demo_config_and_pairs():
    """(configs/demo.yaml loaded, every training pair the data stage writes from the bundled sample)."""
    from tiller.config_loading import load_config
    from tiller.data.run_files import load_pairs
    from tiller.recipes import data as data_stage

    cfg = load_config(str(ROOT / "configs" / "demo.yaml"), [])
    with tempfile.TemporaryDirectory() as tmp:
        cfg.run_dir = tmp
        data_stage.run(cfg)
        return cfg, load_pairs(tmp, "train")
