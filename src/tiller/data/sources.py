"""Where rows come from: a hub dataset, a local JSONL / JSON / parquet file, or the bundled sample.

Every source is iterated the same way: `Source.rows()` yields `(index, row_dict)` and
`Source.where(index)` names the place for error messages ("train.jsonl line 12",
"org/name:train row 7"). JSONL files count 1-based lines because that is what an editor shows;
everything else counts 0-based rows, as `datasets` and pyarrow do.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

from tiller.config import DataConfig
from tiller.data.records import DataError

SAMPLE_DIR = Path(__file__).parent / "sample"  # found next to this file so it works when installed
LOCAL_SUFFIXES = (".jsonl", ".json", ".parquet")


@dataclass
class Source:
    label: str  # a file path, or hub id + split
    kind: str  # jsonl | json | parquet | hub
    path: Optional[Path] = None
    hub_id: Optional[str] = None
    hub_config: Optional[str] = None
    split: Optional[str] = None

    @property
    def unit(self) -> str:
        return "line" if self.kind == "jsonl" else "row"

    def where(self, index: int) -> str:
        return f"{self.label} {self.unit} {index}"

    def rows(self, on_bad_json: Optional[Callable[[DataError], None]] = None) -> Iterator[tuple[int, dict]]:
        """Yield (index, row). A line that is not a JSON object raises DataError, or, when
        `on_bad_json` is given, is handed to it (field 'json') and skipped."""
        if self.kind == "jsonl":
            yield from self._jsonl_rows(on_bad_json)
        elif self.kind == "json":
            yield from self._json_rows(on_bad_json)
        elif self.kind == "parquet":
            import pyarrow.parquet as pq

            index = 0
            # Record batches keep memory flat on big files; to_pylist gives plain dicts.
            for batch in pq.ParquetFile(self.path).iter_batches(batch_size=4096):
                for row in batch.to_pylist():
                    yield index, row
                    index += 1
        elif self.kind == "hub":
            import datasets

            ds = datasets.load_dataset(self.hub_id, self.hub_config, split=self.split)
            for index, row in enumerate(ds):
                yield index, row
        else:  # pragma: no cover - constructed only by open_split
            raise DataError(self.label, f"unknown source kind {self.kind!r}")

    def _bad(self, err: DataError, on_bad_json) -> None:
        if on_bad_json is None:
            raise err
        on_bad_json(err)

    def _jsonl_rows(self, on_bad_json) -> Iterator[tuple[int, dict]]:
        loads = json.loads
        with open(self.path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue  # blank lines (e.g. a trailing newline) are not rows
                try:
                    row = loads(line)
                except json.JSONDecodeError as e:
                    self._bad(DataError(self.where(lineno), f"not valid JSON ({e.msg} at column {e.colno})", "json"), on_bad_json)
                    continue
                if not isinstance(row, dict):
                    self._bad(DataError(self.where(lineno), f"expected a JSON object, got {type(row).__name__}", "json"), on_bad_json)
                    continue
                yield lineno, row

    def _json_rows(self, on_bad_json) -> Iterator[tuple[int, dict]]:
        try:
            data = json.loads(Path(self.path).read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            # One document: a parse error has no row, so name the line and column instead.
            raise DataError(f"{self.label} line {e.lineno}", f"not valid JSON ({e.msg} at column {e.colno})", "json") from None
        for index, row in enumerate(data):
            if not isinstance(row, dict):
                self._bad(DataError(self.where(index), f"expected a JSON object, got {type(row).__name__}", "json"), on_bad_json)
                continue
            yield index, row


def sample_path(split: str, dataset: str = "helpsteer3") -> Path:
    return SAMPLE_DIR / dataset / f"{split}.jsonl"


def open_split(data: DataConfig, split: str) -> Source:
    """The source of one split as configured by `data.source`."""
    if data.source == "sample":
        if data.format != "helpsteer3":
            raise DataError(
                "data.source=sample", f"the bundled sample is in HelpSteer3 format; set data.format: helpsteer3 (got {data.format!r})"
            )
        path = sample_path(split)
        if not path.is_file():
            have = sorted(p.stem for p in path.parent.glob("*.jsonl"))
            raise DataError("data.source=sample", f"the bundled sample has no split {split!r} (it has: {', '.join(have) or 'none'})")
        return Source(label=str(path), kind="jsonl", path=path)
    if data.source == "hub":
        if not data.hub_id:
            raise DataError("data.hub_id", "required when data.source is 'hub'")
        cfg = f"[{data.hub_config}]" if data.hub_config else ""
        return Source(label=f"{data.hub_id}{cfg}:{split}", kind="hub", hub_id=data.hub_id, hub_config=data.hub_config, split=split)
    if data.source == "local":
        if split not in data.files:
            raise DataError(f"data.files.{split}", f"no file given for split {split!r} (data.files has: {sorted(data.files)})")
        return open_file(data.files[split], key=f"data.files.{split}")
    raise DataError("data.source", f"unknown source {data.source!r}; valid: sample, hub, local")


def open_file(path: str | Path, key: str = "file") -> Source:
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(key, f"file not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in LOCAL_SUFFIXES:
        raise DataError(key, f"{path}: unsupported file type {suffix or '(none)'!r}; use one of {', '.join(LOCAL_SUFFIXES)}")
    kind = suffix[1:]
    if kind == "json":
        # A .json file is either one list of objects or JSON lines under another name:
        # the first non-blank character tells which.
        with open(path, encoding="utf-8") as f:
            head = f.read(4096).lstrip()
        kind = "json" if head.startswith("[") else "jsonl"
    return Source(label=str(path), kind=kind, path=path)
