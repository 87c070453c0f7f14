"""The HTML report: a fake run folder with every stage, and one with only the data stage."""

from __future__ import annotations

import json
import math
import random
import re
from pathlib import Path

import pytest

from tiller.report import NOT_RUN, SECTIONS, write_report

CONFIG = "model:\n  name: HuggingFaceTB/SmolLM2-135M-Instruct\nrun_dir: {run}\nseed: 0\n"


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _stage(run: Path, name: str, done: bool = True) -> Path:
    folder = run / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(CONFIG.format(run=run) + f"stage: {name}\n")
    if done:
        (folder / "DONE").write_text("done\n")
    return folder


def write_data(run: Path) -> None:
    folder = run / "data"
    folder.mkdir(parents=True, exist_ok=True)

    def split(name: str, read: int, general: int, stem: int, code: int, multi: int) -> dict:
        ties = read // 12
        dropped_lang = code + multi
        too_long = read // 50
        kept = read - dropped_lang - too_long - ties
        return {
            "split": name, "source": "nvidia/HelpSteer3 (preference)", "rows_read": read, "pairs_kept": kept,
            "conversations_kept": 0, "prompts_kept": kept + ties - 3, "ties": ties,
            "rows_dropped": dropped_lang + too_long + ties,
            "dropped": {"language": dropped_lang, "tie": ties, "prompt_too_long": too_long},
            "prompts_dropped": {"duplicate_prompt": 3},
            "domains_read": {"general": general, "code": code, "stem": stem, "multilingual": multi},
            "languages_read": {"english": general + stem, "python": code, "chinese": multi},
            "domains_kept": {"general": int(kept * 0.8), "stem": kept - int(kept * 0.8)},
            "languages_kept": {"english": kept},
        }

    stats = {"format": "helpsteer3", "source": "nvidia/HelpSteer3", "languages": ["english"], "domains": None,
             "max_prompt_tokens": 1024, "tokenizer": "HuggingFaceTB/SmolLM2-135M-Instruct",
             "splits": {"train": split("train", 600, 280, 70, 150, 100), "validation": split("validation", 120, 56, 14, 30, 20)}}
    (folder / "stats.json").write_text(json.dumps(stats, indent=2))
    (folder / "DONE").write_text("done\n")


def reward_eval(accuracy: float, marker: str) -> dict:
    return {
        "n": 92, "accuracy": accuracy, "accuracy_ci95": [accuracy - 0.1, accuracy + 0.09], "mean_margin": 0.41,
        "by_domain": {"general": {"n": 74, "accuracy": accuracy + 0.01}, "stem": {"n": 18, "accuracy": accuracy - 0.05}},
        "by_strength": {"1": {"n": 40, "accuracy": 0.55}, "2": {"n": 38, "accuracy": 0.68}, "3": {"n": 14, "accuracy": 0.79}},
        "samples": [{"prompt": f"How do I sort a list in Python? {marker}", "chosen": "Use sorted(xs) or xs.sort().",
                     "rejected": "You cannot sort lists.", "chosen_score": 1.25, "rejected_score": -0.5},
                    {"prompt": "Explain entropy.", "chosen": "A measure of uncertainty...", "rejected": "Heat.",
                     "chosen_score": -0.1, "rejected_score": 0.3}],
        "train_pairs": 250, "steps": 40, "train_seconds": 812.4, "subset": "first_half",
    }


def write_reward(run: Path, stage: str, rng: random.Random) -> None:
    folder = _stage(run, stage)
    rows = []
    for step in range(1, 41):
        rows.append({"step": step, "time": 1.7e9 + step, "loss/bt": 0.69 * math.exp(-step / 40) + rng.uniform(0, 0.1),
                     "reward/accuracy": min(1.0, 0.5 + step / 120 + rng.uniform(-0.1, 0.1)),
                     "reward/margin": step / 40 + rng.uniform(-0.2, 0.2), "train/lr": 1e-5 * (1 - step / 41),
                     "train/grad_norm": rng.uniform(0.5, 2)})
        if step % 10 == 0:
            rows.append({"step": step, "eval/accuracy": 0.55 + step / 300, "eval/mean_margin": step / 60})
    _jsonl(folder / "metrics.jsonl", rows)
    (folder / "eval.json").write_text(json.dumps(reward_eval(0.66 if stage == "reward" else 0.62, "<b>bold?</b>")))


