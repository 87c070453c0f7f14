"""Compare every metric two runs logged (1 process against 2, one path against another).

Left out, because they measure the machine, not the run: the row's `time` stamp and every
`time/*` metric (wall-clock durations and throughput). Everything else must be logged by both
runs at the same steps and agree within the tolerance; non-finite values (written as the strings
"nan" / "inf") must be equal strings.
"""

from __future__ import annotations

import math
from pathlib import Path

from tiller.tracking import read_metrics


def wall_clock(key: str) -> bool:
    return key == "time" or key.startswith("time/")


def assert_same_metrics(a: Path, b: Path, rel: float = 1e-4, abs: float = 1e-6, skip: tuple[str, ...] = ()) -> list[str]:
    """`a`, `b`: two metrics.jsonl files. `skip`: more keys to leave out, each with its reason at
    the call site. Returns the keys compared (so a caller can check the list is not empty)."""
    rows_a, rows_b = read_metrics(a), read_metrics(b)
    assert rows_a, f"{a}: no metrics"
    assert [r["step"] for r in rows_a] == [r["step"] for r in rows_b], (a, b)
    compared: set[str] = set()
    for ra, rb in zip(rows_a, rows_b):
        keys_a = {k for k in ra if not wall_clock(k) and k not in skip}
        keys_b = {k for k in rb if not wall_clock(k) and k not in skip}
        assert keys_a == keys_b, f"step {ra['step']}: logged by one run only: {sorted(keys_a ^ keys_b)}"
        for key in sorted(keys_a):
            x, y = ra[key], rb[key]
            if isinstance(x, str) or isinstance(y, str):
                assert x == y, f"step {ra['step']} {key}: {x!r} != {y!r}"
            else:
                assert math.isclose(x, y, rel_tol=rel, abs_tol=abs), f"step {ra['step']} {key}: {x!r} != {y!r}"
        compared |= keys_a
    return sorted(compared)
