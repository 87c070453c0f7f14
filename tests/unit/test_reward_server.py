"""`tiller serve-reward` and the `http` reward backend, end to end over loopback.

Servers run in a background thread (RewardServer) or as `python -m tiller.rewards.server`
subprocesses; every test shuts its server down."""

from __future__ import annotations

import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tiller.config import RewardBackendConfig
from tiller.rewards import make_reward_backend
from tiller.rewards.function import FunctionReward
from tiller.rewards.http import HttpReward, RemoteRewardError, RetryPolicy
from tiller.rewards.server import Batcher, RewardServer, main, parse_score_request, BadRequest

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
TOKEN_ENV = "TILLER_REWARD_TOKEN"
TOKEN = "test-token-5f1d0c9a"
PROMPT = [{"role": "user", "content": "Say something with the letter a."}]


def count_a(completions: list[str]) -> list[float]:
    return [float(c.count("a")) for c in completions]


def call(url: str, payload: Any = None, token: str | None = TOKEN, raw: bytes | None = None,
         auth_header: str | None = None) -> tuple[int, dict]:
    """One HTTP request with the standard library; (status, JSON body) for errors too."""
    data = raw if raw is not None else (json.dumps(payload).encode() if payload is not None else None)
    headers = {"Content-Type": "application/json"}
    if auth_header is not None:
        headers["Authorization"] = auth_header
    elif token is not None:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, headers=headers, method="POST" if data is not None else "GET")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def body(completions: list[str], group_size: int = 1, prompts: list | None = None) -> dict:
    return {"prompts": prompts or [PROMPT] * len(completions), "completions": completions, "group_size": group_size}


class CountingBackend:
    """count_a, recording each backend call's size; the first call can wait for a condition."""

    def __init__(self, hold_first_call_until: Any = None):
        self.calls: list[int] = []
        self.hold = hold_first_call_until
        self.closed = False

    def score(self, prompts: list, completions: list[str], group_size: int = 1) -> list[float]:
        self.calls.append(len(completions))
        if len(self.calls) == 1 and self.hold is not None:
            deadline = time.monotonic() + 10
            while not self.hold() and time.monotonic() < deadline:
                time.sleep(0.01)
        return count_a(completions)

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def server():
    backend = FunctionReward("tests.helpers.rule_rewards:count_a")
    with RewardServer(backend, token=TOKEN, backend_name="callable") as s:
        yield s


def http_cfg(url: str, **kw: Any) -> RewardBackendConfig:
    base = dict(backend="http", url=url, api_key_env=None, max_retries=2, timeout_s=5.0, concurrency=4, batch_size=4)
    base.update(kw)
    return RewardBackendConfig(**base)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------- endpoints


def test_health_and_score(server: RewardServer) -> None:
    assert server.url.startswith("http://127.0.0.1:")
    assert call(f"{server.url}/health", token=None) == (200, {"status": "ok", "backend": "callable", "auth": "missing"})
    assert call(f"{server.url}/health")[1]["auth"] == "ok"
    assert call(f"{server.url}/health", token="nope")[1]["auth"] == "invalid"
    status, out = call(f"{server.url}/score", body(["banana", "xyz", "<think>aaaa</think>a", "aa", "", "a"], group_size=2))
    assert status == 200
    assert out == {"scores": [3.0, 0.0, 1.0, 2.0, 0.0, 1.0]}  # the callable backend strips <think>


def test_missing_or_wrong_token_is_401(server: RewardServer) -> None:
    for kwargs in ({"token": None}, {"token": "wrong"}, {"auth_header": f"Basic {TOKEN}"}, {"auth_header": "Bearer"}):
        status, out = call(f"{server.url}/score", body(["a"]), **kwargs)
        assert status == 401, kwargs
        assert "bearer token" in out["error"]
    assert server.httpd.batcher.stats["requests"] == 0  # the backend never saw them
    assert server.httpd.counts["unauthorized"] == 4


