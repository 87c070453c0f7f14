"""Where rows come from: a hub dataset, a local JSONL / JSON / parquet file (JSONL and JSON also
gzip-compressed, `.jsonl.gz` / `.json.gz`, as HH-RLHF ships), or a bundled sample (data.sample:
the HelpSteer3-format preference sample, or the arithmetic questions of tiller.data.arithmetic).

Every source is iterated the same way: `Source.rows()` yields `(index, row_dict)` and
`Source.where(index)` names the place for error messages ("train.jsonl line 12",
"org/name:train row 7"). JSONL files count 1-based lines because that is what an editor shows;
everything else counts 0-based rows, as `datasets` and pyarrow do.

JSONL is read as bytes and decoded line by line, so a line that is not valid UTF-8 is one bad
row (field 'encoding') naming its line, not the end of the whole read.
"""

from __future__ import annotations

import gzip
import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

from tiller.config import DataConfig
from tiller.data.records import DataError

SAMPLE_DIR = Path(__file__).parent / "sample"  # found next to this file so it works when installed
LOCAL_SUFFIXES = (".jsonl", ".json", ".parquet", ".jsonl.gz", ".json.gz")
BOM = b"\xef\xbb\xbf"  # the UTF-8 byte-order mark
# Each bundled sample (data.sample) and the data.format it is written in.
SAMPLE_FORMATS = {"helpsteer3": "helpsteer3", "arithmetic": "messages"}


@dataclass
class Source:
    label: str  # a file path, or hub id + split
    kind: str  # jsonl | json | parquet | hub
    path: Optional[Path] = None
    gzipped: bool = False
    hub_id: Optional[str] = None
    hub_config: Optional[str] = None
    hub_data_dir: Optional[str] = None
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

            ds = datasets.load_dataset(self.hub_id, self.hub_config, data_dir=self.hub_data_dir, split=self.split)
            for index, row in enumerate(ds):
                yield index, row
        else:  # pragma: no cover - constructed only by open_split
            raise DataError(self.label, f"unknown source kind {self.kind!r}")

    def _bad(self, err: DataError, on_bad_json) -> None:
        if on_bad_json is None:
            raise err
        on_bad_json(err)

    def _open_bytes(self):
        return gzip.open(self.path, "rb") if self.gzipped else open(self.path, "rb")

    def _jsonl_rows(self, on_bad_json) -> Iterator[tuple[int, dict]]:
        loads = json.loads
        lineno = 0
        try:
            with self._open_bytes() as f:
                for lineno, raw in enumerate(f, start=1):
                    if lineno == 1:
                        raw = raw.removeprefix(BOM)  # the byte-order mark some editors write
                    try:
                        line = raw.decode("utf-8")
                    except UnicodeDecodeError as e:
                        self._bad(DataError(self.where(lineno), _decode_message(e), "encoding"), on_bad_json)
                        continue
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
        except (OSError, EOFError, zlib.error) as e:
            if not self.gzipped:
                raise
            # A truncated or corrupt .gz breaks the stream itself: no later line can be read.
            where = f"{self.label} after line {lineno}" if lineno else self.label
            raise DataError(where, f"cannot decompress ({e}); is it a complete gzip file?") from None

    def _json_rows(self, on_bad_json) -> Iterator[tuple[int, dict]]:
        with self._open_bytes() as f:
            raw = f.read().removeprefix(BOM)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            # One document: it cannot be read around the bad byte, even with on_bad_row: skip.
            line = raw.count(b"\n", 0, e.start) + 1
            raise DataError(f"{self.label} line {line}", _decode_message(e, raw.rfind(b"\n", 0, e.start) + 1), "encoding") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            # One document: a parse error has no row, so name the line and column instead.
            raise DataError(f"{self.label} line {e.lineno}", f"not valid JSON ({e.msg} at column {e.colno})", "json") from None
        for index, row in enumerate(data):
            if not isinstance(row, dict):
                self._bad(DataError(self.where(index), f"expected a JSON object, got {type(row).__name__}", "json"), on_bad_json)
                continue
            yield index, row


def _decode_message(e: UnicodeDecodeError, line_start: int = 0) -> str:
    """'not valid UTF-8 (byte 0xe9 at byte 335 of the line)', counted from 1."""
    return f"not valid UTF-8 (byte 0x{e.object[e.start]:02x} at byte {e.start - line_start + 1} of the line); save the file as UTF-8"


def sample_path(split: str, dataset: str = "helpsteer3") -> Path:
    return SAMPLE_DIR / dataset / f"{split}.jsonl"


def open_split(data: DataConfig, split: str) -> Source:
    """The source of one split as configured by `data.source`."""
    if data.source == "sample":
        fmt = SAMPLE_FORMATS[data.sample]
        if data.format != fmt:
            raise DataError(
                "data.source=sample", f"the bundled sample {data.sample!r} is in {fmt!r} format; set data.format: {fmt} "
                f"(got {data.format!r})"
            )
        path = sample_path(split, data.sample)
        if not path.is_file():
            have = sorted(p.stem for p in path.parent.glob("*.jsonl"))
            raise DataError("data.source=sample", f"the bundled sample {data.sample!r} has no split {split!r} "
                            f"(it has: {', '.join(have) or 'none'})")
        return Source(label=str(path), kind="jsonl", path=path)
    if data.source == "hub":
        if not data.hub_id:
            raise DataError("data.hub_id", "required when data.source is 'hub'")
        cfg = f"[{data.hub_config}]" if data.hub_config else ""
        sub = f"[data_dir={data.hub_data_dir}]" if data.hub_data_dir else ""
        return Source(label=f"{data.hub_id}{cfg}{sub}:{split}", kind="hub", hub_id=data.hub_id, hub_config=data.hub_config,
                      hub_data_dir=data.hub_data_dir, split=split)
    if data.source == "local":
        if split not in data.files:
            raise DataError(f"data.files.{split}", f"no file given for split {split!r} (data.files has: {sorted(data.files)})")
        return open_file(data.files[split], key=f"data.files.{split}")
    raise DataError("data.source", f"unknown source {data.source!r}; valid: sample, hub, local")


def open_file(path: str | Path, key: str = "file") -> Source:
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(key, f"file not found: {path}")
    name = path.name.lower()
    suffix = next((s for s in LOCAL_SUFFIXES if name.endswith(s)), None)
    if suffix is None:
        got = "".join(path.suffixes[-2:]) if name.endswith(".gz") else path.suffix
        raise DataError(key, f"{path}: unsupported file type {got or '(none)'!r}; use one of {', '.join(LOCAL_SUFFIXES)}")
    gzipped = suffix.endswith(".gz")
    kind = suffix[1:].removesuffix(".gz")
    source = Source(label=str(path), kind=kind, path=path, gzipped=gzipped)
    if kind == "json":
        # A .json file is either one list of objects or JSON lines under another name:
        # the first non-blank character tells which.
        try:
            with source._open_bytes() as f:
                head = f.read(4096).removeprefix(BOM).lstrip()
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(key, f"{path}: cannot decompress ({e}); is it a complete gzip file?") from None
        source.kind = "json" if head.startswith(b"[") else "jsonl"
    return source
