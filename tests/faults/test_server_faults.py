"""Fault tests for `tiller serve-reward` (marker `faults`): what a client that misbehaves or
floods the server costs it. Loopback only (127.0.0.1), a few seconds each, every server
closed at the end (`with RewardServer(...)`), every socket with a timeout."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tiller.config import RewardBackendConfig
from tiller.rewards.http import HttpReward
from tiller.rewards.server import RewardServer

pytestmark = pytest.mark.faults

TOKEN = "fault-token-8d2e"
PROMPT = [{"role": "user", "content": "Say something with the letter a."}]


class CountA:
    def __init__(self, delay_s: float = 0.0):
        self.delay_s = delay_s
        self.called = threading.Event()

    def score(self, prompts: list, completions: list[str], group_size: int = 1) -> list[float]:
        self.called.set()
        time.sleep(self.delay_s)
        return [float(c.count("a")) for c in completions]

    def close(self) -> None:
        pass


def port_of(server: RewardServer) -> int:
    return server.httpd.server_address[1]


def score_body(completions: list[str]) -> bytes:
    return json.dumps({"prompts": [PROMPT] * len(completions), "completions": completions}).encode()


def post(port: int, body: bytes, token: str | None = TOKEN, timeout: float = 10.0) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        conn.request("POST", "/score", body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def read_until_closed(sock: socket.socket, limit_s: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and when it closed (s)."""
    t0 = time.monotonic()
    sock.settimeout(limit_s)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:  # closed with our unread bytes in its buffer: closed all the same
        pass
    return data, time.monotonic() - t0


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def test_unauthenticated_big_post_is_answered_401_unread() -> None:
    """The token is checked from the headers: a 200 MB POST without a valid one gets its 401
    before it has finished sending, the connection is closed, and the body never lands in memory."""
    declared = 200 * 1024 * 1024
    chunk = b"x" * (1 << 20)
    with RewardServer(CountA(), token=TOKEN, timeout_s=5.0) as server:
        rss_before = rss_mb()
        for auth in ("", "Authorization: Bearer wrong\r\n") * 2:
            sock = socket.create_connection(("127.0.0.1", port_of(server)), timeout=5)
            try:
                sock.sendall(f"POST /score HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: {declared}\r\n\r\n".encode())
                sent = 0
                try:
                    while sent < declared:
                        sent += sock.send(chunk)
                except OSError:  # the server answered and closed: sending more fails
                    pass
                answer, _ = read_until_closed(sock, limit_s=5)
            finally:
                sock.close()
            assert sent < declared // 4, f"the client could send {sent} bytes: the server kept reading"
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.0 401"), answer[:200]
            assert "bearer token" in json.loads(body)["error"]
        rss_growth = rss_mb() - rss_before
        assert server.httpd.counts["unauthorized"] == 4
        assert server.httpd.batcher.stats["requests"] == 0
    assert rss_growth < 50, f"RSS grew by {rss_growth:.0f} MB"


def test_idle_and_trickling_connections_are_closed_at_the_deadline() -> None:
    """Half-sent requests hold a connection for at most timeout_s from accept, even when the
    client keeps sending one byte at a time; then the server serves again."""
    timeout_s, workers = 1.0, 4
    with RewardServer(CountA(), token=TOKEN, timeout_s=timeout_s, workers=workers, max_connections=64) as server:
        port = port_of(server)
        idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(30)]
        for sock in idle:
            sock.sendall(b"POST /score HTTP/1.1\r\nHost: x\r\n")  # and never the rest
        trickler = socket.create_connection(("127.0.0.1", port), timeout=5)
        stop = threading.Event()

        def trickle() -> None:
            try:
                for byte in b"POST /score HTTP/1.1\r\nX-Slow: " + b"y" * 1000:
                    if stop.wait(0.1):
                        return
                    trickler.send(bytes([byte]))
            except OSError:  # closed by the server: what the test wants
                pass

        thread = threading.Thread(target=trickle, daemon=True)
        thread.start()
        try:
            t0 = time.monotonic()
            conn_threads = [t for t in threading.enumerate() if t.name.startswith("tiller-reward-conn")]
            assert len(conn_threads) <= workers  # 31 connections, not 31 threads
            for sock in [trickler, *idle]:
                data, _ = read_until_closed(sock, limit_s=5)
                assert data == b""  # closed without an answer: there was no request to answer
            elapsed = time.monotonic() - t0
            assert elapsed < timeout_s + 1.5, f"connections closed after {elapsed:.1f} s"
        finally:
            stop.set()
            thread.join(timeout=5)
            for sock in [trickler, *idle]:
                sock.close()
        assert post(port, score_body(["aa", "b"])) == (200, {"scores": [2.0, 0.0]})
        deadline = time.monotonic() + 2  # the worker forgets a connection just after answering it
        while server.httpd.open_connections() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.httpd.open_connections() == 0