@pytest.mark.parametrize("raw, fragment", [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (json.dumps({"prompts": [PROMPT]}).encode(), "missing key 'completions'"),
    (json.dumps({"completions": ["a"]}).encode(), "missing key 'prompts'"),
    (json.dumps(body(["a", "b"]) | {"prompts": [PROMPT]}).encode(), "1 prompts for 2 completions"),
    (json.dumps(body(["a"]) | {"group_size": 0}).encode(), "'group_size' must be a positive integer"),
    (json.dumps(body(["a"]) | {"group_size": "2"}).encode(), "'group_size' must be a positive integer"),
    (json.dumps(body(["a", "b", "c"], group_size=2)).encode(), "do not split into groups of group_size=2"),
    (json.dumps(body(["a"], prompts=["hello"])).encode(), "prompts[0] must be a non-empty list"),
    (json.dumps(body(["a"], prompts=[[{"role": "user"}]])).encode(), "prompts[0][0] must be an object"),
    (json.dumps({"prompts": [PROMPT], "completions": [3]}).encode(), "'completions' must be a list of strings"),
    (json.dumps(body(["a"]) | {"completion": ["a"]}).encode(), "unknown key(s) ['completion']"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),  # RecursionError in json: still a 400
])
def test_malformed_body_is_400_with_a_clear_message(server: RewardServer, raw: bytes, fragment: str) -> None:
    status, out = call(f"{server.url}/score", raw=raw)
    assert status == 400
    assert fragment in out["error"]


def test_token_is_checked_before_the_body_is_read(server: RewardServer) -> None:
    """Headers announcing a 10 MB body, and no body: the 401 comes at once, without waiting for it."""
    port = server.httpd.server_address[1]
    for auth in ("", "Authorization: Bearer wrong\r\n"):
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(f"POST /score HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 10000000\r\n\r\n".encode())
            answer = b""
            while chunk := sock.recv(4096):  # until the server closes; a timeout here fails the test
                answer += chunk
        assert answer.startswith(b"HTTP/1.0 401"), answer[:100]
        assert b"bearer token" in answer
    assert server.httpd.counts["unauthorized"] == 2


def test_unknown_endpoint_is_404(server: RewardServer) -> None:
    assert call(f"{server.url}/nope")[0] == 404
    assert call(f"{server.url}/scores", body(["a"]))[0] == 404


def test_parse_score_request_accepts_the_documented_shape() -> None:
    prompts, completions, k = parse_score_request(json.dumps({"prompts": [PROMPT], "completions": ["a"]}).encode())
    assert (prompts, completions, k) == ([PROMPT], ["a"], 1)
    with pytest.raises(BadRequest):
        parse_score_request(b"null")


