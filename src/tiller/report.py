"""`tiller report RUN_DIR`: one self-contained HTML file with the tables and plots of a run folder.

It reads whatever the stages left behind and never needs a model, a GPU or the network:

    <stage>/config.yaml                the resolved config of each stage
    data/stats.json                    rows read, kept and dropped (by reason, domain, language)
    reward/, judge/                    metrics.jsonl and eval.json of the reward models
    sft/, dpo/, rloo/, ppo/            metrics.jsonl (rloo/ and ppo/ samples.jsonl too)
    eval/<label>.json                  win rate of a policy against its reference, and
    eval/<label>eval_samples.jsonl         the answers behind it
    eval/policies.json                 the pipeline's eval stage: every policy stage against one
                                           reference (a side-by-side table when there are several)
    eval/reward_model.json, judge_model.json   `tiller eval reward` reports
    eval/curve.jsonl                   `tiller eval curve`: the figures of each checkpoint (its own
                                           section, only when the file exists)

The page opens with a summary: per evaluated policy, the verdict of the held-out judge drawn from
the 95% intervals, the figures behind it, and the warnings (more degenerate answers than the
reference, the over-optimization curve parting, constant answers beating the reference), with
links to the sections that show the details.

Only the stages of the run's pipeline (pipeline.stages of its resolved config) and those present
in the folder get a section; a stage of the pipeline that has not run gets a "stage not run"
note. A file that cannot be read gets a note saying why, in its own section: a partial run still
gives a report. Plots are matplotlib (Agg
canvas, no pyplot state) embedded as base64 PNG, so the file can be mailed or archived as is.

This module writes the HTML; reading the run folder is `tiller.report_data` and drawing the
plots is `tiller.report_plots`.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import math
import os
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable

from tiller.report_data import (
    STAGES,
    configured_stages,
    curve_rows,
    eval_samples,
    eval_summaries,
    metrics_rows,
    policies_summary,
    number,
    read_json,
    read_jsonl,
    series,
    stages_found,
)
from tiller.report_plots import (
    curve_plot,
    is_informative,
    length_band_plot,
    length_histogram,
    line_plot,
    panel_plot,
    time_plot,
)

REWARD_STAGES = (("reward", "reward model"), ("judge", "held-out judge"))
WRITES_DONE = ("data", "reward", "judge", "rloo", "ppo")  # stages that mark their end with a DONE file
NUM_SIDE_BY_SIDE = 8
MAX_DEGENERATE_SHOWN = 40  # flagged policy answers listed per evaluation
NOT_RUN = "stage not run"


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


# ----------------------------------------------------------------------------- formatting


def _fmt(value: Any, digits: int = 3, signed: bool = False) -> str:
    v = number(value)
    if v is None:
        return "&ndash;" if value is None else esc(value)
    if not math.isfinite(v):
        return esc(v)
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return f"{v:+.{digits}f}" if signed else f"{v:.{digits}f}"


def _pct(value: Any) -> str:
    v = number(value)
    return "&ndash;" if v is None else f"{100 * v:.1f}%"


def _ci(value: Any, low: Any, high: Any, signed: bool = False) -> str:
    if number(value) is None:
        return "&ndash;"
    if number(low) is None or number(high) is None:
        return _fmt(value, signed=signed)
    return f"{_fmt(value, signed=signed)} <span class=ci>[{_fmt(low, signed=signed)}, {_fmt(high, signed=signed)}]</span>"


def _table(header: list[str], rows: Iterable[list[str]], cls: str = "") -> str:
    """Cells are HTML already (escape text before it gets here)."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table class='{cls}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _note(text: str, cls: str = "note") -> str:
    return f"<p class={cls}>{text}</p>"


def _not_run(stage: str, hint: str = "") -> str:
    """Only for a stage of the run's pipeline: one it never meant to run shows nothing."""
    extra = f" {hint}" if hint else ""
    return _note(f"<b>{esc(stage)}</b>: {NOT_RUN} (it is in the pipeline, but there is no <code>{esc(stage)}/</code> "
                 f"folder in this run).{extra}", "notrun")


def shown_stages(run_dir: Path, found: list[str]) -> list[str]:
    """The stages the report has a place for: those of the run's pipeline and those that ran (a
    stage run by hand outside the pipeline still shows). A run folder with no resolved config
    is taken to have the default pipeline, as `tiller pipeline` would run it."""
    pipeline = configured_stages(run_dir)
    if pipeline is None:
        from tiller.config import PipelineConfig

        pipeline = PipelineConfig().stages
    return [s for s in STAGES if s in pipeline or s in found] + [s for s in found if s not in STAGES]


def _text_block(text: Any, cls: str = "text") -> str:
    return f"<div class={cls}>{esc(text if text is not None else '')}</div>"


# ----------------------------------------------------------------------------- sections


def _section(anchor: str, title: str, body: Callable[[], str]) -> str:
    try:
        content = body()
    except Exception as e:  # a broken file spoils its own section, never the report
        content = _note(f"could not render this section: {esc(type(e).__name__)}: {esc(e)}", "error")
    return f"<section id='{anchor}'><h2>{esc(title)}</h2>\n{content}\n</section>\n"


def _header(run_dir: Path, stages: list[str], shown: list[str]) -> str:
    now = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    rows = [["run folder", f"<code>{esc(run_dir.resolve())}</code>"], ["report written", esc(now)]]
    times = []
    for s in stages:  # the tracker stamps every row with the wall-clock time
        rows_ = read_jsonl(run_dir / s / "metrics.jsonl")
        times += [t for t in (number(r.get("time")) for r in (rows_[:1] + rows_[-1:])) if t and math.isfinite(t)]
    if times:
        def when(t: float) -> str:
            return _dt.datetime.fromtimestamp(t).astimezone().strftime("%Y-%m-%d %H:%M %Z")

        rows.append(["training logged", f"{esc(when(min(times)))} &rarr; {esc(when(max(times)))}"])
    stage_cells = []
    for s in (s for s in STAGES if s in shown):  # the pipeline's stages; one that has not run is struck through
        if s in stages:
            done = (run_dir / s / "DONE").is_file()
            mark = " &#10003;" if done else (" (unfinished)" if s in WRITES_DONE else "")
            stage_cells.append(f"<span class=found>{esc(s)}{mark}</span>")
        else:
            stage_cells.append(f"<span class=missing>{esc(s)}</span>")
    stage_cells += [f"<span class=found>{esc(s)}</span>" for s in stages if s not in STAGES]
    rows.append(["stages", " ".join(stage_cells)])
    return _table(["", ""], rows, "kv")


def _configs(run_dir: Path, stages: list[str]) -> str:
    parts = []
    top = run_dir / "config.yaml"
    if top.is_file():
        parts.append(f"<details><summary>run (<code>config.yaml</code>)</summary><pre>{esc(top.read_text(errors='replace'))}</pre></details>")
    for s in stages:
        path = run_dir / s / "config.yaml"
        if path.is_file():
            parts.append(f"<details><summary>{esc(s)} (<code>{esc(s)}/config.yaml</code>)</summary>"
                         f"<pre>{esc(path.read_text(errors='replace'))}</pre></details>")
    if not parts:
        return _note("no resolved config in this run folder (stages write <code>&lt;stage&gt;/config.yaml</code> when they start).")
    return "\n".join(parts)