def write_rloo(run: Path, rng: random.Random, steps: int = 60) -> None:
    folder = _stage(run, "rloo")
    rows, samples = [], []
    for step in range(1, steps + 1):
        score = -0.5 + 1.5 * step / steps + rng.uniform(-0.3, 0.3)
        kl = 0.02 * step + rng.uniform(0, 0.3)
        mean_len = 40 + 30 * step / steps + rng.uniform(-5, 5)
        gen, rew, ref, train = rng.uniform(2, 3), rng.uniform(0.3, 0.6), rng.uniform(0.4, 0.7), rng.uniform(1.5, 2.5)
        rows.append({
            "step": step, "time": 1.7e9 + 10 * step, "objective/scores": score, "objective/rlhf_reward": score - 0.05 * kl,
            "objective/kl": kl, "objective/entropy": 60 - step * 0.3, "policy/entropy_avg": 1.6 - step * 0.005,
            "loss/policy_avg": rng.uniform(-0.05, 0.05), "val/ratio": 1.0, "val/num_eos_tokens": rng.randint(20, 32),
            "completions/mean_length": mean_len, "completions/min_length": mean_len - 25, "completions/max_length": 128,
            "time/generate": gen, "time/reward": rew, "time/reference": ref, "time/train": train,
            "time/step": gen + rew + ref + train, "time/completions_per_second": 32 / (gen + rew + ref + train),
        })
        if step % 20 == 0:
            samples.append({"step": step, "name": "samples/completion",
                            "text": f"prompt: Write a haiku.\ncompletion: leaves fall <i>{step}</i>\nscore: {score:.3f}"})
    rows[len(rows) // 2]["objective/kl"] = "nan"  # the tracker writes non-finite values as strings
    _jsonl(folder / "metrics.jsonl", rows)
    _jsonl(folder / "samples.jsonl", samples)


def write_sft_dpo(run: Path, rng: random.Random) -> None:
    _jsonl(_stage(run, "sft") / "metrics.jsonl",
           [{"step": s, "loss/sft": 2.5 * math.exp(-s / 20) + 0.8 + rng.uniform(0, 0.1), "train/lr": 2e-5} for s in range(1, 31)])
    _jsonl(_stage(run, "dpo") / "metrics.jsonl",
           [{"step": s, "loss/dpo": 0.69 - s * 0.01 + rng.uniform(0, 0.05), "rewards/accuracies": 0.5 + s * 0.01,
             "rewards/margins": s * 0.02} for s in range(1, 31)])


DEGENERATE_ANSWER = "1. 1. 1. 1. 1. 1. 1. 1. 1. 1."


def write_eval(run: Path, label: str, rng: random.Random, n: int = 24, degenerate: tuple[int, ...] | None = None) -> None:
    """degenerate: the prompts whose policy answer is a degenerate run; None writes the files as
    they were before the degeneration measures existed."""
    folder = run / "eval"
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        ref_tokens, pol_tokens = rng.randint(20, 128), rng.randint(40, 128)
        rows.append({
            "prompt": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                       {"role": "user", "content": f"Question {i}: what is 2+{i}?"}],
            "policy": (f"The answer is {2 + i}. <script>alert('x')</script>" if i == 0 else f"The answer is {2 + i}."),
            "reference": f"I think it is {1 + i} & maybe more.",
            "policy_score": rng.uniform(0, 2), "reference_score": rng.uniform(-1, 1),
            "policy_tokens": pol_tokens, "reference_tokens": ref_tokens,
            "policy_has_eos": pol_tokens < 128, "reference_has_eos": ref_tokens < 128, "kl": rng.uniform(0, 5),
        })
        if degenerate is not None:
            bad = i in degenerate
            if bad:
                rows[-1]["policy"] = DEGENERATE_ANSWER
            rows[-1].update({"policy_degenerate": bad, "reference_degenerate": False,
                             "policy_repetition": {"reasons": ["loop", "numbers"] if bad else []},
                             "reference_repetition": {"reasons": []}})
    _jsonl(folder / f"{label}_samples.jsonl", rows)
    summary = {"label": label, "policy": str(run / label / "model"), "reference": "HuggingFaceTB/SmolLM2-135M-Instruct",
               "judge": str(run / "judge" / "model"), "n": n, "win_rate": 0.71, "ci_low": 0.51, "ci_high": 0.85,
               "wins": 17, "ties": 0, "losses": 7, "reward_policy_mean": 1.02, "reward_reference_mean": -0.03,
               "reward_improvement": 1.05, "reward_improvement_ci_low": 0.62, "reward_improvement_ci_high": 1.48,
               "length_ratio": 1.31, "policy_mean_length": 84.0, "reference_mean_length": 64.1,
               "truncated_policy": 0.125, "truncated_reference": 0.04, "kl_mean": 2.4, "seconds": 95.0,
               "optimized_rm_policy_mean": 1.8, "optimized_rm_reference_mean": 0.1, "optimized_rm_win_rate": 0.9}
    if degenerate is not None:
        summary.update({"guarded_win_rate": 0.62, "guarded_ci_low": 0.42, "guarded_ci_high": 0.79, "guarded_wins": 15.0,
                        "guarded_ties": 0.0, "guarded_losses": 9.0, "guarded_overruled": 2.0,
                        "degenerate_policy": len(degenerate), "degenerate_reference": 0,
                        "lc_win_rate": 0.53, "lc_ci_low": 0.31, "lc_ci_high": 0.74, "lc_slope": 1.2, "lc_length_sd": 30.5,
                        "constant_answers": {
                            "empty": {"text": "", "mean_score": -2.5, "win_rate": 0.0, "ci_low": 0.0, "ci_high": 0.14},
                            "refusal": {"text": "I'm sorry, I can't help with that.", "mean_score": -0.41,
                                        "win_rate": 0.125, "ci_low": 0.04, "ci_high": 0.31},
                            "restatement": {"text": "You asked: <last user message>", "mean_score": 0.2,
                                            "win_rate": 0.5625, "ci_low": 0.36, "ci_high": 0.74}}})
    (folder / f"{label}.json").write_text(json.dumps(summary))