def test_connection_limit_answers_503_and_the_client_gets_through(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TILLER_REWARD_TOKEN", TOKEN)
    with RewardServer(CountA(), token=TOKEN, timeout_s=1.5, workers=2, max_connections=4) as server:
        port = port_of(server)
        idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(4)]
        try:
            deadline = time.monotonic() + 5
            while server.httpd.open_connections() < 4 and time.monotonic() < deadline:
                time.sleep(0.01)
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/health")
            resp = conn.getresponse()
            assert resp.status == 503 and resp.getheader("Retry-After") == "1"
            assert "limit of 4 connections" in json.loads(resp.read())["error"]
            conn.close()
            assert server.httpd.counts["refused_busy"] == 1
            # The http backend retries the 503 and is served once the idle connections time out.
            cfg = RewardBackendConfig(backend="http", url=server.url, api_key_env=None, max_retries=4, timeout_s=5.0,
                                      concurrency=1, batch_size=4)
            backend = HttpReward(cfg, backoff_s=0.2, check=False)
            try:
                assert backend.score([PROMPT] * 2, ["aaa", "x"]) == [3.0, 0.0]
                assert backend.metrics()["reward/http_retries"] >= 1
            finally:
                backend.close()
        finally:
            for sock in idle:
                sock.close()


def test_16_concurrent_clients_have_no_failures() -> None:
    clients, per_client = 16, 25
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    with RewardServer(CountA(), token=TOKEN) as server:
        port = port_of(server)

        def client(c: int) -> None:
            for r in range(per_client):
                completions = ["a" * ((c + r) % 5), f"client {c} request {r}"]
                t0 = time.monotonic()
                try:
                    status, out = post(port, score_body(completions))
                    ok = status == 200 and out["scores"] == [float(x.count("a")) for x in completions]
                    outcome = "" if ok else f"{status} {out}"
                except Exception as e:  # noqa: BLE001 - counted, not raised in the thread
                    outcome = f"{type(e).__name__}: {e}"
                with lock:
                    latencies.append(time.monotonic() - t0)
                    if outcome:
                        failures.append(outcome)

        threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    assert failures == []
    assert len(latencies) == clients * per_client
    p99 = sorted(latencies)[int(0.99 * len(latencies)) - 1]
    # A dropped SYN (the old listen backlog of 5) costs a 1 s retransmit: p99 shows it.
    assert p99 < 1.0, f"p99 latency {p99:.3f} s"


def test_deeply_nested_json_is_a_400_with_a_message() -> None:
    depth = 200_000
    nested = b'{"prompts": ' + b"[" * depth + b"]" * depth + b', "completions": ["a"]}'
    with RewardServer(CountA(), token=TOKEN) as server:
        status, out = post(port_of(server), nested)
        assert status == 400
        assert "nested too deeply" in out["error"]
        assert server.httpd.counts["bad_requests"] == 1
        assert post(port_of(server), score_body(["a"])) == (200, {"scores": [1.0]})  # still serving


def test_close_ends_idle_connections_and_finishes_requests_in_flight() -> None:
    backend = CountA(delay_s=0.5)
    server = RewardServer(backend, token=TOKEN, timeout_s=30.0).start()
    port = port_of(server)
    idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(3)]
    result: dict[str, Any] = {}
    request = threading.Thread(target=lambda: result.update(answer=post(port, score_body(["aa"]))))
    try:
        request.start()
        assert backend.called.wait(5)
        t0 = time.monotonic()
        server.close()
        assert time.monotonic() - t0 < 2.0  # not the 30 s the idle connections were allowed
        request.join(timeout=5)
        assert result["answer"] == (200, {"scores": [2.0]})  # the request being scored was answered
        for sock in idle:
            assert read_until_closed(sock, limit_s=2)[0] == b""
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1)
    finally:
        server.close()
        for sock in idle:
            sock.close()