def _data(run_dir: Path) -> str:
    if not (run_dir / "data").is_dir():
        return _not_run("data", "Run <code>tiller data --config FILE</code>.")
    stats = read_json(run_dir / "data" / "stats.json")
    if stats is None:
        why = "no counts to show" if (run_dir / "data" / "DONE").is_file() else "the data stage did not finish"
        return _note(f"<code>data/stats.json</code> is missing: {why}.", "notrun")
    def setting(v: Any) -> str:
        return "all" if v is None else ", ".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)

    meta = [[esc(k.replace("_", " ")), esc(setting(stats.get(k)))]
            for k in ("format", "source", "languages", "domains", "max_prompt_tokens", "tokenizer") if k in stats]
    splits = list((stats.get("splits") or {}).values())
    if not splits:
        return _table(["setting", "value"], meta, "kv") + _note("stats.json has no splits.")

    def keys(attr: str) -> list[str]:
        total: dict[str, int] = {}
        for s in splits:
            for k, v in (s.get(attr) or {}).items():
                total[k] = total.get(k, 0) + int(v)
        return [k for k, _ in sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))]

    def row(label: str, values: list, cls: str = "") -> list[str]:
        return [f"<span class='{cls}'>{label}</span>"] + [_fmt(v) if v != "" else "" for v in values]

    rows = [
        row("rows read", [s.get("rows_read") for s in splits], "b"),
        row("pairs kept", [s.get("pairs_kept") for s in splits], "b"),
        row("conversations kept", [s.get("conversations_kept") for s in splits]),
        row("RL prompts kept", [s.get("prompts_kept") for s in splits]),
        row("ties (of rows read)", [s.get("ties") for s in splits]),
        row("rows dropped", [s.get("rows_dropped", sum((s.get("dropped") or {}).values())) for s in splits], "b"),
    ]
    rows += [row(f"dropped: {esc(k)}", [(s.get("dropped") or {}).get(k, 0) for s in splits], "ind")
             for k in keys("dropped")]
    rows += [row(f"RL prompts dropped: {esc(k)}", [(s.get("prompts_dropped") or {}).get(k, 0) for s in splits])
             for k in keys("prompts_dropped")]
    for title, attr in (("rows read by domain", "domains_read"), ("rows read by language", "languages_read"),
                        ("kept by domain", "domains_kept"), ("kept by language", "languages_kept")):
        ks = keys(attr)
        if ks:
            rows.append([f"<span class=group>{title}</span>"] + [""] * len(splits))
            rows += [row(esc(k), [(s.get(attr) or {}).get(k, 0) for s in splits], "ind") for k in ks]
    header = ["count"] + [esc(s.get("split", "?")) for s in splits]
    source = "; ".join(f"{esc(s.get('split'))}: {esc(s.get('source'))}" for s in splits if s.get("source"))
    out = _table(["setting", "value"], meta, "kv")
    if source:
        out += _note(f"sources: {source}")
    out += _table(header, rows, "num data")
    out += _note("Every row read is either kept or dropped under exactly one reason; ties still give an RL prompt.")
    return out


def _reward_eval_block(report: dict, title: str) -> str:
    if not report.get("n"):
        return f"<h4>{esc(title)}</h4>" + _note("no pairs were evaluated.")
    lo, hi = (report.get("accuracy_ci95") or [None, None])[:2]
    facts = [
        ["pairwise accuracy (95% CI)", _ci(report.get("accuracy"), lo, hi)],
        ["validation pairs", _fmt(report.get("n"))],
        ["mean margin (chosen &minus; rejected score)", _fmt(report.get("mean_margin"), signed=True)],
    ]
    for key, label in (("train_pairs", "training pairs"), ("subset", "training subset"), ("steps", "optimizer steps"),
                       ("train_seconds", "training time (s)"), ("dropped_too_long", "pairs dropped as too long")):
        if key in report:
            facts.append([label, _fmt(report[key], 0) if key == "train_seconds" else _fmt(report[key])])
    out = f"<h4>{esc(title)}</h4>" + _table(["", ""], facts, "kv")
    tables = []
    for key, label, column in (("by_domain", "domain", "domain"),
                               ("by_strength", "preference strength |overall_preference|", "strength")):
        groups = report.get(key) or {}
        if groups:
            items = sorted(groups.items(), key=lambda kv: (int(kv[0]) if str(kv[0]).lstrip("-").isdigit() else 0, str(kv[0])))
            tables.append(f"<div><h5>by {esc(label)}</h5>"
                          + _table([column, "pairs", "accuracy"],
                                   [[esc(k), _fmt(v.get("n")), _fmt(v.get("accuracy"))] for k, v in items], "num")
                          + "</div>")
    if tables:
        out += "<div class=row>" + "".join(tables) + "</div>"
    samples = report.get("samples") or []
    if samples:
        rows = []
        for s in samples:
            ok = (number(s.get("chosen_score")) or 0) > (number(s.get("rejected_score")) or 0)
            rows.append([_text_block(s.get("prompt")),
                         _text_block(s.get("chosen")) + f"<div class=score>score {_fmt(s.get('chosen_score'), signed=True)}</div>",
                         _text_block(s.get("rejected")) + f"<div class=score>score {_fmt(s.get('rejected_score'), signed=True)}</div>",
                         "<span class=good>right</span>" if ok else "<span class=bad>wrong</span>"])
        out += (f"<details open><summary>sample validation pairs ({len(samples)})</summary>"
                + _table(["prompt (last user turn)", "chosen (annotators' preference)", "rejected", "RM"], rows, "samples")
                + "</details>")
    return out


def _reward_models(run_dir: Path, shown: list[str]) -> str:
    out = []
    for stage, name in REWARD_STAGES:
        folder = run_dir / stage
        extra = run_dir / "eval" / f"{stage}_model.json"
        if stage not in shown and not extra.is_file():
            continue
        out.append(f"<h3>{esc(name)} (<code>{esc(stage)}/</code>)</h3>")
        if not folder.is_dir() and not extra.is_file():
            out.append(_not_run(stage, "Run <code>tiller reward --config FILE</code>." if stage == "reward" else ""))
            continue
        report = read_json(folder / "eval.json")
        if report is not None:
            out.append(_reward_eval_block(report, "validation after training"))
        elif folder.is_dir():
            out.append(_note(f"no <code>{esc(stage)}/eval.json</code>: the stage has not finished.", "notrun"))
        if extra.is_file():
            out.append(_reward_eval_block(read_json(extra) or {}, f"tiller eval {stage} (eval/{stage}_model.json)"))
        rows = metrics_rows(folder / "metrics.jsonl")
        plot = panel_plot([
            ("Bradley-Terry loss", "loss (nats per pair)", [("train", *series(rows, "loss/bt"))]),
            ("Pairwise accuracy", "accuracy (share of pairs)",
             [("train batch", *series(rows, "reward/accuracy")), ("validation", *series(rows, "eval/accuracy"))]),
        ])
        plot2 = panel_plot([
            ("Reward margin", "score margin (chosen − rejected)",
             [("train batch", *series(rows, "reward/margin")), ("validation", *series(rows, "eval/mean_margin"))]),
            ("Learning rate", "learning rate", [("lr", *series(rows, "train/lr"))], False),
        ])
        if plot or plot2:
            out.append(f"<div class=plots>{plot}{plot2}</div>")
            out.append(_flat_series_note(rows, (("loss/bt", "loss"), ("reward/accuracy", "train accuracy"),
                                                ("reward/margin", "train margin"), ("train/lr", "learning rate"))))
        elif folder.is_dir():
            out.append(_note(f"no training curves (<code>{esc(stage)}/metrics.jsonl</code> is missing, empty or flat)."))
    return "\n".join(out)