def make_full_run(run: Path) -> Path:
    rng = random.Random(0)
    run.mkdir(parents=True, exist_ok=True)
    write_data(run)
    (run / "data" / "config.yaml").write_text(CONFIG.format(run=run) + "stage: data\n")
    write_reward(run, "reward", rng)
    write_reward(run, "judge", rng)
    write_rloo(run, rng)
    write_sft_dpo(run, rng)
    write_eval(run, "rloo", rng, degenerate=(10, 13))
    write_eval(run, "dpo", rng)  # as written before the degeneration measures
    (run / "eval" / "reward_model.json").write_text(json.dumps(reward_eval(0.64, "")))
    return run


def test_full_report(tmp_path):
    run = make_full_run(tmp_path / "run")
    path = write_report(run)
    assert path == run / "report.html"
    text = path.read_text()
    assert not list(run.glob(".report.*"))  # the temp file was renamed, not left behind
    titles = [t for anchor, t in SECTIONS if anchor != "ppo"]  # this run trained with RLOO, not PPO
    for title in titles:
        assert f"<h2>{title}</h2>" in text, title
    assert "<h2>PPO training</h2>" not in text
    order = [text.index(f"<h2>{t}</h2>") for t in ["Summary", "Run"] + titles]
    assert order == sorted(order)
    assert NOT_RUN not in text
    assert "could not render" not in text

    # plots: reward 2x2 panels x2 stages, rloo 7, sft 1, dpo 3, 2 histograms
    assert text.count("data:image/png;base64,") >= 4 + 7 + 4 + 2
    assert "http://" not in text.replace("http://www.w3.org", "") and "<link" not in text and "<script" not in text
    # escaping of user text
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in text
    assert "&lt;b&gt;bold?&lt;/b&gt;" in text and "&lt;i&gt;20&lt;/i&gt;" in text
    assert "&amp; maybe more" in text
    # contents
    assert text.count("<details><summary>") >= 7  # one config per stage (+ earlier turns)
    assert "0.710 <span class=ci>[0.510, 0.850]</span>" in text  # win rate with CI
    assert "12.5%" in text and "+1.050 <span class=ci>[+0.620, +1.480]</span>" in text  # truncated share, improvement
    assert "prompt_too_long" in text and "multilingual" in text and "python" in text
    assert "0.660 <span class=ci>[0.560, 0.750]</span>" in text  # reward accuracy with CI
    assert "tiller eval reward" in text
    assert text.count("Question 7:") == 2 and "Question 8:" not in text  # 8 side-by-side prompts per label


