"""Reading what the data stage (`tiller data`) wrote into a run folder, for the later stages.

    <run_dir>/data/<split>.pairs.jsonl          PreferencePair records (reward model, DPO, SFT on chosen)
    <run_dir>/data/<split>.prompts.jsonl        Prompt records (RLOO, evaluation)
    <run_dir>/data/<split>.conversations.jsonl  Conversation records (SFT)
    <run_dir>/data/stats.json                   the counts the data stage printed
    <run_dir>/data/DONE                         written last: the files above are complete

The files are plain text a person can edit, so each line is checked as it is read: a line that
is not valid JSON, not a record of the expected kind, or a pair with a margin that is not a
finite number stops the stage with an error naming the file and line.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from tiller.data.records import Conversation, DataError, PreferencePair, Prompt


def data_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "data"


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
            if isinstance(record, Prompt) and not isinstance(record.extra, dict):
                raise DataError(where, f"expected a mapping of kept columns, got {record.extra!r}", "extra")
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