def _step_label(stage: str) -> str:
    """What a logged step of `stage` is: a PPO step is one rollout followed by ppo_epochs x
    num_mini_batches optimizer steps; every other stage logs one optimizer step per step."""
    return "rollout step" if stage == "ppo" else "optimizer step"


def _policy_optimization(run_dir: Path, stage: str) -> str:
    """The section of an RL stage: rloo (RLOO and the GRPO family) or ppo (PPO with a value
    model, which adds its value loss and values to the plots)."""
    folder = run_dir / stage
    if not folder.is_dir():
        return _not_run(stage, f"Run <code>tiller {stage} --config FILE</code>.")
    rows = metrics_rows(folder / "metrics.jsonl")
    if not rows:
        return _note(f"<code>{stage}/metrics.jsonl</code> is missing or empty: no step was logged yet.", "notrun")
    last = rows[-1]
    facts = [["steps logged", _fmt(len(rows))], ["last step", _fmt(last.get("step"))]]
    for key, label, digits in (("objective/scores", "reward-model score", 3),
                               ("objective/rlhf_reward", "RLHF reward (score − β·KL − EOS penalty)", 3),
                               ("objective/kl", "KL (nats per sequence)", 3),
                               ("completions/mean_length", "mean completion length (tokens)", 1),
                               ("time/step", "seconds per step", 1),
                               ("time/completions_per_second", "completions per second", 2)):
        xs, ys = series(rows, key)
        if xs:
            facts.append([f"{label}: first &rarr; last", f"{_fmt(ys[0], digits)} &rarr; {_fmt(ys[-1], digits)}"])
    out = [_table(["", ""], facts, "kv")]
    if not (folder / "DONE").is_file():
        out.append(_note(f"no <code>{stage}/DONE</code>: the stage has not finished (or is still running).", "notrun"))
    plotted = (("objective/scores", "reward-model score"), ("objective/kl", "KL"), ("loss/policy_avg", "policy loss"),
               ("objective/entropy", "entropy per sequence"), ("policy/entropy_avg", "entropy per token"),
               ("completions/mean_length", "mean completion length"), ("val/ratio", "importance ratio π / π_old"),
               ("val/num_eos_tokens", "completions ending in EOS"), ("loss/value_avg", "value loss"),
               ("value/mean", "mean value"))
    loss_kind = "clipped PPO" if stage == "ppo" else "REINFORCE"
    xlabel = _step_label(stage)
    plots = [
        line_plot(f"Reward during {stage.upper()}", "reward (reward-model score)",
                   [("score", *series(rows, "objective/scores")),
                    ("RLHF reward (score − β·KL − EOS penalty)", *series(rows, "objective/rlhf_reward"))], xlabel),
        line_plot("KL from the reference policy", "KL (nats per sequence)", [("KL", *series(rows, "objective/kl"))], xlabel),
        line_plot("Policy loss", f"loss ({loss_kind}, per token)", [("policy loss", *series(rows, "loss/policy_avg"))], xlabel),
        panel_plot([
            ("Value loss", "clipped value loss (per token)", [("value loss", *series(rows, "loss/value_avg"))]),
            ("Values and returns", "mean per token", [("value", *series(rows, "value/mean")),
                                                      ("return", *series(rows, "value/returns_mean"))]),
        ], xlabel) if stage == "ppo" else "",
        panel_plot([
            ("Entropy per sequence", "entropy (nats per sequence)", [("sequence", *series(rows, "objective/entropy"))]),
            ("Entropy per token", "entropy (nats per token)", [("token", *series(rows, "policy/entropy_avg"))]),
        ], xlabel),
        length_band_plot(rows, xlabel),
        time_plot(rows, xlabel),
        panel_plot([
            ("Importance ratio", "π / π_old (mean)", [("ratio", *series(rows, "val/ratio"))]),
            ("Completions ending in EOS", "completions per step (per process)", [("with EOS", *series(rows, "val/num_eos_tokens"))]),
        ], xlabel),
    ]
    out.append("<div class=plots>" + "".join(p for p in plots if p) + "</div>")
    out.append(_flat_series_note(rows, plotted))
    samples = read_jsonl(folder / "samples.jsonl")
    if samples:
        shown = samples[-5:]
        items = "".join(f"<h5>step {esc(s.get('step'))} &middot; {esc(s.get('name', ''))}</h5>{_text_block(s.get('text'), 'text pre')}"
                        for s in shown)
        out.append(f"<details><summary>training samples (last {len(shown)} of {len(samples)})</summary>{items}</details>")
    return "\n".join(out)


def _flat_series_note(rows: list[dict], plotted: Iterable[tuple[str, str]]) -> str:
    """Names the metrics that would have been plotted but did not change over the run (a flat
    line says nothing a number does not), with their value; "" when there are none."""
    flat = []
    for key, label in plotted:
        _, ys = series(rows, key)
        if ys and not is_informative(ys):
            flat.append(f"{esc(label)} <code>{esc(key)}</code> = {number(ys[0]):.4g}")
    if not flat:
        return ""
    return _note("Not plotted, constant over the run: " + "; ".join(flat) + ".")


def _sft_dpo(run_dir: Path, shown: list[str]) -> str:
    out = []
    for stage, panels in (
        ("sft", [("SFT loss", "loss (nats per token)", [("train", "loss/sft"), ("validation", "eval/loss")])]),
        ("dpo", [("DPO loss", "loss (nats per pair)", [("train", "loss/dpo"), ("validation", "eval/loss")]),
                 ("Implicit reward accuracy", "accuracy (share of pairs)", [("train", "rewards/accuracies"),
                                                                            ("validation", "eval/accuracy")]),
                 ("Implicit reward margin", "β·log-ratio margin (nats)", [("train", "rewards/margins")])]),
    ):
        if stage not in shown:
            continue
        out.append(f"<h3>{stage.upper()} (<code>{stage}/</code>)</h3>")
        folder = run_dir / stage
        if not folder.is_dir():
            out.append(_not_run(stage))
            continue
        rows = metrics_rows(folder / "metrics.jsonl")
        if not rows:
            out.append(_note(f"<code>{stage}/metrics.jsonl</code> is missing or empty.", "notrun"))
            continue
        plots = [line_plot(title, ylabel, [(name, *series(rows, key)) for name, key in lines])
                 for title, ylabel, lines in panels]
        used = {key for _, _, lines in panels for _, key in lines} | {"step", "time"}
        extra = sorted(k for k in rows[-1] if k not in used and number(rows[-1][k]) is not None)
        out.append(f"<p class=note>{len(rows)} steps logged, last step {_fmt(rows[-1].get('step'))}"
                   + (f"; last values: " + ", ".join(f"{esc(k)} {number(rows[-1][k]):.4g}" for k in extra[:8]) if extra else "")
                   + "</p>")
        out.append("<div class=plots>" + "".join(p for p in plots if p) + "</div>")
    return "\n".join(out)


