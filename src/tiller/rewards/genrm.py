"""A generative reward model (GenRM) behind an OpenAI-compatible chat-completions server.

Made for nvidia/Llama-3_3-Nemotron-Super-49B-GenRM-Multilingual served by vLLM; any server
speaking the same protocol works. docs/remote-rewards.md (section 1) is the reference: how to
serve it, the config keys (`backend: genrm`, `genrm_mode: single | pairwise`,
`genrm_both_orders`, `genrm_fallback`, ...), the request and answer formats and where they
come from, how scores are made, and what happens on each failure.

In short: the conversation goes out as chat messages followed by the candidate answer(s) with
the roles `response_1` / `response_2` (`build_genrm_messages`, after `strip_thinking`); the
scores are read from the `\\boxed{}` sections of the GenRM's answer (`parse_genrm_answer`);
`single` rewards a completion with its helpfulness (1-5), `pairwise` with its mean preference
over the comparisons in its group (0-1). Transport failures are retried, an unreadable answer
is asked for once more, and every failure is counted in `metrics()` and raised as a
`RemoteRewardError` (or replaced by `genrm_fallback` where that is set).
"""

from __future__ import annotations

import logging
import re
import threading
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Sequence

from tiller.config import RewardBackendConfig
from tiller.rewards import strip_thinking
from tiller.rewards.http import (
    RemoteRequestRejected,
    RemoteRewardError,
    RetryPolicy,
    one_line,
    read_token,
    request_json,
    run_all,
)

log = logging.getLogger("tiller.rewards")

HELPFULNESS_RANGE = (1.0, 5.0)
RANKING_RANGE = (1.0, 6.0)
RETRY_TEMPERATURE = 0.6
RETRY_TOP_P = 0.95
# Statuses that mean "this request cannot be served" (too long, invalid), not "try later".
REJECTED_STATUSES = frozenset({400, 413, 422})


class GenRMParseError(RemoteRewardError, ValueError):
    """The GenRM's answer holds no usable score. A RemoteRewardError, so that a caller of
    `score` catches one class for every way the remote judge can fail."""


@dataclass(frozen=True)
class GenRMVerdict:
    """Scores read from one GenRM answer."""

    helpfulness: tuple[float, ...]  # one per response; may be empty in pairwise mode
    ranking: float | None = None  # 1-6, pairwise only

    @property
    def preference_1(self) -> float:
        """How much response 1 is preferred: 1.0 (much better) ... 0.0 (much worse)."""
        if self.ranking is None:
            raise ValueError("a single-response verdict has no ranking")
        return (RANKING_RANGE[1] - self.ranking) / (RANKING_RANGE[1] - RANKING_RANGE[0])


# ----------------------------------------------------------------------------- request building


def build_genrm_messages(prompt: Sequence[dict], responses: Sequence[str], strip: bool = True) -> tuple[list[dict], int]:
    """The chat messages for one GenRM request, and how many system messages were left out.

    The conversation (user/assistant turns, last one the user's) followed by one message per
    candidate with role `response_1`, `response_2`."""
    if not 1 <= len(responses) <= 2:
        raise ValueError(f"the GenRM judges one or two responses at a time, got {len(responses)}")
    messages: list[dict] = []
    dropped = 0
    for i, m in enumerate(prompt):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise ValueError(f"prompt message {i} must be a mapping with string 'role' and 'content', got {m!r:.120}")
        if m["role"] == "system":
            dropped += 1
            continue
        if m["role"] not in ("user", "assistant"):
            raise ValueError(f"prompt message {i} has role {m['role']!r}; the GenRM takes user and assistant turns")
        messages.append({"role": m["role"], "content": m["content"]})
    if not messages or messages[-1]["role"] != "user":
        last = messages[-1]["role"] if messages else "nothing"
        raise ValueError(f"the GenRM judges the answer to a user turn: the conversation must end with a user message, not {last}")
    for n, text in enumerate(responses, start=1):
        messages.append({"role": f"response_{n}", "content": strip_thinking(text) if strip else text})
    return messages, dropped


# ----------------------------------------------------------------------------- answer parsing

_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
_TEXT_WRAPPER = re.compile(r"\\(?:text|textbf|mathbf|mathrm)\{([^{}]*)\}")


def _boxes(text: str) -> list[str]:
    """Contents of every \\boxed{...} in order (nested braces allowed)."""
    out = []
    start = 0
    while True:
        i = text.find("\\boxed{", start)
        if i < 0:
            return out
        j = i + len("\\boxed{")
        depth = 1
        k = j
        while k < len(text) and depth:
            if text[k] == "{":
                depth += 1
            elif text[k] == "}":
                depth -= 1
            k += 1
        if depth:  # unclosed box: the answer was cut off
            return out
        out.append(text[j:k - 1])
        start = k