def test_evaluation_shows_the_guarded_win_rate_and_lists_the_degenerate_answers(tmp_path):
    run = make_full_run(tmp_path / "run")
    write_eval(run, "sft", random.Random(2), n=3, degenerate=())
    text = write_report(run).read_text()
    evaluation = text[text.index("<h2>Evaluation</h2>"):text.index("<h2>Completion lengths</h2>")]
    assert "guarded win rate [95% CI]" in evaluation and "degenerate answers policy / reference" in evaluation
    assert "0.620 <span class=ci>[0.420, 0.790]</span>" in evaluation and "<td>2 / 0</td>" in evaluation
    assert evaluation.count("<td>&ndash; / &ndash;</td>") == 1  # dpo: a summary from before the measures
    # rloo: the two flagged answers, each with its prompt, beside the reference's answer
    assert "<h4 id='degenerate-rloo'>Degenerate policy answers: rloo</h4>" in evaluation
    assert "2 of 24 policy answers are degenerate" in evaluation
    assert evaluation.count(DEGENERATE_ANSWER) == 2
    assert "#11</span> loop, numbers" in evaluation and "#14</span> loop, numbers" in evaluation
    assert "Question 10:" in evaluation and "Question 13:" in evaluation and "Question 11:" not in evaluation
    assert "Degenerate policy answers: dpo</h4>" in evaluation and "written before they existed" in evaluation
    assert "none of the 3 policy answers is degenerate" in evaluation


def test_evaluation_shows_the_length_controlled_win_rate_and_the_constant_answers(tmp_path):
    run = make_full_run(tmp_path / "run")
    text = write_report(run).read_text()
    evaluation = text[text.index("<h2>Evaluation</h2>"):text.index("<h2>Completion lengths</h2>")]
    assert "length-controlled win rate [95% CI]" in evaluation
    assert "constant answers vs reference: empty / refusal / restatement (judge mean)" in evaluation
    # rloo has both; dpo's summary was written before them
    assert "0.530 <span class=ci>[0.310, 0.740]</span>" in evaluation
    assert "0.00 / 0.12 / 0.56 <span class=ci>(-2.500 / -0.410 / +0.200)</span>" in evaluation
    # a column per policy (dpo, then rloo); dpo's lc, guarded and constant-answer cells are dashes
    table = evaluation[:evaluation.index("</table>")]
    assert "<th></th><th><b>dpo</b></th><th><b>rloo</b></th>" in table
    for figure in ("length-controlled win rate [95% CI]", "guarded win rate [95% CI]", "constant answers vs reference"):
        row = next(r for r in table.split("<tr>") if r.startswith(f"<td>{figure}"))
        assert row.count("<td>&ndash;</td>") == 1, figure
    assert "tiller.length_control" in evaluation and "You asked: &lt;the question&gt;" in evaluation


def test_evaluation_shows_the_policy_stages_side_by_side_from_policies_json(tmp_path):
    run = make_full_run(tmp_path / "run")
    policies = {label: {**json.loads((run / "eval" / f"{label}.json").read_text()), "started_from": start,
                        "started_from_label": label_of_start}
                for label, start, label_of_start in (("dpo", "m0", "reference"), ("rloo", str(run / "dpo" / "model"), "dpo output"))}
    side = {"stages": ["dpo", "rloo"], "reference": "m0", "reference_source": "model.name", "judge": "j", "n": 24,
            "reference_seconds": 12.0, "policies": policies}
    (run / "eval" / "policies.json").write_text(json.dumps(side))
    text = write_report(run).read_text()
    evaluation = text[text.index("<h2>Evaluation</h2>"):text.index("<h2>Completion lengths</h2>")]
    table = evaluation[evaluation.index("Policy stages side by side"):evaluation.index("</table>")]
    assert "<th><b>dpo</b></th><th><b>rloo</b></th>" in table  # a column per stage, in pipeline order
    assert "<td><code>reference</code></td><td><code>dpo output</code></td>" in table
    assert "<td>judge improvement [95% CI]</td>" in table and table.count("+1.050 <span class=ci>[+0.620, +1.480]</span>") == 2
    assert "<td>degenerate answers policy / reference</td><td>&ndash; / &ndash;</td><td>2 / 0</td>" in table
    assert "<b>policies</b>" not in evaluation  # policies.json is not read as one policy's summary
    assert "seeds" not in table
    spread = {"win_rate": {"mean": 0.6, "sd": 0.1, "min": 0.5, "max": 0.7}}
    for summary in policies.values():  # eval.seeds: rows of the spread over the seeds
        summary["seeds"] = {"per_seed": [], "spread": spread}
    (run / "eval" / "policies.json").write_text(json.dumps({**side, "seeds": [0, 1, 2]}))
    text = write_report(run).read_text()
    assert "<td>win rate over 3 seeds: mean &plusmn; sd [min, max]</td>" + 2 * \
        "<td>0.600 &plusmn; 0.100 <span class=ci>[0.500, 0.700]</span></td>" in text
    side["stages"], side["policies"] = ["rloo"], {"rloo": policies["rloo"]}  # one stage: the table below says it all
    (run / "eval" / "policies.json").write_text(json.dumps(side))
    assert "Policy stages side by side" not in write_report(run).read_text()