def _evaluation(run_dir: Path) -> str:
    if not (run_dir / "eval").is_dir():
        return _not_run("eval", "Run <code>tiller eval --config FILE</code> after training a policy.")
    labels = eval_summaries(run_dir)
    if not labels:
        return _note("no policy evaluation (<code>eval/&lt;label&gt;.json</code>) in this run.", "notrun")
    # A column per policy, a row per figure: a dozen figures across would not fit the page's
    # width without wrapping every cell onto several lines.
    figures: list[tuple[str, Callable[[dict], str]]] = [
        ("prompts", lambda s: _fmt(s.get("n"))),
        ("win rate [95% CI]", lambda s: _ci(s.get("win_rate"), s.get("ci_low"), s.get("ci_high"))),
        ("wins / ties / losses", lambda s: f"{_count(s.get('wins'))} / {_count(s.get('ties'))} / {_count(s.get('losses'))}"),
        ("length-controlled win rate [95% CI]", lambda s: _ci(s.get("lc_win_rate"), s.get("lc_ci_low"), s.get("lc_ci_high"))),
        ("guarded win rate [95% CI]",
         lambda s: _ci(s.get("guarded_win_rate"), s.get("guarded_ci_low"), s.get("guarded_ci_high"))),
        ("degenerate answers policy / reference",
         lambda s: f"{_count(s.get('degenerate_policy'))} / {_count(s.get('degenerate_reference'))}"),
        ("constant answers vs reference: " + " / ".join(CONSTANT_ANSWERS) + " (judge mean)",
         lambda s: _constant_answers_cell(s.get("constant_answers"))),
        ("judge reward: policy", lambda s: _fmt(s.get("reward_policy_mean"), signed=True)),
        ("judge reward: reference", lambda s: _fmt(s.get("reward_reference_mean"), signed=True)),
        ("judge improvement [95% CI]", lambda s: _ci(s.get("reward_improvement"), s.get("reward_improvement_ci_low"),
                                                     s.get("reward_improvement_ci_high"), signed=True)),
        ("length ratio", lambda s: _fmt(s.get("length_ratio"), 2)),
        ("truncated: policy", lambda s: _pct(s.get("truncated_policy"))),
        ("truncated: reference", lambda s: _pct(s.get("truncated_reference"))),
        ("KL (nats / answer)", lambda s: _fmt(s.get("kl_mean"))),
    ]
    has_opt = any("optimized_rm_win_rate" in s for _, s in labels)
    if has_opt:
        figures += [("optimized RM: policy / reference", lambda s: f"{_fmt(s.get('optimized_rm_policy_mean'), signed=True)}"
                                                                  f" / {_fmt(s.get('optimized_rm_reference_mean'), signed=True)}"),
                    ("optimized RM win rate", lambda s: _fmt(s.get("optimized_rm_win_rate")))]

    def cell(s: dict, figure: Callable[[dict], str], first: bool) -> str:
        if "error" in s:  # the unreadable summary's column says why, once
            return _note(esc(s["error"]), "error") if first else ""
        return figure(s)

    rows = [[name, *(cell(s, figure, i == 0) for _, s in labels)] for i, (name, figure) in enumerate(figures)]
    header = ["", *(f"<b>{esc(label)}</b>" for label, _ in labels)]
    out = _policies_table(run_dir) + _table(header, rows, "num eval")
    details = []
    for label, s in labels:
        if "error" in s:
            continue
        details.append(f"<li><b>{esc(label)}</b>: policy <code>{esc(s.get('policy'))}</code> vs reference "
                       f"<code>{esc(s.get('reference'))}</code>, judged by <code>{esc(s.get('judge'))}</code>; "
                       f"mean length {_fmt(s.get('policy_mean_length'), 1)} vs {_fmt(s.get('reference_mean_length'), 1)} tokens; "
                       f"{_fmt(s.get('seconds'), 0)} s</li>")
    out += f"<ul class=small>{''.join(details)}</ul>"
    out += _note("Win rate: share of prompts where the judge scores the policy's answer above the reference's (ties count "
                 "half), with a 95% interval. Improvement: mean of the paired differences in judge reward, with a 95% "
                 "interval (it weighs how much better, not only whether). Truncated: answers that hit the token limit without an end-of-sequence token. "
                 "KL: KL(π &#8214; π<sub>ref</sub>) of the next-token distributions at each token of the policy's own "
                 "answers, summed over the answer (exact, so never negative, also on greedy answers). "
                 + ("A large gap between the optimized reward model's win rate and the judge's is a sign of reward hacking."
                    if has_opt else ""))
    out += _note("Degenerate: an answer of at least 8 words of which half the word 4-grams repeat an earlier one "
                 "(a loop), or at least 8 words of which at most one in ten has a letter (numbers and punctuation: "
                 "counters like <code>1. 1. 1. 2. 3.</code>), or at least 32 characters of which half are one "
                 "unit of 1 to 32 characters repeated (<code>1.1.1.1</code>, <code>!!!!</code>); "
                 "<code>tiller.degeneration</code> has the measures. Guarded win rate: the win rate with every "
                 "degenerate policy answer against a non-degenerate reference answer counted as a loss, whatever "
                 "the judge scored. A judge that scores degenerate answers above real ones shows as a gap between "
                 "the two win rates.")
    out += _note("Length-controlled win rate: a logistic regression of the verdict (win 1, tie 0.5, loss 0) on the "
                 "difference in answer length (policy minus reference, in tokens, divided by its standard deviation), "
                 "read off at zero length difference, with a bootstrap 95% interval (1,000 resamples of the prompts); "
                 "<code>tiller.length_control</code>. A raw win rate well above it means the judge rewards length. "
                 "Constant answers: the judge's win rate against the reference's answers (and its mean score) for an "
                 "answer that says nothing, on every prompt: the empty answer, "
                 "<code>I'm sorry, I can't help with that.</code> and <code>You asked: &lt;the question&gt;</code>. "
                 "A judge that such an answer beats often is not measuring quality.")
    for label, s in labels:
        if "error" not in s:
            out += _degenerate_answers(run_dir, label, s)
    return out