def test_concurrent_requests_are_all_answered_correctly(server: RewardServer) -> None:
    results: dict[tuple[int, int], Any] = {}

    def client(t: int) -> None:
        for r in range(5):
            comps = [("a" * ((t + r + i) % 7)) + f" thread {t} req {r}" for i in range(4)]
            results[(t, r)] = (comps, call(f"{server.url}/score", body(comps, group_size=2)))

    threads = [threading.Thread(target=client, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=30)
    assert len(results) == 40
    for comps, (status, out) in results.values():
        assert status == 200
        assert out["scores"] == count_a(comps)


def test_concurrent_requests_are_merged_into_fewer_backend_calls() -> None:
    holder: dict[str, RewardServer] = {}
    # The worker stays busy with the first request until the five others are queued.
    backend = CountingBackend(hold_first_call_until=lambda: holder["s"].httpd.batcher._queue.qsize() >= 5)
    with RewardServer(backend, token=TOKEN) as s:
        holder["s"] = s
        results: list[Any] = [None] * 6

        def client(i: int) -> None:
            results[i] = call(f"{s.url}/score", body(["a" * i, "b", "aa"]))

        first = threading.Thread(target=client, args=(0,))
        first.start()
        while not backend.calls:
            time.sleep(0.01)
        others = [threading.Thread(target=client, args=(i,)) for i in range(1, 6)]
        for th in others:
            th.start()
        for th in [first, *others]:
            th.join(timeout=20)
    assert [r[1]["scores"] for r in results] == [[float(i), 0.0, 2.0] for i in range(6)]
    assert backend.calls == [3, 15]  # the five waiting requests were scored in one call


def test_batcher_isolates_a_failing_request() -> None:
    release = threading.Event()
    calls: list[list[str]] = []

    class Picky:
        def score(self, prompts: list, completions: list[str], group_size: int = 1) -> list[float]:
            calls.append(list(completions))
            if len(calls) == 1:
                release.wait(10)
            if "boom" in completions:
                raise ValueError("cannot score 'boom'")
            return count_a(completions)

        def close(self) -> None:
            pass

    batcher = Batcher(Picky())
    out: dict[str, Any] = {}

    def submit(name: str, comps: list[str]) -> None:
        try:
            out[name] = batcher.score([PROMPT] * len(comps), comps, 1)
        except ValueError as e:
            out[name] = e

    try:
        threads = [threading.Thread(target=submit, args=("first", ["a"]))]
        threads[0].start()
        while not calls:
            time.sleep(0.01)
        for name, comps in (("good", ["aa", "b"]), ("bad", ["boom"])):
            threads.append(threading.Thread(target=submit, args=(name, comps)))
            threads[-1].start()
        while batcher._queue.qsize() < 2:
            time.sleep(0.01)
        release.set()
        for th in threads:
            th.join(timeout=10)
    finally:
        batcher.close()
    assert out["first"] == [1.0] and out["good"] == [2.0, 0.0]
    assert isinstance(out["bad"], ValueError) and "boom" in str(out["bad"])
    assert calls[1] == ["aa", "b", "boom"]  # merged, failed, then each request alone
    assert calls[2:] == [["aa", "b"], ["boom"]]


def test_backend_error_is_500_with_its_message() -> None:
    class Broken(CountingBackend):
        def score(self, prompts: list, completions: list[str], group_size: int = 1) -> list[float]:
            raise RuntimeError("reward model exploded")

    with RewardServer(Broken(), token=None) as s:
        status, out = call(f"{s.url}/score", body(["a"]), token=None)
        assert status == 500 and "reward model exploded" in out["error"]
        assert call(f"{s.url}/health", token=None)[1]["auth"] == "disabled"


# ----------------------------------------------------------------------------- the http backend


def test_http_reward_client(server: RewardServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    backend = make_reward_backend(http_cfg(server.url))
    try:
        assert isinstance(backend, HttpReward)
        comps = [f"<think>{'a' * 9}</think>{'a' * i}" if i % 3 == 0 else "a" * i for i in range(12)]
        prompts = [[{"role": "user", "content": f"prompt {i // 3}"}] for i in range(12)]
        scores = backend.score(prompts, comps, group_size=3)
        assert scores == [float(i) for i in range(12)]  # the thinking blocks are not scored
        m = backend.metrics()
        # whole groups per request: batch_size 4 holds one group of 3, so 4 requests
        assert m["reward/http_requests"] == 4 and m["reward/http_retries"] == 0
        assert backend.score([], []) == []
        assert TOKEN not in repr(backend)
        with pytest.raises(ValueError, match="groups of 2"):
            backend.score([PROMPT] * 3, ["a"] * 3, group_size=2)
    finally:
        backend.close()


def test_http_reward_wrong_or_missing_token_fails_at_start(server: RewardServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_REWARD_TOKEN", "not-the-token")
    with pytest.raises(RemoteRewardError) as err:
        HttpReward(http_cfg(server.url, api_key_env="MY_REWARD_TOKEN"))
    assert "$MY_REWARD_TOKEN" in str(err.value) and "not-the-token" not in str(err.value)
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    with pytest.raises(RemoteRewardError, match="missing"):
        HttpReward(http_cfg(server.url))
    with pytest.raises(RemoteRewardError, match="UNSET_TOKEN_VAR"):
        HttpReward(http_cfg(server.url, api_key_env="UNSET_TOKEN_VAR"))


def test_http_reward_unreachable_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    url = f"http://127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    with pytest.raises(RemoteRewardError) as err:
        HttpReward(http_cfg(url, max_retries=1), backoff_s=0.01)
    assert time.monotonic() - t0 < 10
    assert f"{url}/health" in str(err.value) and "2 attempt" in str(err.value)


def test_worst_case_of_a_request() -> None:
    policy = RetryPolicy(max_retries=2, timeout_s=3.0, backoff_s=1.0, max_backoff_s=1.5)
    assert policy.worst_case_s(retry_after=False) == 3 * 3.0 + 1.25 * (1.0 + 1.5)  # attempts + longest backoff waits
    assert policy.worst_case_s() == 3 * 3.0 + 2 * 1.25 * 1.5  # a Retry-After may stretch each wait to the cap
    for n in range(2):
        assert policy.delay(n, retry_after=100.0) == 1.25 * 1.5
        assert policy.delay(n) <= 1.25 * min(1.5, 1.0 * 2 ** n)


@pytest.mark.faults  # issue 16: a client against a server that sends 1 byte at a time
def test_timeout_is_a_deadline_not_a_per_read_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that answers a byte every 0.5 s never trips a 2 s socket timeout; the client still
    gives up after (max_retries + 1) * timeout_s plus the backoff, with a one-line error."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    stop = threading.Event()

    class Trickle(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers["Content-Length"]))
            payload = json.dumps({"scores": [1.0]}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            for byte in payload:
                if stop.wait(0.5):
                    return
                self.wfile.write(bytes([byte]))

    class Quiet(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request: Any, client_address: Any) -> None:
            pass  # the client hung up on the trickle: expected

    trickle = Quiet(("127.0.0.1", 0), Trickle)
    thread = threading.Thread(target=trickle.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    backend = HttpReward(http_cfg(f"http://127.0.0.1:{trickle.server_address[1]}", timeout_s=2.0, max_retries=1),
                         backoff_s=0.1, check=False)
    try:
        t0 = time.monotonic()
        with pytest.raises(RemoteRewardError) as err:
            backend.score([PROMPT], ["a"])
        elapsed = time.monotonic() - t0
    finally:
        backend.close()
        stop.set()
        trickle.shutdown()
        trickle.server_close()
    assert 3.9 < elapsed < backend.policy.worst_case_s(retry_after=False) + 1.5, f"gave up after {elapsed:.1f} s"
    msg = str(err.value)
    assert "no complete answer within timeout_s=2 s" in msg and "2 attempt" in msg and "\n" not in msg


# ----------------------------------------------------------------------------- the command line, as a process


def _start(config: Path, extra_env: dict[str, str] | None = None, args: list[str] | None = None) -> tuple[subprocess.Popen, str, list[str]]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT)]), HF_HUB_OFFLINE="1")
    env.update(extra_env or {})
    proc = subprocess.Popen(
        [sys.executable, "-m", "tiller.rewards.server", "--config", str(config), "--port", "0", *(args or [])],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT,
    )
    lines: queue.Queue = queue.Queue()
    seen: list[str] = []
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            if proc.poll() is not None:
                break
            continue
        seen.append(line)
        if "listening on " in line:
            return proc, line.split("listening on ", 1)[1].strip(), seen
    proc.kill()
    proc.wait(timeout=10)
    raise AssertionError(f"serve-reward did not start: {''.join(seen)}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _config(tmp_path: Path, function: str) -> Path:
    path = tmp_path / "serve.yaml"
    path.write_text(
        f"run_dir: {tmp_path / 'run'}\n"
        "rloo:\n  reward:\n    backend: callable\n"
        f"    function: {function}\n"
    )
    return path


def test_server_process_killed_mid_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg_path = _config(tmp_path, "tests.helpers.rule_rewards:slow_count_a")
    proc, url, seen = _start(cfg_path, {TOKEN_ENV: TOKEN})
    try:
        assert url.startswith("http://127.0.0.1:")
        assert not any(TOKEN in line for line in seen)  # the token is never printed
        monkeypatch.setenv(TOKEN_ENV, TOKEN)
        backend = HttpReward(http_cfg(url, max_retries=2, concurrency=2, batch_size=2), backoff_s=0.05)
        try:
            state = {"step": 7, "scores": [1.0, 2.0]}
            assert backend.score([PROMPT] * 2, ["aa", "b"]) == [2.0, 0.0]
            killer = threading.Timer(0.3, proc.kill)  # while the (1 s) request is being scored
            killer.start()
            t0 = time.monotonic()
            with pytest.raises(RemoteRewardError) as err:
                state["scores"] = backend.score([PROMPT] * 2, ["aaa", "a"])
            killer.join()
            assert time.monotonic() - t0 < 15
            msg = str(err.value)
            assert f"{url}/score" in msg and "3 attempt" in msg and "last error" in msg
            assert state == {"step": 7, "scores": [1.0, 2.0]}  # the caller's state is untouched
            m = backend.metrics()
            assert m["reward/http_retries"] == 2 and m["reward/http_failures"] == 1
        finally:
            backend.close()
    finally:
        _stop(proc)


def test_server_process_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    proc, url, _ = _start(_config(tmp_path, "tests.helpers.rule_rewards:prompt_length"), args=["--no-auth"])
    try:
        long_prompt = [{"role": "user", "content": "x" * 1000}, {"role": "assistant", "content": "ok"}, {"role": "user", "content": "é" * 5}]
        status, out = call(f"{url}/score", body(["a"], prompts=[long_prompt]), token=None)
        assert (status, out) == (200, {"scores": [5.0]})
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0


def test_refuses_to_start_without_a_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.delenv("SOME_UNSET_TOKEN", raising=False)
    cfg_path = _config(tmp_path, "tests.helpers.rule_rewards:count_a")
    assert main(["--config", str(cfg_path), "--token-env", "SOME_UNSET_TOKEN", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "$SOME_UNSET_TOKEN" in err and "--no-auth" in err


def test_connection_limits_must_be_positive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    cfg_path = _config(tmp_path, "tests.helpers.rule_rewards:count_a")
    for option in (["--workers", "0"], ["--max-connections", "0"], ["--timeout-s", "0"]):
        assert main(["--config", str(cfg_path), "--port", "0", *option]) == 2
        assert "--workers and --max-connections must be at least 1" in capsys.readouterr().err


def test_bad_config_and_bad_backend_are_clear_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    cfg_path = _config(tmp_path, "tests.helpers.rule_rewards:count_a")
    assert main(["--config", str(cfg_path), "--set", "rloo.reward.bakend=x"]) == 2
    assert "did you mean 'rloo.reward.backend'" in capsys.readouterr().err
    assert main(["--config", str(cfg_path), "--set", "rloo.reward.function=tests.helpers.rule_rewards:nope"]) == 2
    assert "no callable 'nope'" in capsys.readouterr().err


def test_redirects_are_refused_and_the_token_never_forwarded(monkeypatch: pytest.MonkeyPatch) -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen_auth: list[str | None] = []

    class Elsewhere(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            seen_auth.append(self.headers.get("Authorization"))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b'{"status": "ok"}')

    elsewhere = ThreadingHTTPServer(("127.0.0.1", 0), Elsewhere)

    class Redirector(Elsewhere):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(307)
            self.send_header("Location", f"http://127.0.0.1:{elsewhere.server_address[1]}/health")
            self.send_header("Content-Length", "0")
            self.end_headers()

    redirector = ThreadingHTTPServer(("127.0.0.1", 0), Redirector)
    threads = [threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
               for srv in (elsewhere, redirector)]
    for th in threads:
        th.start()
    try:
        monkeypatch.setenv(TOKEN_ENV, TOKEN)
        with pytest.raises(RemoteRewardError, match="HTTP 307"):
            HttpReward(http_cfg(f"http://127.0.0.1:{redirector.server_address[1]}"))
        assert seen_auth == []
    finally:
        for srv in (elsewhere, redirector):
            srv.shutdown()
            srv.server_close()