def test_counts_written_as_floats_show_as_integers():
    from tiller.report import _count

    assert (_count(17.0), _count(3), _count(None), _count(0.5)) == ("17", "3", "&ndash;", "0.500")


def test_only_data(tmp_path):
    """No resolved config: the default pipeline (data, reward, judge, rloo, eval) is what was
    expected, so its missing stages get a note and sft and dpo, not in it, get nothing."""
    run = tmp_path / "run"
    write_data(run)
    text = write_report(run).read_text()
    for anchor, title in SECTIONS:
        assert (f"<h2>{title}</h2>" in text) == (anchor not in ("sft-dpo", "ppo")), title
    for stage in ("reward", "judge", "rloo", "eval"):
        assert f"<b>{stage}</b>: {NOT_RUN}" in text, stage
    for stage in ("sft", "dpo"):
        assert f"<b>{stage}</b>" not in text and f">{stage}</span>" not in text, stage
    assert "No policy evaluation in this run yet" in text
    assert "rows read" in text and "data:image/png" not in text
    assert "could not render" not in text


def test_partial_and_broken_files(tmp_path):
    """A killed run: torn JSONL line, reward without eval.json, rloo with nothing logged, a broken eval summary."""
    run = tmp_path / "run"
    write_reward(run, "reward", random.Random(1))
    (run / "reward" / "eval.json").unlink()
    (run / "reward" / "DONE").unlink()
    with open(run / "reward" / "metrics.jsonl", "a") as f:
        f.write('{"step": 41, "loss/b')  # cut mid-line by the kill
    _stage(run, "rloo", done=False)
    (run / "eval").mkdir()
    (run / "eval" / "rloo.json").write_text("{not json")
    (run / "data").mkdir()
    text = write_report(run).read_text()
    assert "<code>reward/eval.json</code>: the stage has not finished" in text
    assert "reward (unfinished)" in text and "rloo (unfinished)" in text
    assert "no step was logged yet" in text
    assert "data/stats.json</code> is missing" in text
    assert text.count("data:image/png;base64,") == 2  # the reward curves up to the kill
    assert "JSONDecodeError" in text  # the bad file is named in its own section, the rest renders
    assert text.count("could not render") == 0  # the eval row says what is wrong, the section still renders


def test_missing_run_dir(tmp_path):
    with pytest.raises(FileNotFoundError):
        write_report(tmp_path / "nope")


def test_cli(tmp_path, capsys):
    from tiller.cli import main

    run = tmp_path / "run"
    write_data(run)
    try:
        rc = main(["report", str(run)])
    except SystemExit as e:
        rc = e.code
    assert rc in (0, None)
    assert (run / "report.html").is_file()
    assert re.search(r"report: .*report\.html", capsys.readouterr().out)


