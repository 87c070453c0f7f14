"""Counts of what the data stage read, kept and dropped (with a reason for every drop), per split;
printed as a plain-text table and saved as stats.json.

Row accounting: every row read ends up either kept (a pair, or a conversation for `messages`
data) or dropped under exactly one reason, so `rows_read == kept + sum(dropped)` always holds.
Reasons, in the order they are checked: `bad_row:<field>` (only with data.on_bad_row: skip),
`language`, `domain`, `prompt_too_long`, `tie`. Ties still give an RL prompt.
`ties` counts the ties among all rows read, before any filter.
RL prompts are counted apart: the prompts of the rows that passed the filters (ties included),
minus `duplicate_prompt`.
`bad_rows` names the first skipped bad rows with the reason of each, printed under the table.
`role_markers` counts the kept rows (a pair, a conversation or a tie's RL prompt) whose text holds
a role marker such as "\n\nHuman:" (see `filters.role_marker`); they are kept, not dropped, and
`role_marker_rows` names the first few so they can be looked at.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Optional

NONE_KEY = "(none)"  # rows without a domain / language field
BAD_ROWS_SHOWN = 10  # skipped bad rows named one by one (with data.on_bad_row: skip); the rest are counted


@dataclass
class SplitStats:
    split: str
    source: str = ""
    rows_read: int = 0
    pairs_kept: int = 0
    conversations_kept: int = 0
    prompts_kept: int = 0
    ties: int = 0
    role_markers: int = 0
    role_marker_rows: list = field(default_factory=list)  # "file line N: '\n\nHuman:'", the first few
    bad_rows: list = field(default_factory=list)  # "file line N: field 'x': why", the first BAD_ROWS_SHOWN skipped
    dropped: Counter = field(default_factory=Counter)  # rows, by reason
    prompts_dropped: Counter = field(default_factory=Counter)  # RL prompts, by reason
    domains_read: Counter = field(default_factory=Counter)
    languages_read: Counter = field(default_factory=Counter)
    domains_kept: Counter = field(default_factory=Counter)  # of the kept pairs (conversations for `messages`)
    languages_kept: Counter = field(default_factory=Counter)

    def count_read(self, domain: Optional[str], language: Optional[str]) -> None:
        self.domains_read[domain or NONE_KEY] += 1
        self.languages_read[language or NONE_KEY] += 1

    def count_kept(self, domain: Optional[str], language: Optional[str]) -> None:
        self.domains_kept[domain or NONE_KEY] += 1
        self.languages_kept[language or NONE_KEY] += 1

    def to_dict(self) -> dict:
        def plain(c: Counter) -> dict:
            return dict(sorted(c.items(), key=lambda kv: (-kv[1], kv[0])))

        return {
            "split": self.split,
            "source": self.source,
            "rows_read": self.rows_read,
            "pairs_kept": self.pairs_kept,
            "conversations_kept": self.conversations_kept,
            "prompts_kept": self.prompts_kept,
            "ties": self.ties,
            "role_markers": self.role_markers,
            "role_marker_rows": list(self.role_marker_rows),
            "bad_rows": list(self.bad_rows),
            "rows_dropped": sum(self.dropped.values()),
            "dropped": plain(self.dropped),
            "prompts_dropped": plain(self.prompts_dropped),
            "domains_read": plain(self.domains_read),
            "languages_read": plain(self.languages_read),
            "domains_kept": plain(self.domains_kept),
            "languages_kept": plain(self.languages_kept),
        }


def _keys(stats: list[SplitStats], attr: str) -> list[str]:
    """Keys of a counter over all splits, most frequent first (ties broken by name)."""
    total: Counter = Counter()
    for s in stats:
        total.update(getattr(s, attr))
    return [k for k, _ in sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))]


def render_table(stats: list[SplitStats], title: str = "", kept: str = "pairs") -> str:
    """A fixed-width table: one row per count, one column per split. `kept` names what the
    kept rows became: pairs, or conversations for `messages` data."""
    rows: list[tuple[str, list]] = [
        ("rows read", [s.rows_read for s in stats]),
        ("pairs kept", [s.pairs_kept for s in stats]),
        ("conversations kept", [s.conversations_kept for s in stats]),
        ("RL prompts kept", [s.prompts_kept for s in stats]),
        ("ties (of rows read)", [s.ties for s in stats]),
        ("kept rows with role markers", [s.role_markers for s in stats]),
        ("rows dropped", [sum(s.dropped.values()) for s in stats]),
    ]
    rows += [(f"  {reason}", [s.dropped[reason] for s in stats]) for reason in _keys(stats, "dropped")]
    rows.append(("RL prompts dropped", [sum(s.prompts_dropped.values()) for s in stats]))
    rows += [(f"  {reason}", [s.prompts_dropped[reason] for s in stats]) for reason in _keys(stats, "prompts_dropped")]
    for title_, attr in (
        ("rows read by domain", "domains_read"),
        ("rows read by language", "languages_read"),
        (f"{kept} kept by domain", "domains_kept"),
        (f"{kept} kept by language", "languages_kept"),
    ):
        keys = _keys(stats, attr)
        if keys:
            rows.append((title_, [""] * len(stats)))
            rows += [(f"  {k}", [getattr(s, attr)[k] for s in stats]) for k in keys]
    label_w = max(len(label) for label, _ in rows)
    col_w = [max(8, len(s.split), *(len(str(vals[i])) for _, vals in rows)) for i, s in enumerate(stats)]
    lines = [title] if title else []
    header = " " * label_w + "".join(f"  {s.split:>{w}}" for s, w in zip(stats, col_w))
    lines += [header, "-" * len(header)]
    for label, vals in rows:
        lines.append((f"{label:<{label_w}}" + "".join(f"  {v:>{w}}" for v, w in zip(vals, col_w))).rstrip())
    return "\n".join(lines)


def render_bad_rows(stats: list[SplitStats]) -> str:
    """The skipped bad rows of each split, one per line with its reason ("" when none)."""
    lines = []
    for s in stats:
        n = sum(count for reason, count in s.dropped.items() if reason.startswith("bad_row:"))
        if not n:
            continue
        shown = f"the first {len(s.bad_rows)}" if len(s.bad_rows) < n else "each"
        lines.append(f"bad rows skipped in {s.split} (data.on_bad_row=skip): {n}; {shown} with its reason:")
        lines += [f"  {row}" for row in s.bad_rows]
    return "\n".join(lines)
