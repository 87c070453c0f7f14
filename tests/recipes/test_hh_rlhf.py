"""Real human preferences: configs/hh-harmless.yaml on the HH-RLHF harmless-base test file in
../shared/data (see its README), with the tiny model's tokenizer: every row kept or its drop
counted, validation held out of the one file by prompt, and a few reward-model steps whose loss
falls. The folder exists on development and CI machines only; elsewhere these tests skip."""

from __future__ import annotations

import gzip
import json
import re
import warnings

import pytest
import yaml

from tests.conftest import ROOT
from tiller.config_loading import config_from_dict
from tiller.data import run_files
from tiller.data.splits import prompt_key
from tiller.recipes import data as data_stage
from tiller.recipes import reward
from tiller.tracking import read_metrics

SHARED = ROOT.parent / "shared" / "data"
HH_TEST = SHARED / "hh-rlhf" / "harmless-base" / "test.jsonl.gz"
CONFIG = ROOT / "configs" / "hh-harmless.yaml"
# The README of ../shared/data: 4 rows with an empty final answer, 5 with "\n\nAssistant:" inside an
# answer (so the two sides' prompts differ).
EMPTY_ANSWER = [87, 517, 926, 1104]
PROMPTS_DIFFER = [1255, 1689, 1951, 1953, 2037]


@pytest.fixture(scope="module")
def hh_file():
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent: the real HH-RLHF data is there on development and CI machines only "
                    "(DESIGN.md, 'Data beyond the bundled sample')")
    if not HH_TEST.is_file():
        pytest.skip(f"{HH_TEST} is absent from {SHARED}")
    return HH_TEST


def hand_count(path, limit=None) -> dict:
    """Plain json, without tiller's adapter: the rows, and the bad ones by line."""
    rows, bad = 0, {}
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if limit is not None and lineno > limit:
                break
            rows += 1
            row = json.loads(line)
            cuts = {side: row[side].rfind("\n\nAssistant: ") for side in ("chosen", "rejected")}
            answers = {side: row[side][cut + len("\n\nAssistant: "):] for side, cut in cuts.items()}
            if not answers["chosen"].strip():
                bad[lineno] = "chosen"
            elif not answers["rejected"].strip():
                bad[lineno] = "rejected"
            elif row["chosen"][: cuts["chosen"]] != row["rejected"][: cuts["rejected"]]:
                bad[lineno] = "rejected"
    return {"rows": rows, "bad": bad}


def hh_config(run_dir, model, *extra: str):
    """configs/hh-harmless.yaml with the `--set` overrides of the local run (README), and the tiny
    model: its tokenizer counts prompt tokens, so no prompt is dropped as too long here."""
    overrides = [f"run_dir={run_dir}", "data.source=local", f"data.files.train={HH_TEST}", f"model.name={model}",
                 "data.max_prompt_tokens=100000", "tracking.tensorboard=false", *extra]
    return config_from_dict(yaml.safe_load(CONFIG.read_text()), overrides)


def run_data(cfg) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the one "skipping bad rows" warning
        return data_stage.run(cfg)


def table_row(out: str, label: str) -> list[int]:
    (line,) = [line for line in out.splitlines() if re.fullmatch(rf"\s*{re.escape(label)}\s+\d+\s+\d+", line)]
    return [int(n) for n in line.split()[-2:]]


def test_whole_file_every_row_kept_or_counted(hh_file, tmp_path, tiny_llama, capsys):
    hand = hand_count(hh_file)
    assert hand["rows"] == 2312 and sorted(hand["bad"]) == sorted(EMPTY_ANSWER + PROMPTS_DIFFER)
    summary = run_data(hh_config(tmp_path / "run", tiny_llama))
    out = capsys.readouterr().out
    train, val = summary["splits"]["train"], summary["splits"]["validation"]
    assert train["rows_read"] + val["rows_read"] == 2312 == sum(table_row(out, "rows read"))
    assert train["dropped"] == {"bad_row:rejected": 5, "bad_row:chosen": 4} and val["rows_dropped"] == 0
    assert train["pairs_kept"] + val["pairs_kept"] == 2312 - 9
    # each bad row named with its reason, under the table
    assert [int(re.search(r"line (\d+):", r).group(1)) for r in train["bad_rows"]] == sorted(hand["bad"])
    assert all(f"line {n}: field 'chosen': empty response" in out for n in EMPTY_ANSWER)
    assert all(f"line {n}: field 'rejected': the turns before the last assistant turn differ" in out for n in PROMPTS_DIFFER)
    # validation: about 5% of the prompts (data.validation_fraction in the config), none also in train
    held = summary["held_out"]
    assert held["fraction"] == 0.05 and 0.03 < held["prompts"]["validation"] / sum(held["prompts"].values()) < 0.07
    assert "rows read from train's source 2312" in out
    keys = {s: {prompt_key(p.prompt) for p in run_files.load_pairs(tmp_path / "run", s)} for s in ("train", "validation")}
    assert keys["train"].isdisjoint(keys["validation"])


def test_slice_data_counts_then_reward_loss_falls(hh_file, tmp_path, tiny_llama, capsys):
    """The first 200 rows: counts, then 55 reward steps (5 epochs over the 94 pairs of train's
    first half) of the tiny random model. Its loss falls because it fits those pairs (validation
    accuracy stays near chance on 18 pairs: nothing general is learned at this size). Measured with
    seeds 0-4: mean loss/bt of the first 8 steps 0.691-0.697, of the last 8 0.386-0.482."""
    hand = hand_count(hh_file, limit=200)
    assert hand == {"rows": 200, "bad": {87: "chosen"}}
    cfg = hh_config(
        tmp_path, tiny_llama, "data.max_rows_per_split=200", "data.validation_fraction=0.1", "seed=0",
        "reward.lora.enabled=false", "reward.train_subset=first_half",
        "reward.optim={lr: 1.0e-3, scheduler: cosine, warmup_ratio: 0.1}",
        "reward.train={epochs: 5, pairs_per_step: 8, micro_batch_per_device: 8, max_length: 256, truncation: left, "
        "eval_every: 0, save_every: 0}",
    )
    summary = run_data(cfg)
    out = capsys.readouterr().out
    train, val = summary["splits"]["train"], summary["splits"]["validation"]
    assert table_row(out, "rows read") == [train["rows_read"], val["rows_read"]] and sum(table_row(out, "rows read")) == 200
    assert table_row(out, "bad_row:chosen") == [1, 0]
    assert table_row(out, "pairs kept") == [train["pairs_kept"], val["pairs_kept"]] and sum(table_row(out, "pairs kept")) == 199
    assert 8 <= val["pairs_kept"] <= 32  # 10% of 199 prompts: 20 on average
    assert "line 87: field 'chosen': empty response" in out

    model_dir = reward.run(cfg)
    losses = [row["loss/bt"] for row in read_metrics(model_dir / "metrics.jsonl") if "loss/bt" in row]
    assert len(losses) >= 40, len(losses)
    first, last = sum(losses[:8]) / 8, sum(losses[-8:]) / 8
    assert first == pytest.approx(0.693, abs=0.02)  # log 2: the untrained model cannot tell the two apart
    assert last < first - 0.1, losses