def curve_row(stage: str, step: int, kl: float, judge: float, win: tuple[float, float, float], rm: float | None = None) -> dict:
    """A row of eval/curve.jsonl as `tiller eval curve` writes it (the keys the report reads)."""
    row = {"stage": stage, "step": step, "checkpoint": "start" if step == 0 else f"step-{step}", "n": 48,
           "model": f"runs/x/{stage}/checkpoints/step-{step}", "reference": "base", "judge": "runs/x/judge/model",
           "kl_mean": kl, "reward_policy_mean": judge, "reward_reference_mean": 0.5,
           "win_rate": win[0], "ci_low": win[1], "ci_high": win[2],
           "guarded_win_rate": win[0], "guarded_ci_low": win[1], "guarded_ci_high": win[2],
           "policy_mean_length": 40.0 + step, "degenerate_policy": step // 4}
    if rm is not None:
        row.update({"optimized_rm_policy_mean": rm, "optimized_rm_reference_mean": 1.0})
    return row


def test_the_curve_section_shows_only_when_the_curve_was_run(tmp_path):
    run = make_full_run(tmp_path / "run")
    text = write_report(run).read_text()
    assert "Over-optimization curve" not in text and "href='#curve'" not in text

    _jsonl(run / "eval" / "curve.jsonl", [
        curve_row("rloo", 8, 2.0, 0.75, (0.64, 0.54, 0.73), rm=1.9),  # out of order: the report sorts by step
        curve_row("rloo", 0, 0.0, 0.5, (0.5, 0.4, 0.6), rm=1.0),
        curve_row("rloo", 16, 5.5, 0.6, (0.55, 0.45, 0.65), rm=2.8),
        curve_row("dpo", 0, 0.0, 0.5, (0.5, 0.4, 0.6)),  # no optimized reward model
        curve_row("dpo", 10, 1.5, 0.9, (0.7, 0.6, 0.8)),
    ])
    text = write_report(run).read_text()
    assert "could not render" not in text and "href='#curve'" in text
    order = [text.index(f"<h2>{t}</h2>") for t in ("Evaluation", "Over-optimization curve", "Completion lengths")]
    assert order == sorted(order)
    curve = text[order[1]:order[2]]
    assert curve.count("data:image/png;base64,") == 4  # per stage: against KL and against step
    rloo, dpo = curve[curve.index("<h3>rloo</h3>"):curve.index("<h3>dpo</h3>")], curve[curve.index("<h3>dpo</h3>"):]
    steps = [int(s) for s in re.findall(r"<tr><td>(\d+)</td><td>(?:start|step-\d+)</td>", rloo)]
    assert steps == [0, 8, 16]
    # step 8: judge 0.75, a gain of 0.75 - 0.5; optimized RM 1.9, a gain of 1.9 - 1.0
    assert "+0.750 <span class=ci>(+0.250)</span>" in rloo and "+1.900 <span class=ci>(+0.900)</span>" in rloo
    assert "0.640 <span class=ci>[0.540, 0.730]</span>" in rloo and "<td>48.0</td>" in rloo and "<td>2</td>" in rloo
    assert "optimized RM reward (gain)" in rloo and "optimized RM reward (gain)" not in dpo
    assert "+0.900 <span class=ci>(+0.400)</span>" in dpo


def test_rolling_mean_and_its_window_by_hand():
    from tiller.report_plots import is_informative, rolling_mean, smoothing_window

    nan = float("nan")
    # window 3: each point with its neighbours; at the ends only the points there are; NaN left out
    assert rolling_mean([1.0, 2.0, 6.0, 3.0, nan, 4.0], 3) == [1.5, 3.0, 11 / 3, 4.5, 3.5, 4.0]
    assert rolling_mean([2.0, 4.0], 1) == [2.0, 4.0]
    assert math.isnan(rolling_mean([nan, nan, 1.0], 3)[0])
    # under 10 points every point is drawn as is; then about a sixth of the run, odd
    assert [smoothing_window(n) for n in (9, 10, 24, 40, 80)] == [0, 3, 5, 7, 13]
    assert not is_informative([]) and not is_informative([1.0, 1.0, 1.0]) and not is_informative([1.0, nan])
    assert is_informative([1.0, 1.5])


def test_flat_series_get_no_plot(tmp_path):
    from tiller.report_plots import line_plot, panel_plot

    flat = ("Importance ratio", "ratio", [("ratio", [1, 2, 3], [1.0, 1.0, 1.0])])
    moving = ("EOS", "count", [("with EOS", [1, 2, 3], [4.0, 6.0, 5.0])])
    assert line_plot(*flat) == "" and panel_plot([flat]) == ""
    assert "class=half" in panel_plot([flat, moving])  # the flat panel is left out: one panel, half width
    assert "class=wide" in panel_plot([moving, moving])

    run = tmp_path / "run"
    write_rloo(run, random.Random(0))  # single-pass RLOO: val/ratio is 1 at every step
    rloo = write_report(run).read_text()
    rloo = rloo[rloo.index("<h2>RLOO training</h2>"):]
    assert "Not plotted, constant over the run: importance ratio" in rloo and "<code>val/ratio</code> = 1." in rloo


def _summary_of(run: Path) -> str:
    text = write_report(run).read_text()
    return text[text.index("<h2>Summary</h2>"):text.index("<h2>Run</h2>")]


def test_verdict_from_the_interval():
    from tiller.report import verdict

    assert verdict(0.51, 0.7) == "better" and verdict(0.2, 0.49) == "worse"
    assert verdict(0.4, 0.6) == "not distinguishable" and verdict(0.5, 0.7) == "not distinguishable"
    assert verdict(-0.2, -0.1, null=0.0) == "worse" and verdict(None, 0.7) is None


def test_summary_gives_the_verdict_of_each_policy_first(tmp_path):
    run = tmp_path / "run"
    (run / "eval").mkdir(parents=True)

    def summary(label: str, ci: tuple[float, float, float], improvement: tuple[float, float, float], **extra) -> None:
        (run / "eval" / f"{label}.json").write_text(json.dumps({
            "label": label, "reference": "base", "judge": "judge", "n": 96, "win_rate": ci[0], "ci_low": ci[1],
            "ci_high": ci[2], "wins": 64.0, "ties": 2.0, "losses": 30.0, "reward_improvement": improvement[0],
            "reward_improvement_ci_low": improvement[1], "reward_improvement_ci_high": improvement[2],
            "kl_mean": 1.25, "length_ratio": 1.5, "degenerate_policy": 1, "degenerate_reference": 1, **extra}))

    summary("a", (0.68, 0.58, 0.77), (0.4, 0.2, 0.6))
    summary("b", (0.55, 0.45, 0.65), (0.2, 0.1, 0.3), degenerate_policy=5,
            constant_answers={"restatement": {"text": "You asked: x", "win_rate": 0.6, "ci_low": 0.5, "ci_high": 0.7}})
    summary("c", (0.3, 0.2, 0.4), (-0.3, -0.5, -0.1))
    text = write_report(run).read_text()
    assert text.index("<h2>Summary</h2>") < text.index("<h2>Run</h2>") < text.index("<h2>Evaluation</h2>")
    top = _summary_of(run)
    assert "<b>a</b> is <span class=good>better than the reference</span> under the held-out judge: its win rate's " \
           "95% interval [0.580, 0.770] lies above 0.5." in top
    assert "<b>b</b> is <span class=even>not distinguishable from the reference</span> under the held-out judge: " \
           "its win rate's 95% interval [0.450, 0.650] includes 0.5, though the judge-reward improvement's interval " \
           "[+0.100, +0.300] lies above 0." in top
    assert "<b>c</b> is <span class=bad>worse than the reference</span>" in top and "lies below 0.5." in top
    assert "+0.400 <span class=ci>[+0.200, +0.600]</span>" in top and "<td>1.250</td>" in top and "<td>1.50</td>" in top
    # warnings: b's degenerate answers outnumber the reference's, and a constant answer beats the reference
    assert "<b>b</b>: 5 of 96 policy answers are degenerate, against 1 of the reference's." in top
    assert "href='#degenerate-b'" in top and "id='degenerate-b'" in text
    assert "<b>b</b>: the judge prefers answers that say nothing" in top and "restatement 0.600" in top
    assert "<b>a</b>:" not in top and "<b>c</b>:" not in top
    for anchor in ("run", "data", "evaluation", "samples"):
        assert f"href='#{anchor}'" in top, anchor
    # counts written as floats print as integers
    evaluation = text[text.index("<h2>Evaluation</h2>"):]
    assert evaluation.count("<td>64 / 2 / 30</td>") == 3
    # a figure and its interval stay on one line: figure cells and intervals do not wrap
    assert "table.num td{white-space:nowrap}" in text and re.search(r"\.ci\{[^}]*white-space:nowrap", text)


def test_summary_without_warnings_says_what_it_checked(tmp_path):
    run = make_full_run(tmp_path / "run")
    # rloo's guarded interval [0.42, 0.79] includes 0.5 where its win rate's [0.51, 0.85] does not
    assert ("<b>rloo</b>: counting degenerate answers as losses changes the verdict to not distinguishable: "
            "guarded win rate 0.620 <span class=ci>[0.420, 0.790]</span>.") in _summary_of(run)
    for label in ("rloo", "dpo"):  # no constant answer beats the reference, no excess of degenerate answers
        path = run / "eval" / f"{label}.json"
        summary = json.loads(path.read_text())
        summary.pop("constant_answers", None)
        summary["degenerate_reference"] = summary.get("degenerate_policy", 0)
        summary.update(guarded_ci_low=summary["ci_low"], guarded_ci_high=summary["ci_high"])
        path.write_text(json.dumps(summary))
    top = _summary_of(run)
    assert "<p class=ok>No warning." in top and "<li>" not in top


def test_summary_warns_where_the_curve_parts(tmp_path):
    from tiller.report import curve_parting

    run = make_full_run(tmp_path / "run")
    _jsonl(run / "eval" / "curve.jsonl", [
        curve_row("rloo", 0, 0.0, 0.5, (0.5, 0.4, 0.6), rm=1.0),
        curve_row("rloo", 8, 2.0, 0.75, (0.64, 0.54, 0.73), rm=1.9),  # the judge's peak
        curve_row("rloo", 16, 5.5, 0.6, (0.55, 0.45, 0.65), rm=2.8),  # judge falls, optimized RM rises
        curve_row("dpo", 0, 0.0, 0.5, (0.5, 0.4, 0.6)),
        curve_row("dpo", 10, 1.5, 0.4, (0.4, 0.3, 0.5)),  # no optimized RM: nothing to part from
    ])
    top = _summary_of(run)
    # gains over the reference's answers: judge 0.75 - 0.5 then 0.6 - 0.5; optimized RM 1.9 - 1.0 then 2.8 - 1.0
    assert ("<b>rloo</b>: over-optimization: from step 8 to step 16 the optimized reward model's gain rose "
            "+0.900 &rarr; +1.800 while the held-out judge's fell +0.250 &rarr; +0.100.") in top
    assert "href='#curve'" in top and "<b>dpo</b>: over-optimization" not in top
    rising = [curve_row("rloo", s, s / 4, 0.5 + s / 40, (0.5, 0.4, 0.6), rm=1.0 + s / 10) for s in (0, 8, 16)]
    assert curve_parting(rising) is None


def test_stages_outside_the_pipeline_show_nothing(tmp_path):
    run = tmp_path / "run"
    write_data(run)
    (run / "config.yaml").write_text(CONFIG.format(run=run) + "pipeline:\n  stages: [data, dpo, eval, report]\n")
    text = write_report(run).read_text()
    assert f"<b>dpo</b>: {NOT_RUN}" in text and f"<b>eval</b>: {NOT_RUN}" in text  # expected, missing
    for anchor in ("reward", "rloo"):  # neither in the pipeline nor in the folder: no section, no note
        assert f"<section id='{anchor}'>" not in text and f"href='#{anchor}'" not in text, anchor
    assert "<h2>SFT and DPO training</h2>" in text and "<b>sft</b>" not in text and ">sft</span>" not in text
    assert "<span class=missing>dpo</span>" in text and "<span class=missing>rloo</span>" not in text


def test_a_ppo_run_gets_its_own_section_with_the_value_model(tmp_path):
    """PPO's metrics (rloo's plus the value loss and values) get a "PPO training" section with
    the value panels; an RLOO run's section has no value plots."""
    run = tmp_path / "run"
    write_rloo(run, random.Random(0))
    (run / "rloo").rename(run / "ppo")
    rows = [json.loads(line) for line in (run / "ppo" / "metrics.jsonl").read_text().splitlines()]
    for i, row in enumerate(rows):
        row.update({"loss/value_avg": 0.5 / (i + 1), "value/mean": 0.01 * i, "value/returns_mean": 0.02 * i})
        row.pop("val/ratio")
    _jsonl(run / "ppo" / "metrics.jsonl", rows)
    (run / "ppo" / "config.yaml").write_text(CONFIG.format(run=run) + "pipeline:\n  stages: [ppo]\nstage: ppo\n")
    text = write_report(run).read_text()
    assert "<h2>PPO training</h2>" in text and "<h2>RLOO training</h2>" not in text
    ppo = text[text.index("<h2>PPO training</h2>"):]
    assert "reward-model score: first &rarr; last" in ppo
    # reward, KL, loss, value panels, entropy, length, time, EOS: one image each
    assert ppo[:ppo.index("</section>")].count("<img") == 8, ppo[:ppo.index("</section>")].count("<img")

    rloo_run = tmp_path / "rloo-run"
    write_rloo(rloo_run, random.Random(0))
    rloo = write_report(rloo_run).read_text()
    rloo = rloo[rloo.index("<h2>RLOO training</h2>"):]
    assert rloo[:rloo.index("</section>")].count("<img") == 7  # no value panels


def test_a_ppo_run_plots_against_rollout_steps(tmp_path, monkeypatch):
    """A PPO step is one rollout and ppo_epochs x num_mini_batches optimizer steps, so every plot
    of a PPO section is drawn against "rollout step"; an RLOO section's against "optimizer step"
    (one update per step). The x labels are read off each figure as it is rendered."""
    from tiller import report_plots

    labels = []
    rendered = report_plots.png_img

    def record(fig, wide=False):
        labels.extend(ax.get_xlabel().split("\n")[0] for ax in fig.axes)
        return rendered(fig, wide)

    monkeypatch.setattr(report_plots, "png_img", record)
    run = tmp_path / "run"
    write_rloo(run, random.Random(0))
    (run / "rloo").rename(run / "ppo")
    (run / "ppo" / "config.yaml").write_text(CONFIG.format(run=run) + "pipeline:\n  stages: [ppo]\nstage: ppo\n")
    from tiller.report import _policy_optimization

    _policy_optimization(run, "ppo")
    assert len(labels) >= 7 and set(labels) == {"rollout step"}, labels
    labels.clear()
    rloo_run = tmp_path / "rloo-run"
    write_rloo(rloo_run, random.Random(0))
    _policy_optimization(rloo_run, "rloo")
    assert len(labels) >= 7 and set(labels) == {"optimizer step"}, labels
