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

A split that gives nothing to train on stops the stage with an error instead of writing empty
files: an empty file, a file whose every row is bad (with data.on_bad_row: skip), or one whose
every valid row is dropped by the filters; the error names the filter and the setting to change.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

from tiller.config import Config, DataConfig, to_yaml
from tiller.data.adapters import get_adapter, prompt_of
from tiller.data.filters import dedupe_prompts, domain_ok, language_ok, lowered, prompt_token_counts, role_marker
from tiller.data.records import Conversation, DataError, PreferencePair, Prompt
from tiller.data.sources import open_split
from tiller.data.stats import NONE_KEY, SplitStats, render_table


@dataclass
class SplitData:
    pairs: list[PreferencePair] = field(default_factory=list)
    prompts: list[Prompt] = field(default_factory=list)
    conversations: list[Conversation] = field(default_factory=list)
    stats: SplitStats = field(default_factory=lambda: SplitStats(""))


def prepare_split(data: DataConfig, split: str, tokenizer, enable_thinking: Optional[bool] = None) -> SplitData:
    """Load one split, adapt every row, filter, and count. The tokenizer is the policy's: prompt
    length is measured on the text the policy will actually see."""
    source = open_split(data, split)
    adapt = get_adapter(data.format)
    out = SplitData(stats=SplitStats(split, source.label))
    stats = out.stats
    languages, domains = lowered(data.languages), lowered(data.domains)
    first_bad: list[DataError] = []

    def bad_row(err: DataError) -> None:
        if data.on_bad_row == "error":
            raise err
        stats.dropped[f"bad_row:{err.field or 'row'}"] += 1
        if not first_bad:  # one warning per split, with the first example; the rest are counted
            first_bad.append(err)
            warnings.warn(f"skipping bad rows in split {split!r} (data.on_bad_row=skip); the first: {err}", stacklevel=2)

    def on_bad_json(err: DataError) -> None:
        stats.rows_read += 1  # a malformed line is a row read, so the accounting still adds up
        bad_row(err)

    # Pass 1: adapt and apply the cheap filters. Records that survive are measured in one batch.
    survivors = []
    for index, row in source.rows(on_bad_json if data.on_bad_row == "skip" else None):
        if data.max_rows_per_split is not None and stats.rows_read >= data.max_rows_per_split:
            break
        stats.rows_read += 1
        try:
            record = adapt(row, source.where(index), index)
        except DataError as err:
            bad_row(err)
            continue
        stats.count_read(record.domain, record.language)
        if isinstance(record, Prompt):
            stats.ties += 1
        if not language_ok(record.language, languages):
            stats.dropped["language"] += 1
        elif not domain_ok(record.domain, domains):
            stats.dropped["domain"] += 1
        else:
            survivors.append(record)

    # Pass 2: prompt length in tokens (batched), then sort each survivor into its outputs.
    prompts = [prompt_of(r) for r in survivors]
    lengths = prompt_token_counts(tokenizer, prompts, enable_thinking)
    rl_prompts = []
    for record, prompt, n_tokens in zip(survivors, prompts, lengths):
        if n_tokens > data.max_prompt_tokens:
            stats.dropped["prompt_too_long"] += 1
            continue
        rl_prompts.append(Prompt(prompt, record.domain, record.language, record.source_row))
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

    if data.dedupe_prompts:
        rl_prompts, n_dup = dedupe_prompts(rl_prompts)
        if n_dup:
            stats.prompts_dropped["duplicate_prompt"] = n_dup
    out.prompts = rl_prompts
    stats.pairs_kept = len(out.pairs)
    stats.conversations_kept = len(out.conversations)
    stats.prompts_kept = len(out.prompts)

    kept = stats.pairs_kept if data.format != "messages" else stats.conversations_kept
    assert stats.rows_read == kept + sum(stats.dropped.values()), "a row was lost without a count"
    if not rl_prompts:
        raise DataError(f"split {split!r} ({source.label})", _nothing_left(data, stats, lengths, first_bad))
    return out


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


# ----------------------------------------------------------------------------- files


def data_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "data"


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
    all_stats = []
    for split in data.splits:
        result = prepare_split(data, split, tokenizer, cfg.model.enable_thinking)
        _write_jsonl(out_dir / f"{split}.pairs.jsonl", result.pairs)
        _write_jsonl(out_dir / f"{split}.prompts.jsonl", result.prompts)
        _write_jsonl(out_dir / f"{split}.conversations.jsonl", result.conversations)
        all_stats.append(result.stats)

    title = (
        f"data: format={data.format} source={data.source} languages={data.languages or 'all'} "
        f"domains={data.domains or 'all'} max_prompt_tokens={data.max_prompt_tokens} tokenizer={cfg.model.name}"
    )
    kept = "conversations" if data.format == "messages" else "pairs"
    print(render_table(all_stats, title, kept), flush=True)
    summary = {
        "format": data.format,
        "source": data.source,
        "languages": data.languages,
        "domains": data.domains,
        "max_prompt_tokens": data.max_prompt_tokens,
        "tokenizer": cfg.model.name,
        "splits": {s.split: s.to_dict() for s in all_stats},
    }
    _atomic_write(out_dir / "stats.json", [json.dumps(summary, indent=2, ensure_ascii=False) + "\n"])
    _atomic_write(out_dir / "DONE", ["done\n"])
    return summary


# ----------------------------------------------------------------------------- loaders for later stages


def _load(run_dir: str | Path, split: str, kind: str, cls) -> list:
    folder = data_dir(run_dir)
    path = folder / f"{split}.{kind}.jsonl"
    if not (folder / "DONE").is_file():
        raise FileNotFoundError(f"no finished data stage in {folder}: run `tiller data --config <your config>` first")
    if not path.is_file():
        have = sorted({p.name.split(".")[0] for p in folder.glob("*.pairs.jsonl")})
        raise FileNotFoundError(
            f"{path} not found: the data stage wrote splits {have}; add {split!r} to data.splits and run `tiller data` again"
        )
    # The data stage wrote these files, but they are plain text a person can edit: check what
    # training would otherwise take silently (a NaN margin trains to NaN and still saves a model).
    records = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path} line {lineno}"
            try:
                record = cls.from_dict(json.loads(line))
            except json.JSONDecodeError as e:
                raise DataError(where, f"not valid JSON ({e.msg} at column {e.colno}); run `tiller data` again") from None
            except (TypeError, AttributeError) as e:
                raise DataError(where, f"not a {cls.__name__} record ({e}); run `tiller data` again") from None
            if isinstance(record, PreferencePair) and (
                isinstance(record.margin, bool) or not isinstance(record.margin, (int, float)) or not math.isfinite(record.margin)
            ):
                raise DataError(where, f"expected a finite number, got {record.margin!r}", "margin")
            records.append(record)
    return records


def load_pairs(run_dir: str | Path, split: str) -> list[PreferencePair]:
    return _load(run_dir, split, "pairs", PreferencePair)


def load_prompts(run_dir: str | Path, split: str) -> list[Prompt]:
    return _load(run_dir, split, "prompts", Prompt)


def load_conversations(run_dir: str | Path, split: str) -> list[Conversation]:
    return _load(run_dir, split, "conversations", Conversation)


def load_stats(run_dir: str | Path) -> dict:
    path = data_dir(run_dir) / "stats.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `tiller data --config <your config>` first")
    return json.loads(path.read_text())