def _numbers(box: str) -> list[float]:
    content = _TEXT_WRAPPER.sub(r"\1", box).replace("$", "").strip()
    parts = [p.strip() for p in content.split(",")]
    values = []
    for p in parts:
        if not _NUMBER.fullmatch(p):
            raise GenRMParseError(f"\\boxed{{{box}}} does not hold comma-separated numbers")
        values.append(float(p))
    return values


def _section(text: str, name: str) -> str | None:
    begin = f"[The Begin of {name}]"
    i = text.rfind(begin)
    if i < 0:
        return None
    rest = text[i + len(begin):]
    j = rest.find(f"[The End of {name}]")
    return rest if j < 0 else rest[:j]


def _check_range(values: Sequence[float], lo_hi: tuple[float, float], what: str) -> None:
    for v in values:
        if not lo_hi[0] <= v <= lo_hi[1]:
            raise GenRMParseError(f"{what} {v:g} is outside {lo_hi[0]:g}-{lo_hi[1]:g}")


def parse_genrm_answer(text: str | None, num_responses: int) -> GenRMVerdict:
    """Read the scores from a GenRM answer (see the module docstring); GenRMParseError if none."""
    if num_responses not in (1, 2):
        raise ValueError(f"num_responses must be 1 or 2, got {num_responses}")
    if not text or not text.strip():
        raise GenRMParseError("empty answer")
    if "</think>" in text:
        text = text.rsplit("</think>", 1)[1]
    elif text.lstrip().startswith("<think>"):
        raise GenRMParseError("the reasoning never finished (<think> without </think>)")
    individual = _section(text, "Individual Scores")
    ranking_sec = _section(text, "Ranking Score")

    def last_box(where: str | None) -> list[float] | None:
        boxes = _boxes(where) if where is not None else []
        return _numbers(boxes[-1]) if boxes else None

    if num_responses == 1:
        values = last_box(individual) if individual is not None else None
        if values is None:
            values = last_box(text)
        if values is None:
            raise GenRMParseError("no \\boxed{} score in the answer")
        if len(values) != 1:
            raise GenRMParseError(f"expected one helpfulness score for one response, got {len(values)} numbers")
        _check_range(values, HELPFULNESS_RANGE, "helpfulness")
        return GenRMVerdict(helpfulness=(values[0],))

    helpfulness: list[float] | None
    ranking: float | None = None
    if individual is not None or ranking_sec is not None:
        helpfulness = last_box(individual)
        r = last_box(ranking_sec)
        if r is not None:
            if len(r) != 1:
                raise GenRMParseError(f"expected one ranking score, got {len(r)} numbers")
            ranking = r[0]
        elif helpfulness is not None and len(helpfulness) == 3:
            helpfulness, ranking = helpfulness[:2], helpfulness[2]
    else:
        boxes = _boxes(text)
        if not boxes:
            raise GenRMParseError("no \\boxed{} score in the answer")
        last = _numbers(boxes[-1])
        helpfulness = None
        if len(last) == 3:
            helpfulness, ranking = last[:2], last[2]
        elif len(last) == 1:
            ranking = last[0]
            if len(boxes) >= 2:
                try:
                    prev = _numbers(boxes[-2])
                except GenRMParseError:
                    prev = []
                helpfulness = prev if len(prev) == 2 else None
        else:
            raise GenRMParseError(f"expected a ranking score (or h1, h2, ranking) in the last \\boxed{{}}, got {len(last)} numbers")
    if ranking is None:
        raise GenRMParseError("no ranking score in the answer")
    if helpfulness is not None and len(helpfulness) != 2:
        raise GenRMParseError(f"expected two helpfulness scores for two responses, got {len(helpfulness)}")
    _check_range([ranking], RANKING_RANGE, "ranking")
    _check_range(helpfulness or [], HELPFULNESS_RANGE, "helpfulness")
    return GenRMVerdict(helpfulness=tuple(helpfulness or ()), ranking=ranking)


# ----------------------------------------------------------------------------- the client


def openai_base_url(url: str) -> str:
    """`http://h:8000` -> `http://h:8000/v1`; a URL with a path (…/v1, …/chat/completions) is kept."""
    base = url.strip().rstrip("/")
    if base.endswith("/chat/completions"):
        base = base[: -len("/chat/completions")]
    if urllib.parse.urlsplit(base).path in ("", "/"):
        base += "/v1"
    return base


