"""One function per dataset format: a raw row -> a record.

Each adapter is `(row, where, index) -> record`, where `where` names the row for errors
("train.jsonl line 12") and `index` becomes the record's `source_row`. It returns
- a PreferencePair when the row holds a preference,
- a Prompt when it holds a tie (no pairwise signal, but the prompt is still good for RL),
- a Conversation for SFT-style `messages` rows.
Anything missing, mistyped, empty or not finite (NaN / Infinity, which Python's json and
parquet float columns both let through) raises DataError naming the row and the field; adapters
never guess a repair, because a silently repaired row is a silently wrong training example.
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable, Optional, Union

from tiller.data.records import Conversation, DataError, PreferencePair, Prompt

ROLES = ("system", "user", "assistant")
Record = Union[PreferencePair, Prompt, Conversation]


# ----------------------------------------------------------------------------- field helpers


def _get(row: dict, name: str, where: str) -> Any:
    if name not in row or row[name] is None:
        raise DataError(where, f"missing (the row has: {', '.join(sorted(map(str, row))) or 'no fields'})", name)
    return row[name]


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _response(row: dict, name: str, where: str) -> str:
    value = _get(row, name, where)
    if not isinstance(value, str):
        raise DataError(where, f"expected a string, got {_type_name(value)}", name)
    if not value.strip():
        raise DataError(where, "empty response", name)
    return value


def _optional_str(row: dict, name: str, where: str) -> Optional[str]:
    value = row.get(name)
    if value is not None and not isinstance(value, str):
        raise DataError(where, f"expected a string or null, got {_type_name(value)}", name)
    return value


def _number(row: dict, name: str, where: str) -> Optional[float]:
    value = row.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DataError(where, f"expected a number, got {_type_name(value)}", name)
    return _finite(value, where, name)


def _finite(value: float, where: str, name: str) -> float:
    try:
        number = float(value)
    except OverflowError:  # an integer too large for a float
        number = math.inf
    if not math.isfinite(number):
        raise DataError(where, f"expected a finite number, got {value!r}", name)
    return number


def _messages(value: Any, where: str, name: str) -> list[dict]:
    """Validate a list of {role, content} and copy it keeping only those two keys."""
    if not isinstance(value, list):
        raise DataError(where, f"expected a list of {{role, content}} messages, got {_type_name(value)}", name)
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict):
            raise DataError(where, f"expected a {{role, content}} message, got {_type_name(m)}", f"{name}[{i}]")
        role, content = m.get("role"), m.get("content")
        if role not in ROLES:
            raise DataError(where, f"bad role {role!r}; valid roles: {', '.join(ROLES)}", f"{name}[{i}].role")
        if not isinstance(content, str):
            raise DataError(where, f"expected a string, got {_type_name(content)}", f"{name}[{i}].content")
        out.append({"role": role, "content": content})
    return out


def _check_prompt(messages: list[dict], where: str, name: str) -> None:
    """A prompt must end with a non-empty user turn: that is what the policy answers."""
    if not messages:
        raise DataError(where, "empty: the prompt needs at least one user turn", name)
    last = len(messages) - 1
    if messages[last]["role"] != "user":
        raise DataError(where, f"the last prompt turn must be the user's, got {messages[last]['role']!r}", f"{name}[{last}].role")
    if not messages[last]["content"].strip():
        raise DataError(where, "empty user turn", f"{name}[{last}].content")


def conversation_prompt(messages: list[dict]) -> list[dict]:
    """The messages up to and including the last user turn (the RL prompt of a conversation)."""
    for i in range(len(messages) - 1, -1, -1):
        if messages[i]["role"] == "user":
            return messages[: i + 1]
    return []


# ----------------------------------------------------------------------------- formats


def helpsteer3(row: dict, where: str, index: int = -1) -> Union[PreferencePair, Prompt]:
    """nvidia/HelpSteer3 `preference`: context (multi-turn), response1, response2,
    overall_preference in -3..3 (negative: response1 better; positive: response2 better; 0: tie)."""
    prompt = _messages(_get(row, "context", where), where, "context")
    _check_prompt(prompt, where, "context")
    response1 = _response(row, "response1", where)
    response2 = _response(row, "response2", where)
    pref = _get(row, "overall_preference", where)
    if isinstance(pref, bool) or not isinstance(pref, int) or not -3 <= pref <= 3:
        # NaN is a float, so it lands here too: "expected an integer in -3..3, got nan"
        raise DataError(where, f"expected an integer in -3..3, got {pref!r}", "overall_preference")
    domain = _optional_str(row, "domain", where)
    language = _optional_str(row, "language", where)
    if pref == 0:
        return Prompt(prompt, domain, language, index)
    chosen, rejected = (response1, response2) if pref < 0 else (response2, response1)
    return PreferencePair(prompt, chosen, rejected, float(abs(pref)), domain, language, index)


def ultrafeedback(row: dict, where: str, index: int = -1) -> Union[PreferencePair, Prompt]:
    """HuggingFaceH4/ultrafeedback_binarized: `chosen` / `rejected` are message lists that end
    with the assistant's answer; the turns before it are the prompt and must be the same in both.
    `prompt` (a string) is optional and used only if the lists hold nothing but the answer.
    margin = score_chosen - score_rejected when both scores are present, else 0.0 (unknown
    strength, not a tie); equal scores are a tie; a lower chosen score is an error."""
    sides = {}
    for name in ("chosen", "rejected"):
        msgs = _messages(_get(row, name, where), where, name)
        if not msgs or msgs[-1]["role"] != "assistant":
            got = repr(msgs[-1]["role"]) if msgs else "an empty list"
            raise DataError(where, f"the last message must be the assistant's answer, got {got}", name)
        if not msgs[-1]["content"].strip():
            raise DataError(where, "empty response", f"{name}[{len(msgs) - 1}].content")
        sides[name] = msgs
    prompt = sides["chosen"][:-1]
    if sides["rejected"][:-1] != prompt:
        raise DataError(where, "the turns before the answer differ from those of 'chosen'", "rejected")
    prompt_text = _optional_str(row, "prompt", where)
    if not prompt:
        if not prompt_text or not prompt_text.strip():
            raise DataError(where, "missing: 'chosen' holds only the answer, so the prompt must come from here", "prompt")
        prompt = [{"role": "user", "content": prompt_text}]
    _check_prompt(prompt, where, "chosen")
    language = _optional_str(row, "language", where)
    domain = _optional_str(row, "domain", where)
    score_c, score_r = _number(row, "score_chosen", where), _number(row, "score_rejected", where)
    margin = 0.0
    if score_c is not None and score_r is not None:
        if score_c < score_r:
            raise DataError(where, f"score_chosen {score_c} is below score_rejected {score_r}", "score_chosen")
        if score_c == score_r:
            return Prompt(prompt, domain, language, index)
        margin = score_c - score_r
        if not math.isfinite(margin):  # two finite scores can still overflow: 1e308 - -1e308
            raise DataError(where, f"score_chosen - score_rejected overflows ({score_c} - {score_r})", "score_chosen")
    return PreferencePair(prompt, sides["chosen"][-1]["content"], sides["rejected"][-1]["content"], margin, domain, language, index)


_HH_ASSISTANT = "\n\nAssistant: "
_HH_TURN = re.compile(r"\n\n(Human|Assistant): ")


def _hh_messages(text: str, where: str, name: str) -> list[dict]:
    parts = _HH_TURN.split(text)  # [before, speaker, content, speaker, content, ...]
    if parts[0].strip():
        raise DataError(where, "text before the first '\\n\\nHuman: ' turn", name)
    return [
        {"role": "user" if parts[i] == "Human" else "assistant", "content": parts[i + 1].strip()}
        for i in range(1, len(parts), 2)
    ]


def hh_rlhf(row: dict, where: str, index: int = -1) -> PreferencePair:
    """Anthropic/hh-rlhf: `chosen` / `rejected` are whole transcripts of "\\n\\nHuman: " and
    "\\n\\nAssistant: " turns that differ only in the final answer. Split each at its LAST
    assistant turn; the parts before must be identical. Turn contents are stripped of the
    surrounding whitespace that the transcript format adds."""
    prompt_text, answers = None, {}
    for name in ("chosen", "rejected"):
        text = _response(row, name, where)
        cut = text.rfind(_HH_ASSISTANT)
        if cut < 0:
            raise DataError(where, "no '\\n\\nAssistant: ' turn in the transcript", name)
        answer = text[cut + len(_HH_ASSISTANT) :]
        if "\n\nHuman: " in answer:
            raise DataError(where, "the transcript ends with a Human turn, not an assistant answer", name)
        if not answer.strip():
            raise DataError(where, "empty response", name)
        if prompt_text is None:
            prompt_text = text[:cut]
        elif text[:cut] != prompt_text:
            raise DataError(where, "the turns before the last assistant turn differ from those of 'chosen'", name)
        answers[name] = answer.strip()
    prompt = _hh_messages(prompt_text, where, "chosen")
    _check_prompt(prompt, where, "chosen")
    return PreferencePair(prompt, answers["chosen"], answers["rejected"], 0.0, None, None, index)


def messages(row: dict, where: str, index: int = -1) -> Conversation:
    """SmolTalk-style `messages`: a whole conversation for SFT, ending with the assistant's turn.
    Its RL prompt is everything up to the last user turn (see `conversation_prompt`)."""
    msgs = _messages(_get(row, "messages", where), where, "messages")
    if not msgs or msgs[-1]["role"] != "assistant":
        got = repr(msgs[-1]["role"]) if msgs else "an empty list"
        raise DataError(where, f"the last message must be the assistant's, got {got}", "messages")
    if not msgs[-1]["content"].strip():
        raise DataError(where, "empty response", f"messages[{len(msgs) - 1}].content")
    _check_prompt(conversation_prompt(msgs), where, "messages")
    return Conversation(msgs, index, _optional_str(row, "domain", where), _optional_str(row, "language", where))


# A dict, not a registry: adding a format means adding a function here and to DataConfig.format.
ADAPTERS: dict[str, Callable[..., Record]] = {
    "helpsteer3": helpsteer3,
    "ultrafeedback": ultrafeedback,
    "hh_rlhf": hh_rlhf,
    "messages": messages,
}


def get_adapter(fmt: str) -> Callable[..., Record]:
    if fmt not in ADAPTERS:
        raise DataError("data.format", f"unknown format {fmt!r}; valid formats: {', '.join(ADAPTERS)}")
    return ADAPTERS[fmt]


def prompt_of(record: Record) -> list[dict]:
    """The RL prompt of any record."""
    if isinstance(record, PreferencePair):
        return record.prompt
    if isinstance(record, Prompt):
        return record.messages
    return conversation_prompt(record.messages)