def _policies_table(run_dir: Path) -> str:
    """eval/policies.json as a table with one column per policy stage, when it holds several:
    the same reference, prompts and judge for all, so the columns compare (the table below has
    a row per eval/<label>.json, some of which may be against other references)."""
    try:
        side = policies_summary(run_dir)
    except (ValueError, OSError) as e:
        return _note(f"<code>eval/policies.json</code> cannot be read: {esc(type(e).__name__)}: {esc(e)}", "error")
    if not side or len(side.get("stages") or []) < 2:
        return ""
    stages = side["stages"]
    p = {x: side.get("policies", {}).get(x, {}) for x in stages}
    rows = [
        ("started from", lambda s: f"<code>{esc(s.get('started_from_label', s.get('started_from')))}</code>"),
        ("win rate [95% CI]", lambda s: _ci(s.get("win_rate"), s.get("ci_low"), s.get("ci_high"))),
        ("guarded win rate [95% CI]",
         lambda s: _ci(s.get("guarded_win_rate"), s.get("guarded_ci_low"), s.get("guarded_ci_high"))),
        ("length-controlled win rate [95% CI]", lambda s: _ci(s.get("lc_win_rate"), s.get("lc_ci_low"), s.get("lc_ci_high"))),
        ("judge improvement [95% CI]", lambda s: _ci(s.get("reward_improvement"), s.get("reward_improvement_ci_low"),
                                                     s.get("reward_improvement_ci_high"), signed=True)),
        ("KL (nats / answer)", lambda s: _fmt(s.get("kl_mean"))),
        ("length ratio", lambda s: _fmt(s.get("length_ratio"), 2)),
        ("degenerate answers policy / reference",
         lambda s: f"{_count(s.get('degenerate_policy'))} / {_count(s.get('degenerate_reference'))}"),
        ("time (s)", lambda s: _fmt(s.get("seconds"), 0)),
    ]
    if all("seeds" in p[x] for x in stages):  # eval.seeds: the spread of each figure over the seeds
        def spread(key: str, signed: bool = False) -> Callable[[dict], str]:
            def cell(s: dict) -> str:
                v = s["seeds"]["spread"].get(key, {})
                return (f"{_fmt(v.get('mean'), signed=signed)} &plusmn; {_fmt(v.get('sd'))} <span class=ci>"
                        f"[{_fmt(v.get('min'), signed=signed)}, {_fmt(v.get('max'), signed=signed)}]</span>")
            return cell

        k = len(side.get("seeds") or [])
        rows += [(f"win rate over {k} seeds: mean &plusmn; sd [min, max]", spread("win_rate")),
                 (f"guarded win rate over {k} seeds", spread("guarded_win_rate")),
                 (f"judge improvement over {k} seeds", spread("reward_improvement", signed=True))]
    table = _table(["", *(f"<b>{esc(x)}</b>" for x in stages)],
                   [[name, *(cell(p[x]) for x in stages)] for name, cell in rows], "num eval")
    return (f"<h4>Policy stages side by side (<code>eval/policies.json</code>)</h4>" + table
            + _note(f"Every stage against the same reference <code>{esc(side.get('reference'))}</code> "
                    f"({esc(side.get('reference_source'))}), on the same {_fmt(side.get('n'))} prompts, judged by "
                    f"<code>{esc(side.get('judge'))}</code>; the reference's answers were generated and scored once "
                    f"({_fmt(side.get('reference_seconds'), 0)} s, not in the stages' times). A stage that started "
                    "from another stage's output is still measured against this reference."))


CONSTANT_ANSWERS = ("empty", "refusal", "restatement")  # the evaluation's sanity rows, in its order


def _constant_answers_cell(constant: Any) -> str:
    """'0.10 / 0.90 / 0.82 (+0.000 / +5.600 / +3.120)': win rates and mean judge scores of the
    constant answers; a dash for summaries written before they existed."""
    if not isinstance(constant, dict) or not constant:
        return "&ndash;"
    rows = [constant.get(kind) if isinstance(constant.get(kind), dict) else {} for kind in CONSTANT_ANSWERS]
    rates = " / ".join(_fmt(r.get("win_rate"), 2) for r in rows)
    means = " / ".join(_fmt(r.get("mean_score"), signed=True) for r in rows)
    return f"{rates} <span class=ci>({means})</span>"


def _count(value: Any) -> str:
    """A count written as a float (17.0 in the summary JSON) shows as 17."""
    v = number(value)
    return _fmt(int(v)) if v is not None and math.isfinite(v) and v == int(v) else _fmt(value)


def _degenerate_answers(run_dir: Path, label: str, s: dict) -> str:
    """The policy's degenerate answers of one evaluation, each beside the reference's answer."""
    title = f"<h4 id='{_degenerate_anchor(label)}'>Degenerate policy answers: {esc(label)}</h4>"
    rows = eval_samples(run_dir, s)
    if not rows:
        return title + _note(f"no <code>eval/{esc(s['_stem'])}_samples.jsonl</code>.")
    if not any("policy_degenerate" in r for r in rows):
        return title + _note(f"<code>eval/{esc(s['_stem'])}_samples.jsonl</code> has no degeneration measures "
                             "(written before they existed).")
    flagged = [(i, r) for i, r in enumerate(rows) if r.get("policy_degenerate")]
    if not flagged:
        return title + _note(f"none of the {len(rows)} policy answers is degenerate.")
    shown = flagged[:MAX_DEGENERATE_SHOWN]
    body = []
    for i, r in shown:
        ps, rs = number(r.get("policy_score")), number(r.get("reference_score"))
        verdict = ""
        if ps is not None and rs is not None:
            verdict = ("<span class=bad>the judge prefers it</span>" if ps > rs else
                       "the judge ties it" if ps == rs else "the judge scores it lower")
        reasons = ", ".join((r.get("policy_repetition") or {}).get("reasons") or [])
        reference = " &middot; the reference's answer is degenerate too" if r.get("reference_degenerate") else ""
        body.append(f"<tr class=prompt><td colspan=2><span class=idx>#{i + 1}</span> {esc(reasons)} &middot; {verdict}"
                    f"{reference}{_prompt_html(r.get('prompt'))}</td></tr>")
        body.append(f"<tr><td>{_answer_html(r, 'reference')}</td><td>{_answer_html(r, 'policy')}</td></tr>")
    more = f"; the first {len(shown)} are listed" if len(shown) < len(flagged) else ""
    return (title + _note(f"{len(flagged)} of {len(rows)} policy answers are degenerate{more} (# is the prompt's "
                          f"position in <code>eval/{esc(s['_stem'])}_samples.jsonl</code>; scores are the judge's).")
            + f"<table class=sbs><thead><tr><th>reference <code>{esc(s.get('reference', ''))}</code></th>"
              f"<th>{esc(label)} (degenerate)</th></tr></thead><tbody>{''.join(body)}</tbody></table>")


def _degenerate_anchor(label: str) -> str:
    return "degenerate-" + "".join(c if c.isalnum() else "-" for c in label)


# ----------------------------------------------------------------------------- summary

COIN_FLIP = 0.5  # the win rate of a policy whose answers the judge cannot tell from the reference's


def verdict(low: Any, high: Any, null: float = COIN_FLIP) -> str | None:
    """'better', 'worse' or 'not distinguishable' from a 95% interval against the value that
    means no difference (0.5 for a win rate, 0 for an improvement); None without an interval."""
    lo, hi = number(low), number(high)
    if lo is None or hi is None:
        return None
    return "better" if lo > null else "worse" if hi < null else "not distinguishable"


def _verdict_sentence(label: str, s: dict) -> str:
    """One sentence: the held-out judge's verdict on a policy, from its win rate's interval; the
    judge-reward improvement's interval is named too where it says otherwise."""
    said = verdict(s.get("ci_low"), s.get("ci_high"))
    if said is None:
        return f"{esc(label)}: no win rate interval in its summary."
    where = {"better": "lies above", "worse": "lies below", "not distinguishable": "includes"}
    words = {"better": "<span class=good>better than the reference</span>",
             "worse": "<span class=bad>worse than the reference</span>",
             "not distinguishable": "<span class=even>not distinguishable from the reference</span>"}
    sentence = (f"<b>{esc(label)}</b> is {words[said]} under the held-out judge: its win rate's 95% interval "
                f"[{_fmt(s.get('ci_low'))}, {_fmt(s.get('ci_high'))}] {where[said]} 0.5")
    by_reward = verdict(s.get("reward_improvement_ci_low"), s.get("reward_improvement_ci_high"), null=0.0)
    if by_reward is not None and by_reward != said:
        sentence += (f", though the judge-reward improvement's interval [{_fmt(s.get('reward_improvement_ci_low'), signed=True)}, "
                     f"{_fmt(s.get('reward_improvement_ci_high'), signed=True)}] {where[by_reward]} 0")
    return sentence + "."