class GenRMReward:
    """Rewards from a GenRM over an OpenAI-compatible chat-completions API (module docstring)."""

    def __init__(self, cfg: RewardBackendConfig, *, backoff_s: float | None = None, check: bool = True):
        if not cfg.url:
            raise ValueError("reward backend 'genrm' needs reward.url (the server's OpenAI base URL, e.g. http://127.0.0.1:8000/v1)")
        self.cfg = cfg
        self.base_url = openai_base_url(cfg.url)
        self.model_name = cfg.model_name
        self.policy = RetryPolicy.from_config(cfg, backoff_s)
        self.fallback = cfg.genrm_fallback
        self.temperature = float(getattr(cfg, "genrm_temperature", 0.0))
        self.max_tokens = getattr(cfg, "genrm_max_tokens", None)
        self._key = read_token(cfg.api_key_env, None, "GenRM server")
        self._pool = ThreadPoolExecutor(max_workers=cfg.concurrency, thread_name_prefix="tiller-genrm")
        self._lock = threading.Lock()
        self._counts = {
            "reward/genrm_requests": 0,
            "reward/genrm_retries": 0,
            "reward/genrm_parse_failures": 0,
            "reward/genrm_parse_retries": 0,
            "reward/genrm_fallbacks": 0,
            "reward/genrm_rejected": 0,
            "reward/genrm_system_messages_dropped": 0,
        }
        self._warned_system = False
        if check:
            self.check()
        elif not self.model_name:
            raise ValueError("reward.model_name is required when the server is not checked")

    def __repr__(self) -> str:  # never shows the key
        return f"GenRMReward(url={self.base_url!r}, model={self.model_name!r}, mode={self.cfg.genrm_mode!r})"

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._counts[key] += n

    def _refused(self, e: RemoteRequestRejected) -> RemoteRewardError:
        if e.status in (401, 403):
            hint = (f"refused the API key from ${self.cfg.api_key_env}" if self.cfg.api_key_env
                    else "requires an API key: name its environment variable in reward.api_key_env")
            return RemoteRewardError(f"the GenRM server at {self.base_url} {hint} ({e})", url=self.base_url, status=e.status)
        if e.status == 404:
            return RemoteRewardError(
                f"{e}: is reward.url the server's OpenAI-compatible base URL (e.g. http://127.0.0.1:8000/v1)?",
                url=self.base_url, status=e.status,
            )
        return e

    def check(self) -> list[str]:
        """Ask the server which models it serves: fail clearly if it is unreachable, refuses the
        key, or does not serve `model_name` (None picks the only/first one it serves)."""
        url = f"{self.base_url}/models"
        try:
            answer = request_json(url, policy=self.policy, token=self._key, what="GenRM server check",
                                  on_retry=lambda _: self._count("reward/genrm_retries"))
        except RemoteRequestRejected as e:
            raise self._refused(e) from None
        except RemoteRewardError as e:
            raise RemoteRewardError(
                f"the GenRM server is unreachable: {e}. Start it first (docs/remote-rewards.md) or fix reward.url.",
                url=url,
            ) from None
        data = answer.get("data") if isinstance(answer, dict) else None
        ids = [m["id"] for m in data or [] if isinstance(m, dict) and isinstance(m.get("id"), str)]
        if not ids:
            raise RemoteRewardError(
                f"{url} lists no models; is this an OpenAI-compatible server? answer: {one_line(str(answer), 200)}", url=url
            )
        if self.model_name is None:
            self.model_name = ids[0]
            log.info("GenRM: reward.model_name not set, using %s served at %s", ids[0], self.base_url)
        elif self.model_name not in ids:
            raise RemoteRewardError(
                f"the GenRM server at {self.base_url} does not serve reward.model_name={self.model_name!r}; it serves {ids}",
                url=url,
            )
        return ids

    # -- one judgement

    def _complete(self, messages: list[dict], retry: bool, abort: threading.Event | None) -> str:
        body: dict = {
            "model": self.model_name,
            "messages": messages,
            "temperature": max(self.temperature, RETRY_TEMPERATURE) if retry else self.temperature,
            "top_p": RETRY_TOP_P if retry else 1.0,
            "stream": False,
        }
        if self.max_tokens:
            body["max_tokens"] = int(self.max_tokens)
        self._count("reward/genrm_requests")
        url = f"{self.base_url}/chat/completions"
        try:
            answer = request_json(url, body, policy=self.policy, token=self._key, what="GenRM request",
                                  on_retry=lambda _: self._count("reward/genrm_retries"), abort=abort)
        except RemoteRequestRejected as e:
            raise self._refused(e) from None
        try:
            content = answer["choices"][0]["message"].get("content")
        except (KeyError, IndexError, TypeError, AttributeError):
            raise RemoteRewardError(
                f"{url} answered without choices[0].message: {one_line(str(answer), 200)}", url=url
            ) from None
        if content is not None and not isinstance(content, str):
            raise RemoteRewardError(f"{url} answered a message content that is not text: {one_line(str(content), 200)}", url=url)
        return content or ""

    def judge(self, prompt: Sequence[dict], responses: Sequence[str], abort: threading.Event | None = None) -> GenRMVerdict | None:
        """Judge one or two responses to a conversation. None means: use the fallback."""
        messages, dropped = build_genrm_messages(prompt, responses, strip=self.cfg.strip_thinking)
        if dropped:
            self._count("reward/genrm_system_messages_dropped", dropped)
            if not self._warned_system:
                self._warned_system = True
                log.warning("GenRM: system messages are not sent to the judge (its chat template has its own instructions)")
        error: Exception | None = None
        answer = ""
        for attempt in range(2):  # the answer, then one more try if it cannot be read
            try:
                answer = self._complete(messages, retry=attempt > 0, abort=abort)
            except RemoteRequestRejected as e:
                if e.status not in REJECTED_STATUSES:
                    raise
                self._count("reward/genrm_rejected")
                error = e
                break  # the same request would be refused again
            try:
                return parse_genrm_answer(answer, len(responses))
            except GenRMParseError as e:
                self._count("reward/genrm_parse_failures")
                error = e
                if attempt == 0:
                    self._count("reward/genrm_parse_retries")
        if self.fallback is None:
            if isinstance(error, RemoteRequestRejected):
                raise RemoteRewardError(
                    f"{error}; set reward.genrm_fallback to score such requests with a fixed value instead",
                    url=self.base_url, status=error.status,
                ) from None
            tail = answer.strip()[-300:]
            raise GenRMParseError(
                f"the GenRM at {self.base_url} gave no readable score twice ({error}); its last answer ended with: "
                f"{tail!r}. Set reward.genrm_fallback to use a fixed score instead."
            )
        self._count("reward/genrm_fallbacks")
        log.warning("GenRM: no usable score (%s); using genrm_fallback=%g", error, self.fallback)
        return None

    # -- the backend interface

    def score(self, prompts: list[list[dict]], completions: list[str], group_size: int = 1,
              records: list[dict] | None = None) -> list[float]:
        n = len(completions)
        if len(prompts) != n:
            raise ValueError(f"{len(prompts)} prompts for {n} completions")
        if group_size < 1 or n % group_size:
            raise ValueError(f"{n} completions do not split into groups of {group_size}")
        if n == 0:
            return []
        abort = threading.Event()
        if self.cfg.genrm_mode == "single":
            verdicts = run_all(self._pool, [lambda i=i: self.judge(prompts[i], [completions[i]], abort) for i in range(n)], abort)
            return [v.helpfulness[0] if v is not None else float(self.fallback) for v in verdicts]
        if self.cfg.genrm_mode != "pairwise":
            raise ValueError(f"unknown genrm_mode {self.cfg.genrm_mode!r}: use single or pairwise")
        if group_size < 2:
            raise ValueError("genrm_mode 'pairwise' compares the completions of a prompt: it needs group_size >= 2")
        pairs = self.comparison_pairs(n, group_size, self.cfg.genrm_both_orders)
        verdicts = run_all(
            self._pool,
            [lambda i=i, j=j: self.judge(prompts[i], [completions[i], completions[j]], abort) for i, j in pairs],
            abort,
        )
        prefs: list[list[float]] = [[] for _ in range(n)]
        for (i, j), v in zip(pairs, verdicts):
            if v is None:
                continue
            prefs[i].append(v.preference_1)
            prefs[j].append(1.0 - v.preference_1)
        return [sum(p) / len(p) if p else float(self.fallback) for p in prefs]

    @staticmethod
    def comparison_pairs(n: int, group_size: int, both_orders: bool) -> list[tuple[int, int]]:
        """(first, second) completion indices of every comparison, groups of `group_size`."""
        pairs = []
        for start in range(0, n, group_size):
            p = 0
            for a in range(group_size):
                for b in range(a + 1, group_size):
                    i, j = start + a, start + b
                    if both_orders:
                        pairs += [(i, j), (j, i)]
                    else:
                        pairs.append((i, j) if p % 2 == 0 else (j, i))
                    p += 1
        return pairs

    def metrics(self) -> dict[str, float]:
        """Cumulative counters since construction (`reward/genrm_*`)."""
        with self._lock:
            return {k: float(v) for k, v in self._counts.items()}

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
