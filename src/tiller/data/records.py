"""The records every later stage reads: plain dataclasses that round-trip through JSON.

Messages are always `{"role": ..., "content": ...}` dicts (roles system / user / assistant), the
shape chat templates take. `source_row` is the row's position in its source (the 1-based line
number for JSONL files, the 0-based row number otherwise), so any record can be traced back.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional


class DataError(ValueError):
    """A row (or file) that does not fit its format. The message names the file, the line or
    row, and the field, so the user can open the file at the right place."""

    def __init__(self, where: str, message: str, field: Optional[str] = None):
        self.where = where
        self.field = field
        self.reason = message
        text = f"{where}: field '{field}': {message}" if field else f"{where}: {message}"
        super().__init__(text)


@dataclass
class PreferencePair:
    """A prompt (a list of messages ending with the user's turn) and two answers to it."""

    prompt: list[dict]
    chosen: str
    rejected: str
    margin: float = 0.0  # preference strength, >= 0 (HelpSteer3: abs(overall_preference))
    domain: Optional[str] = None
    language: Optional[str] = None
    source_row: int = -1

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PreferencePair":
        return cls(**d)


@dataclass
class Conversation:
    """A whole conversation for SFT, ending with an assistant turn."""

    messages: list[dict]
    source_row: int = -1
    domain: Optional[str] = None
    language: Optional[str] = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Conversation":
        return cls(**d)


@dataclass
class Prompt:
    """A prompt for RL: messages ending with the user's turn; the policy writes the answer.

    `extra` holds the source-row fields named in data.keep_columns (e.g. a gold answer), which
    reward functions receive as the prompt's record."""

    messages: list[dict]
    domain: Optional[str] = None
    language: Optional[str] = None
    source_row: int = -1
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Prompt":
        return cls(**d)