def curve_parting(rows: list[dict]) -> dict | None:
    """Where one stage's over-optimization curve parts: after the checkpoint where the held-out
    judge's gain peaks, the last checkpoint has a lower judge gain but a higher gain under the
    reward model the policy was optimized against. Rows in step order (eval/curve.jsonl); None
    when the curve does not part, or its rows lack the optimized reward model's scores."""
    points = []
    for r in rows:
        step = number(r.get("step"))
        judge = _gain(r, "reward_policy_mean", "reward_reference_mean")
        optimized = _gain(r, "optimized_rm_policy_mean", "optimized_rm_reference_mean")
        if step is not None and judge is not None and optimized is not None:
            points.append((step, judge, optimized))
    if len(points) < 2:
        return None
    peak = max(points, key=lambda p: p[1])  # the first checkpoint with the highest judge gain
    last = points[-1]
    if last[1] < peak[1] and last[2] > peak[2]:
        return {"from_step": peak[0], "to_step": last[0], "judge": (peak[1], last[1]), "optimized": (peak[2], last[2])}
    return None


def _gain(row: dict, policy_key: str, reference_key: str) -> float | None:
    policy, reference = number(row.get(policy_key)), number(row.get(reference_key))
    return None if policy is None or reference is None else policy - reference


def _evaluated_policies(run_dir: Path) -> list[tuple[str, dict]]:
    """The policies the summary speaks of: the stages of eval/policies.json when it holds several
    (all against one reference, so their lines compare), else every eval/<label>.json."""
    side = policies_summary(run_dir)
    if side and len(side.get("stages") or []) >= 2:
        return [(x, {**side.get("policies", {}).get(x, {}), "_stem": x}) for x in side["stages"]]
    return eval_summaries(run_dir)


def _warnings(run_dir: Path, policies: list[tuple[str, dict]]) -> list[str]:
    """Degeneration, over-optimization and judge warnings, each linking to the section that shows it."""
    out = []
    for label, s in policies:
        if "error" in s:
            continue
        bad, ref = number(s.get("degenerate_policy")), number(s.get("degenerate_reference"))
        if bad is not None and ref is not None and bad > ref:
            out.append(f"<b>{esc(label)}</b>: {_count(bad)} of {_fmt(s.get('n'))} policy answers are degenerate, "
                       f"against {_count(ref)} of the reference's. <a href='#{_degenerate_anchor(label)}'>the answers</a>")
        raw, guarded = verdict(s.get("ci_low"), s.get("ci_high")), verdict(s.get("guarded_ci_low"), s.get("guarded_ci_high"))
        if raw and guarded and raw != guarded:
            out.append(f"<b>{esc(label)}</b>: counting degenerate answers as losses changes the verdict to "
                       f"{guarded}: guarded win rate {_ci(s.get('guarded_win_rate'), s.get('guarded_ci_low'), s.get('guarded_ci_high'))}. "
                       "<a href='#evaluation'>evaluation</a>")
    for stage, rows in curve_rows(run_dir).items():
        parted = curve_parting(rows)
        if parted:
            out.append(f"<b>{esc(stage)}</b>: over-optimization: from step {parted['from_step']:g} to step "
                       f"{parted['to_step']:g} the optimized reward model's gain rose "
                       f"{_fmt(parted['optimized'][0], signed=True)} &rarr; {_fmt(parted['optimized'][1], signed=True)} "
                       f"while the held-out judge's fell {_fmt(parted['judge'][0], signed=True)} &rarr; "
                       f"{_fmt(parted['judge'][1], signed=True)}. <a href='#curve'>the curve</a>")
    # The constant answers are scored against the reference's answers, not the policy's: stages
    # evaluated against one reference share them, so one line names every stage it applies to.
    beaten: dict[str, list[str]] = {}
    for label, s in policies:
        constant = s.get("constant_answers") if isinstance(s.get("constant_answers"), dict) else {}
        rows = [(kind, constant[kind]) for kind in CONSTANT_ANSWERS if isinstance(constant.get(kind), dict)]
        winners = [f"{kind} {_ci(row.get('win_rate'), row.get('ci_low'), row.get('ci_high'))}" for kind, row in rows
                   if (number(row.get("win_rate")) or 0.0) > COIN_FLIP]
        if winners:
            line = ("the judge prefers answers that say nothing to the reference's answers more often than not (win rate "
                    "of each constant answer: " + ", ".join(winners) + "); it is not measuring answer quality, and "
                    "the verdict above means little.")
            beaten.setdefault(line, []).append(label)
    for line, labels in beaten.items():
        out.append(f"<b>{esc(', '.join(labels))}</b>: {line} <a href='#evaluation'>evaluation</a>")
    return out


def _summary(run_dir: Path, shown: list[str], sections: list[tuple[str, str]]) -> str:
    policies = _evaluated_policies(run_dir) if (run_dir / "eval").is_dir() else []
    out = []
    readable = [(label, s) for label, s in policies if "error" not in s]
    if readable:
        rows = [[_verdict_sentence(label, s),
                 _ci(s.get("win_rate"), s.get("ci_low"), s.get("ci_high")),
                 _ci(s.get("guarded_win_rate"), s.get("guarded_ci_low"), s.get("guarded_ci_high")),
                 _ci(s.get("reward_improvement"), s.get("reward_improvement_ci_low"), s.get("reward_improvement_ci_high"),
                     signed=True),
                 _fmt(s.get("kl_mean")), _fmt(s.get("length_ratio"), 2)] for label, s in readable]
        out.append(_table(["verdict of the held-out judge", "win rate [95% CI]", "guarded win rate [95% CI]",
                           "judge improvement [95% CI]", "KL (nats / answer)", "length ratio"], rows, "num summary"))
        first = readable[0][1]
        source = f" ({esc(first['reference_source'])})" if first.get("reference_source") else ""
        out.append(_note(f"Against the reference <code>{esc(first.get('reference'))}</code>{source} on "
                         f"{_fmt(first.get('n'))} held-out prompts, judged by <code>{esc(first.get('judge'))}</code>. "
                         "Win rate: share of prompts where the judge scores the policy's answer higher (ties half); "
                         "guarded: degenerate answers count as losses; improvement: mean judge-reward difference; "
                         "KL: nats per answer from the reference; length ratio: policy's mean length over the reference's."))
    for label, s in policies:
        if "error" in s:
            out.append(_note(f"<b>{esc(label)}</b>: the summary cannot be read: {esc(s['error'])}", "error"))
    if not policies:
        if "eval" in shown:
            out.append(_note("No policy evaluation in this run yet, so no verdict: run <code>tiller eval --config FILE</code>."
                             , "notrun"))
        else:
            out.append(_note("This run's pipeline has no eval stage, so there is no verdict; the sections below show "
                             "what was trained."))
    warnings = _warnings(run_dir, readable)
    if warnings:
        out.append("<ul class=warnings>" + "".join(f"<li>{w}</li>" for w in warnings) + "</ul>")
    elif readable:
        checked = "the policy's degenerate answers, the constant answers against the reference" + (
            ", the over-optimization curve" if curve_rows(run_dir) else
            " (no over-optimization curve: <code>tiller eval curve</code> draws one)")
        out.append(f"<p class=ok>No warning. Checked: {checked}.</p>")
    links = " ".join(f"<a href='#{a}'>{esc(t)}</a>" for a, t in sections)
    out.append(f"<nav>Details: {links}</nav>")
    return "\n".join(out)


