"""`tiller data`: read each split, convert rows to records, filter, and write them for the
later stages, with a count for every row dropped.

Output, in `<run_dir>/data/`:
    <split>.pairs.jsonl          PreferencePair dicts (reward model, DPO)
    <split>.prompts.jsonl        Prompt dicts, deduplicated, tie rows included (RLOO, evaluation)
    <split>.conversations.jsonl  Conversation dicts (SFT): the data itself for `messages` data,
                                 the prompt + chosen answer of every pair otherwise
    stats.json                   the counts printed in the table
    config.yaml                  the resolved config this stage ran with
    DONE                         written last; the pipeline skips the stage when it exists
Every file is written to a temporary name and renamed, so a killed run leaves no half file, and
DONE is removed first so it never vouches for a mix of old and new files.
The later stages read these files with `tiller.data.run_files`.

With data.validation_fraction > 0, `validation` is not read from the source: it is the part of
train whose prompts `splits.is_held_out` picks (all rows of a prompt on one side), printed with its
counts below the table; the reward and judge halves (`reward.train_subset`) then split what stays
in train, so neither ever sees a validation prompt.

A split that gives nothing to train on stops the stage with an error instead of writing empty
files: an empty file, a file whose every row is bad (with data.on_bad_row: skip), or one whose
every valid row is dropped by the filters; the error names the filter and the setting to change.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional

from tiller.config import Config, DataConfig, to_yaml
from tiller.data.adapters import get_adapter, prompt_of
from tiller.data.filters import dedupe_prompts, domain_ok, language_ok, lowered, prompt_token_counts, role_marker
from tiller.data.records import Conversation, DataError, PreferencePair, Prompt
from tiller.data.run_files import data_dir
from tiller.data.sources import open_split
from tiller.data.splits import is_held_out, prompt_key
from tiller.data.stats import BAD_ROWS_SHOWN, NONE_KEY, SplitStats, render_bad_rows, render_table


@dataclass
class SplitData:
    pairs: list[PreferencePair] = field(default_factory=list)
    prompts: list[Prompt] = field(default_factory=list)
    conversations: list[Conversation] = field(default_factory=list)
    stats: SplitStats = field(default_factory=lambda: SplitStats(""))


def prepare_split(data: DataConfig, split: str, tokenizer, enable_thinking: Optional[bool] = None) -> SplitData:
    """Load one split, adapt every row, filter, and count. The tokenizer is the policy's: prompt
    length is measured on the text the policy will actually see."""
    return _prepare(data, split, tokenizer, enable_thinking)[split]


def prepare_held_out(data: DataConfig, tokenizer, enable_thinking: Optional[bool] = None,
                     split: str = "train", held_out: str = "validation") -> dict[str, SplitData]:
    """Read `split` once and divide it by prompt: the rows whose prompt is held out
    (`splits.is_held_out` with data.validation_fraction and data.validation_seed) make the split
    `held_out`, the others stay in `split`. No prompt is on both sides. Each side is counted as a
    split of its own (rows read, kept, dropped by reason); a bad row has no prompt to place it by,
    so it is counted under `split`, the split it was read from."""
    fraction, seed = data.validation_fraction, data.validation_seed

    def side_of(messages: list[dict]) -> str:
        return held_out if is_held_out(messages, fraction, seed) else split

    return _prepare(data, split, tokenizer, enable_thinking, side_of, held_out)


def _prepare(data: DataConfig, split: str, tokenizer, enable_thinking: Optional[bool],
             side_of: Optional[Callable[[list[dict]], str]] = None, held_out: Optional[str] = None) -> dict[str, SplitData]:
    """Read `split` and sort its rows into `split` (and `held_out`, by `side_of(prompt)`)."""
    source = open_split(data, split)
    adapt = get_adapter(data.format)
    sides = [split] + ([held_out] if held_out else [])
    labels = {side: source.label if side == split else f"{source.label}, held out of {split} by prompt" for side in sides}
    outs = {side: SplitData(stats=SplitStats(side, labels[side])) for side in sides}
    read_stats = outs[split].stats  # where rows without a prompt (bad rows) are counted
    languages, domains = lowered(data.languages), lowered(data.domains)
    first_bad: list[DataError] = []
    n_read = 0  # every row read from the source, whatever side it lands on

    def bad_row(err: DataError) -> None:
        if data.on_bad_row == "error":
            raise err
        read_stats.dropped[f"bad_row:{err.field or 'row'}"] += 1
        if len(read_stats.bad_rows) < BAD_ROWS_SHOWN:
            read_stats.bad_rows.append(str(err))
        if not first_bad:  # one warning per split, with the first example; the rest are counted
            first_bad.append(err)
            warnings.warn(f"skipping bad rows in split {split!r} (data.on_bad_row=skip); the first: {err}", stacklevel=2)

    def on_bad_json(err: DataError) -> None:
        nonlocal n_read
        n_read += 1
        read_stats.rows_read += 1  # a malformed line is a row read, so the accounting still adds up
        bad_row(err)

    # Pass 1: adapt and apply the cheap filters. Records that survive are measured in one batch.
    survivors = []  # (side, record)
    for index, row in source.rows(on_bad_json if data.on_bad_row == "skip" else None):
        if data.max_rows_per_split is not None and n_read >= data.max_rows_per_split:
            break
        n_read += 1
        try:
            record = adapt(row, source.where(index), index)
            extra = kept_columns(row, data.keep_columns, source.where(index))
        except DataError as err:
            read_stats.rows_read += 1
            bad_row(err)
            continue
        side = side_of(prompt_of(record)) if side_of else split
        stats = outs[side].stats
        stats.rows_read += 1
        stats.count_read(record.domain, record.language)
        if isinstance(record, Prompt):
            stats.ties += 1
        if not language_ok(record.language, languages):
            stats.dropped["language"] += 1
        elif not domain_ok(record.domain, domains):
            stats.dropped["domain"] += 1
        else:
            survivors.append((side, record, extra))

    # Pass 2: prompt length in tokens (batched), then sort each survivor into its outputs.
    prompts = [prompt_of(r) for _, r, _ in survivors]
    lengths = prompt_token_counts(tokenizer, prompts, enable_thinking)
    rl_prompts: dict[str, list[Prompt]] = {side: [] for side in sides}
    side_lengths: dict[str, list[int]] = {side: [] for side in sides}
    for (side, record, extra), prompt, n_tokens in zip(survivors, prompts, lengths):
        out, stats = outs[side], outs[side].stats
        side_lengths[side].append(n_tokens)
        if n_tokens > data.max_prompt_tokens:
            stats.dropped["prompt_too_long"] += 1
            continue
        rl_prompts[side].append(Prompt(prompt, record.domain, record.language, record.source_row, extra))
        marker = role_marker(record)
        if marker:
            stats.role_markers += 1
            if len(stats.role_marker_rows) < 5:
                stats.role_marker_rows.append(f"{source.where(record.source_row)}: {marker!r}")
        if isinstance(record, Prompt):  # a tie: no pair, but its prompt serves RL
            stats.dropped["tie"] += 1
            continue
        if isinstance(record, PreferencePair):
            out.pairs.append(record)
            chosen = prompt + [{"role": "assistant", "content": record.chosen}]
            out.conversations.append(Conversation(chosen, record.source_row, record.domain, record.language))
        else:
            out.conversations.append(record)
        stats.count_kept(record.domain, record.language)

    for side in sides:
        out, stats, kept_prompts = outs[side], outs[side].stats, rl_prompts[side]
        if data.dedupe_prompts:
            kept_prompts, n_dup = dedupe_prompts(kept_prompts)
            if n_dup:
                stats.prompts_dropped["duplicate_prompt"] = n_dup
        out.prompts = kept_prompts
        stats.pairs_kept = len(out.pairs)
        stats.conversations_kept = len(out.conversations)
        stats.prompts_kept = len(out.prompts)
        kept = stats.pairs_kept if data.format != "messages" else stats.conversations_kept
        assert stats.rows_read == kept + sum(stats.dropped.values()), "a row was lost without a count"
    assert n_read == sum(outs[side].stats.rows_read for side in sides), "a row was lost without a count"
    for side in sides:
        if outs[side].prompts:
            continue
        if side == split and held_out and outs[side].stats.rows_read == 0 and n_read:
            raise DataError(f"split {split!r} ({source.label})",
                            f"every prompt was held out for {held_out!r} (data.validation_fraction={data.validation_fraction}); lower it")
        if side == held_out and outs[side].stats.rows_read == 0:
            raise DataError(
                f"split {held_out!r} (held out of {split!r}, {source.label})",
                f"no prompt fell in the held-out part (data.validation_fraction={data.validation_fraction} of "
                f"{len({prompt_key(p) for p in prompts})} prompts); raise data.validation_fraction",
            )
        where = f"split {side!r} ({source.label})" if side == split else f"split {side!r} (held out of {split!r}, {source.label})"
        raise DataError(where, _nothing_left(data, outs[side].stats, side_lengths[side], first_bad))
    return outs


def kept_columns(row: dict, names: list[str], where: str) -> dict:
    """The fields of `row` named in data.keep_columns, for the prompt record's `extra`.

    A missing field is a data error (a bad row), not a null: a reward that checks a gold answer
    would otherwise score every completion of that prompt as wrong, silently."""
    extra = {}
    for name in names:
        if name not in row:
            raise DataError(where, f"missing, and data.keep_columns keeps it (the row has: {', '.join(sorted(map(str, row)))})",
                            name)
        extra[name] = row[name]
    return extra


def _nothing_left(data: DataConfig, stats: SplitStats, lengths: list[int], first_bad: list[DataError]) -> str:
    """Why a split gave no row at all, and what to change: the message of the error it raises."""
    if stats.rows_read == 0:
        return "no rows: the file is empty (or holds only blank lines)" if data.source == "local" else "no rows"
    bad = sum(n for reason, n in stats.dropped.items() if reason.startswith("bad_row:"))
    if bad == stats.rows_read:
        return f"all {bad} rows are bad and were skipped (data.on_bad_row=skip); the first: {first_bad[0]}"
    filtered = {reason: stats.dropped[reason] for reason in ("language", "domain", "prompt_too_long") if stats.dropped[reason]}
    skipped = f" (besides {bad} bad row{'s' * (bad != 1)} skipped)" if bad else ""
    fixes = "; ".join(_filter_fix(reason, data, stats, lengths) for reason in filtered)
    if len(filtered) == 1:
        (reason,) = filtered
        return f"every valid row ({stats.rows_read - bad}) was dropped by the {reason} filter{skipped}: {fixes}"
    counts = ", ".join(f"{n} by {reason}" for reason, n in filtered.items())
    return f"every valid row was dropped by the filters ({counts}){skipped}: {fixes}"


def _filter_fix(reason: str, data: DataConfig, stats: SplitStats, lengths: list[int]) -> str:
    def seen(counter) -> str:
        return ", ".join(f"{k} {n}" for k, n in counter.most_common(5))

    if reason == "language" and set(stats.languages_read) == {NONE_KEY}:
        return (f"the rows have no 'language' field (as in HH-RLHF), so data.languages={data.languages} keeps none of "
                "them; set data.languages: [] to keep them")
    if reason == "language":
        return f"data.languages={data.languages} (the rows' languages: {seen(stats.languages_read)}); set data.languages: [] to keep all"
    if reason == "domain":
        return f"data.domains={data.domains} (the rows' domains: {seen(stats.domains_read)}); set data.domains: [] to keep all"
    return f"data.max_prompt_tokens={data.max_prompt_tokens} (the shortest prompt left has {min(lengths)} tokens); raise it"


def held_out_summary(data: DataConfig, train: SplitData, validation: SplitData, kept: str = "pairs") -> dict:
    """The counts of a validation split held out of train, and the lines the stage prints."""
    sides = {"train": train, "validation": validation}
    rows = {name: out.stats.rows_read for name, out in sides.items()}
    # distinct prompts kept, whether or not data.dedupe_prompts removed the repeats
    prompts = {name: len({prompt_key(p.messages) for p in out.prompts}) for name, out in sides.items()}
    n_kept = {name: len(out.pairs) if kept == "pairs" else len(out.conversations) for name, out in sides.items()}
    bad = sum(n for reason, n in train.stats.dropped.items() if reason.startswith("bad_row:"))
    total = sum(prompts.values())
    text = (
        f"validation held out of train by prompt (data.validation_fraction={data.validation_fraction:g}, "
        f"data.validation_seed={data.validation_seed}); no prompt is on both sides:\n"
        f"  rows read from train's source {sum(rows.values())}: train {rows['train']}"
        + (f" (with the {bad} bad row{'s' * (bad != 1)}: no prompt to place {'them' if bad != 1 else 'it'} by)" if bad else "")
        + f", validation {rows['validation']}\n"
        f"  prompts kept {total}: train {prompts['train']}, validation {prompts['validation']} "
        f"({prompts['validation'] / max(total, 1):.1%})\n"
        f"  {kept} kept {sum(n_kept.values())}: train {n_kept['train']}, validation {n_kept['validation']}"
    )
    return {"from": "train", "fraction": data.validation_fraction, "seed": data.validation_seed,
            "rows_read": rows, "prompts": prompts, kept: n_kept, "text": text}


# ----------------------------------------------------------------------------- files


def _atomic_write(path: Path, lines: Iterable[str]) -> None:
    # A hidden name in the same folder (os.replace is atomic only within one file system);
    # plain open() so the file gets the usual permissions, not mkstemp's 0600.
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            for line in lines:
                f.write(line)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_jsonl(path: Path, records: Iterable) -> None:
    _atomic_write(path, (json.dumps(r.to_dict(), ensure_ascii=False) + "\n" for r in records))


def run(cfg: Config) -> dict:
    from tiller.models import load_tokenizer

    data = cfg.data
    tokenizer = load_tokenizer(cfg.model.name, cfg.model)
    out_dir = data_dir(cfg.run_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "DONE").unlink(missing_ok=True)

    _atomic_write(out_dir / "config.yaml", [to_yaml(cfg)])
    held_out = data.validation_fraction > 0  # validation is then made from train, not read
    results: dict[str, SplitData] = {}
    for split in data.splits:
        if held_out and split == "validation":
            continue
        if held_out and split == "train":
            results.update(prepare_held_out(data, tokenizer, cfg.model.enable_thinking))
        else:
            results[split] = prepare_split(data, split, tokenizer, cfg.model.enable_thinking)
    for split in data.splits:
        _write_jsonl(out_dir / f"{split}.pairs.jsonl", results[split].pairs)
        _write_jsonl(out_dir / f"{split}.prompts.jsonl", results[split].prompts)
        _write_jsonl(out_dir / f"{split}.conversations.jsonl", results[split].conversations)
    all_stats = [results[split].stats for split in data.splits]

    title = (
        f"data: format={data.format} source={data.source} languages={data.languages or 'all'} "
        f"domains={data.domains or 'all'} max_prompt_tokens={data.max_prompt_tokens} tokenizer={cfg.model.name}"
    )
    kept = "conversations" if data.format == "messages" else "pairs"
    print(render_table(all_stats, title, kept), flush=True)
    if render_bad_rows(all_stats):
        print(render_bad_rows(all_stats), flush=True)
    summary = {
        "format": data.format,
        "source": data.source,
        "languages": data.languages,
        "domains": data.domains,
        "max_prompt_tokens": data.max_prompt_tokens,
        "tokenizer": cfg.model.name,
        "splits": {s.split: s.to_dict() for s in all_stats},
    }
    if held_out:
        summary["held_out"] = held_out_summary(data, results["train"], results["validation"], kept)
        print(summary["held_out"]["text"], flush=True)
    _atomic_write(out_dir / "stats.json", [json.dumps(summary, indent=2, ensure_ascii=False) + "\n"])
    _atomic_write(out_dir / "DONE", ["done\n"])
    return summary