def _curve(run_dir: Path) -> str:
    """`tiller eval curve`: per policy stage, its figures at each checkpoint and the plots."""
    out = []
    for stage, rows in curve_rows(run_dir).items():
        has_rm = any("optimized_rm_policy_mean" in r for r in rows)
        table = []
        for r in rows:
            gain = (number(r.get("reward_policy_mean")) or 0.0) - (number(r.get("reward_reference_mean")) or 0.0)
            row = [esc(r.get("step", "")), esc(r.get("checkpoint", "")), _fmt(r.get("kl_mean")),
                   f"{_fmt(r.get('reward_policy_mean'), signed=True)} <span class=ci>({_fmt(gain, signed=True)})</span>"]
            if has_rm:
                rm_gain = (number(r.get("optimized_rm_policy_mean")) or 0.0) - (number(r.get("optimized_rm_reference_mean")) or 0.0)
                row.append(f"{_fmt(r.get('optimized_rm_policy_mean'), signed=True)} "
                           f"<span class=ci>({_fmt(rm_gain, signed=True)})</span>" if "optimized_rm_policy_mean" in r
                           else "&ndash;")
            row += [_ci(r.get("win_rate"), r.get("ci_low"), r.get("ci_high")),
                    _ci(r.get("guarded_win_rate"), r.get("guarded_ci_low"), r.get("guarded_ci_high")),
                    _fmt(r.get("policy_mean_length"), 1), _count(r.get("degenerate_policy"))]
            table.append(row)
        header = ["step", "model", "KL (nats / answer)", "judge reward (gain)"] + (
            ["optimized RM reward (gain)"] if has_rm else []) + [
            "judge win rate [95% CI]", "guarded win rate [95% CI]", "mean length (tokens)", "degenerate answers"]
        first = rows[0]
        out.append(f"<h3>{esc(stage)}</h3>" + _table(header, table, "num")
                   + _note(f"{_fmt(first.get('n'))} held-out prompts; reference <code>{esc(first.get('reference'))}"
                           f"</code>, judge <code>{esc(first.get('judge'))}</code>."))
        plots = [curve_plot(stage, rows, "kl_mean", "KL(π ‖ π_ref), nats per answer"),
                 curve_plot(stage, rows, "step", _step_label(stage))]
        out.append("<div class=plots>" + "".join(p for p in plots if p) + "</div>")
    out.append(_note("Each row is one model of the stage: its starting model (step 0: the reference itself, so KL 0 and "
                     "every verdict a tie), each checkpoint kept, and the final model, all answering the same held-out "
                     "prompts, scored by the same judge (and by the reward model the policy was optimized against), "
                     "against the same reference answers. Gain: the model's mean reward minus the reference answers' "
                     "mean under the same scorer. Over-optimization shows as the two gains parting: the optimized "
                     "reward model's still rising while the held-out judge's flattens or falls."))
    return "\n".join(out)


def _lengths(run_dir: Path) -> str:
    if not (run_dir / "eval").is_dir():
        return _not_run("eval")
    labels = [(label, s) for label, s in eval_summaries(run_dir) if "error" not in s]
    if not labels:
        return _note("no policy evaluation in this run.", "notrun")
    plots = []
    for label, s in labels:
        rows = eval_samples(run_dir, s)
        policy = [v for v in (number(r.get("policy_tokens")) for r in rows) if v is not None]
        reference = [v for v in (number(r.get("reference_tokens")) for r in rows) if v is not None]
        plot = length_histogram(label, policy, reference)
        plots.append(plot or _note(f"{esc(label)}: no <code>eval/{esc(s['_stem'])}_samples.jsonl</code>."))
    return "<div class=plots>" + "".join(plots) + "</div>"


def _prompt_html(prompt: Any) -> str:
    """The last user turn in full, earlier turns folded away."""
    if isinstance(prompt, str):
        return _text_block(prompt)
    if not isinstance(prompt, list) or not prompt:
        return _text_block(json.dumps(prompt, ensure_ascii=False))
    last = prompt[-1] if isinstance(prompt[-1], dict) else {"role": "?", "content": prompt[-1]}
    out = ""
    if len(prompt) > 1:
        turns = "".join(f"<div class=turn><b>{esc(m.get('role', '?') if isinstance(m, dict) else '?')}:</b> "
                        f"{esc(m.get('content', '') if isinstance(m, dict) else m)}</div>" for m in prompt[:-1])
        out += f"<details><summary>{len(prompt) - 1} earlier turn(s)</summary>{turns}</details>"
    return out + f"<div class=text><b>{esc(last.get('role', 'user'))}:</b> {esc(last.get('content', ''))}</div>"


def _answer_html(row: dict, who: str) -> str:
    eos = row.get(f"{who}_has_eos")
    cut = " <span class=bad>cut at the limit</span>" if eos is False else ""
    return (_text_block(row.get(who)) +
            f"<div class=score>score {_fmt(row.get(f'{who}_score'), signed=True)} &middot; "
            f"{_fmt(row.get(f'{who}_tokens'))} tokens{cut}</div>")


def _side_by_side(run_dir: Path) -> str:
    if not (run_dir / "eval").is_dir():
        return _not_run("eval")
    labels = [(label, s) for label, s in eval_summaries(run_dir) if "error" not in s]
    if not labels:
        return _note("no policy evaluation in this run.", "notrun")
    out = []
    for label, s in labels:
        rows = eval_samples(run_dir, s)
        out.append(f"<h3>{esc(label)}</h3>")
        if not rows:
            out.append(_note(f"no <code>eval/{esc(s['_stem'])}_samples.jsonl</code>."))
            continue
        shown = rows[:NUM_SIDE_BY_SIDE]
        body = []
        for i, r in enumerate(shown):
            ps, rs = number(r.get("policy_score")), number(r.get("reference_score"))
            verdict = ""
            if ps is not None and rs is not None:
                verdict = ("<span class=good>policy wins</span>" if ps > rs else
                           "<span class=bad>reference wins</span>" if ps < rs else "tie")
            kl = f" &middot; KL {_fmt(r.get('kl'))} nats" if r.get("kl") is not None else ""
            body.append(f"<tr class=prompt><td colspan=2><span class=idx>#{i + 1}</span> {verdict}{kl}"
                        f"{_prompt_html(r.get('prompt'))}</td></tr>")
            body.append(f"<tr><td>{_answer_html(r, 'reference')}</td><td>{_answer_html(r, 'policy')}</td></tr>")
        out.append(f"<table class=sbs><thead><tr><th>before: reference <code>{esc(s.get('reference', ''))}</code></th>"
                   f"<th>after: {esc(label)} <code>{esc(s.get('policy', ''))}</code></th></tr></thead>"
                   f"<tbody>{''.join(body)}</tbody></table>")
        out.append(_note(f"The first {len(shown)} of {len(rows)} evaluation prompts, in file order (not picked); "
                         f"scores are the judge's."))
    return "\n".join(out)


# ----------------------------------------------------------------------------- page

CSS = """
body{font-family:-apple-system,BlinkMacSystemFont,"Segoe UI",Helvetica,Arial,sans-serif;margin:0 auto;max-width:1180px;
padding:16px 24px;color:#1f2328;line-height:1.45;font-size:14px}
h1{font-size:24px;margin:8px 0 4px}h2{font-size:19px;border-bottom:2px solid #d0d7de;padding-bottom:4px;margin-top:32px}
h3{font-size:16px;margin:22px 0 8px}h4{font-size:14px;margin:14px 0 6px}h5{font-size:13px;margin:10px 0 4px}
table{border-collapse:collapse;margin:6px 0 10px}th,td{border:1px solid #d0d7de;padding:4px 8px;vertical-align:top}
th{background:#f6f8fa;text-align:left;font-weight:600}table.num td{text-align:right}table.num td:first-child{text-align:left}
table.kv td:first-child{color:#57606a}table.kv thead{display:none}
.ci{color:#57606a;font-size:12px;white-space:nowrap}.ind{padding-left:16px}.group{font-weight:600;color:#57606a}.b{font-weight:600}
.notrun{color:#8a6d00;background:#fff8c5;border:1px solid #eedd88;padding:6px 10px;border-radius:4px}
.error{color:#82071e;background:#ffebe9;border:1px solid #ffcecb;padding:6px 10px;border-radius:4px}
.note{color:#57606a;font-size:13px}.small{font-size:13px;color:#57606a}
.found{background:#dafbe1;border:1px solid #aceebb;border-radius:10px;padding:1px 8px;margin-right:4px}
.missing{background:#f6f8fa;border:1px solid #d0d7de;color:#8c959f;border-radius:10px;padding:1px 8px;margin-right:4px;
text-decoration:line-through}
.plots{display:grid;grid-template-columns:repeat(2,minmax(0,1fr));grid-auto-flow:row dense;gap:8px;margin:8px 0}
.plots img{max-width:100%;border:1px solid #eaeef2}.plots img.wide,.plots>p{grid-column:1/-1}
.row{display:flex;gap:24px;flex-wrap:wrap}
table.num td{white-space:nowrap}table.summary td:first-child{white-space:normal;min-width:360px;text-align:left}
table.eval td:first-child{white-space:normal;max-width:360px}
.warnings{background:#fff8c5;border:1px solid #eedd88;border-radius:4px;padding:6px 10px 6px 28px;margin:8px 0}
.warnings li{margin:3px 0}.ok{color:#1a7f37}.even{color:#8a6d00;font-weight:600}
section#summary h2{margin-top:12px}nav{margin:8px 0}
.text{white-space:pre-wrap;word-break:break-word;max-height:320px;overflow:auto;font-size:13px}
.pre{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;background:#f6f8fa;padding:6px}
pre{background:#f6f8fa;padding:8px;overflow:auto;font-size:12px;max-height:480px}
.score{color:#57606a;font-size:12px;margin-top:4px;border-top:1px dashed #d0d7de;padding-top:2px}
.good{color:#1a7f37;font-weight:600}.bad{color:#cf222e;font-weight:600}
table.sbs{table-layout:fixed;width:100%}table.sbs td{width:50%}table.sbs tr.prompt td{background:#f6f8fa}
table.samples{table-layout:fixed;width:100%}table.samples td:last-child,table.samples th:last-child{width:60px}
.idx{font-weight:600;margin-right:6px}.turn{font-size:12px;color:#57606a;white-space:pre-wrap}
details{margin:6px 0}summary{cursor:pointer;font-weight:600}nav a{margin-right:12px}code{font-size:12px}
"""

SECTIONS = (
    ("configs", "Resolved configs"),
    ("data", "Data"),
    ("reward", "Reward models"),
    ("rloo", "RLOO training"),
    ("ppo", "PPO training"),
    ("sft-dpo", "SFT and DPO training"),
    ("evaluation", "Evaluation"),
    ("lengths", "Completion lengths"),
    ("samples", "Sample answers"),
)


CURVE_SECTION = ("curve", "Over-optimization curve")  # after Evaluation, when eval/curve.jsonl exists
# The stages a section is about: it is left out when none of them is in the run's pipeline or folder.
SECTION_STAGES = {"data": ("data",), "reward": ("reward", "judge"), "rloo": ("rloo",), "ppo": ("ppo",), "sft-dpo": ("sft", "dpo"),
                  "evaluation": ("eval",), "lengths": ("eval",), "samples": ("eval",)}


def render(run_dir: Path) -> str:
    run_dir = Path(run_dir)
    stages = stages_found(run_dir)
    shown = shown_stages(run_dir, stages)
    if (run_dir / "eval" / "reward_model.json").is_file() or (run_dir / "eval" / "judge_model.json").is_file():
        shown += [s for s in ("reward",) if s not in shown]  # `tiller eval reward` reports live in Reward models
    bodies: dict[str, Callable[[], str]] = {
        "configs": lambda: _configs(run_dir, stages),
        "data": lambda: _data(run_dir),
        "reward": lambda: _reward_models(run_dir, shown),
        "rloo": lambda: _policy_optimization(run_dir, "rloo"),
        "ppo": lambda: _policy_optimization(run_dir, "ppo"),
        "sft-dpo": lambda: _sft_dpo(run_dir, shown),
        "evaluation": lambda: _evaluation(run_dir),
        "lengths": lambda: _lengths(run_dir),
        "samples": lambda: _side_by_side(run_dir),
        "curve": lambda: _curve(run_dir),
    }
    sections = [(a, t) for a, t in SECTIONS if any(s in shown for s in SECTION_STAGES.get(a, STAGES))]
    if curve_rows(run_dir):  # the curve's section exists only where `tiller eval curve` ran
        at = next((i + 1 for i, (a, _) in enumerate(sections) if a == "evaluation"), len(sections))
        sections.insert(at, CURVE_SECTION)
    parts = [
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>",
        f"<title>tiller report: {esc(run_dir.resolve().name)}</title><style>{CSS}</style></head><body>",
        f"<h1>tiller report: {esc(run_dir.resolve().name)}</h1>",
        _section("summary", "Summary", lambda: _summary(run_dir, shown, [("run", "Run")] + sections)),
        _section("run", "Run", lambda: _header(run_dir, stages, shown)),
    ]
    parts += [_section(anchor, title, bodies[anchor]) for anchor, title in sections]
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_report(run_dir: Path) -> Path:
    """Write `<run_dir>/report.html` (atomically) and return its path."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir} is not a run folder (no such directory)")
    text = render(run_dir)
    path = run_dir / "report.html"
    # open(..., "x") rather than mkstemp: the file gets the usual permissions (umask), not 0600
    tmp = run_dir / f".report.{os.getpid()}.{uuid.uuid4().hex[:8]}.html.tmp"
    try:
        with open(tmp, "x", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
