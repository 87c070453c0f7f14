"""`tiller serve-reward` under load and under abuse, on loopback (a benchmark, not a test).

Starts the reward server (`tiller.rewards.server.RewardServer`, default limits) in a child
process with a trivial backend (reward = number of letters 'a'), then measures from this
process:

  load    N requests (default 1,000) of two short completions each, at 1, 16 and 64 concurrent
          clients, one connection per request as the tiller client does: requests/s, p50 and p99
          latency, failures (anything but a 200 with the right scores);
  flood   server RSS before and after 4 concurrent unauthenticated POSTs announcing 200 MB
          each (streamed from a 1 MB buffer until the server closes the connection), and how
          much of them the server let in;
  idle    1,000 connections that send half a request line and stop: the server's thread
          count while they are held, how many were refused at once (503), and when the last
          one was closed by the server.

    PYTHONPATH=src python bench/reward_server.py [--requests 1000] [--idle 1000] [--timeout-s 10]
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import platform
import socket
import statistics
import threading
import time
from pathlib import Path

from data_load import cpu_model  # bench/ is on sys.path when run as a script

TOKEN = "bench-token-3b9f27"
PROMPT = [{"role": "user", "content": "Say something with the letter a."}]


class CountA:
    """The trivial backend: what is measured is the server, not the model."""

    def score(self, prompts: list, completions: list[str], group_size: int = 1) -> list[float]:
        return [float(c.count("a")) for c in completions]

    def close(self) -> None:
        pass


def serve(conn: multiprocessing.connection.Connection, timeout_s: float) -> None:
    """The child process: serve until the parent says stop."""
    from tiller.rewards.server import RewardServer

    with RewardServer(CountA(), token=TOKEN, timeout_s=timeout_s) as server:
        conn.send(server.httpd.server_address[1])
        conn.recv()


def proc_status(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)




# ----------------------------------------------------------------------------- load


def one_request(port: int, i: int) -> tuple[float, str]:
    """(latency s, failure or '') for one /score request on a fresh connection."""
    completions = ["a" * (i % 7) + " banana", f"request {i}"]
    body = json.dumps({"prompts": [PROMPT] * 2, "completions": completions}).encode()
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", "/score", body=body,
                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"})
        resp = conn.getresponse()
        out = resp.read()
        failure = ""
        if resp.status != 200:
            failure = f"HTTP {resp.status}"
        elif json.loads(out)["scores"] != [float(c.count("a")) for c in completions]:
            failure = "wrong scores"
    except Exception as e:  # noqa: BLE001 - a failure to count, not to raise
        failure = type(e).__name__
    finally:
        conn.close()
    return time.perf_counter() - t0, failure


def load(port: int, clients: int, requests: int) -> dict:
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    counter = iter(range(requests))

    def client() -> None:
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            latency, failure = one_request(port, i)
            with lock:
                latencies.append(latency)
                if failure:
                    failures.append(failure)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    latencies.sort()
    return {
        "clients": clients, "requests": len(latencies), "rps": len(latencies) / wall,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[max(0, int(0.99 * len(latencies)) - 1)],
        "failures": len(failures), "kinds": sorted(set(failures)),
    }


# ----------------------------------------------------------------------------- abuse


def unauthenticated_post(port: int, declared: int) -> tuple[int, str]:
    """Stream an unauthenticated POST announcing `declared` bytes; (bytes sent, status line)."""
    chunk = b"x" * (1 << 20)
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(f"POST /score HTTP/1.1\r\nHost: bench\r\nContent-Length: {declared}\r\n\r\n".encode())
        try:
            while sent < declared:
                sent += sock.send(chunk)
        except OSError:  # the server answered and closed
            pass
        try:
            status = sock.recv(4096).split(b"\r\n", 1)[0].decode(errors="replace")
        except OSError as e:
            status = f"({type(e).__name__})"
    return sent, status or "(closed without an answer)"


def flood(port: int, pid: int, posts: int = 4, declared: int = 200 * 1024 * 1024) -> dict:
    rss_before = proc_status(pid, "VmRSS") / 1024
    results: list[tuple[int, str]] = []
    t0 = time.perf_counter()
    threads = [threading.Thread(target=lambda: results.append(unauthenticated_post(port, declared))) for _ in range(posts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    time.sleep(0.5)  # let the server finish with the connections before measuring
    return {"posts": posts, "declared_mb": declared / 2**20, "sent_mb": [round(s / 2**20, 1) for s, _ in results],
            "statuses": sorted({s for _, s in results}), "seconds": wall,
            "rss_before_mb": rss_before, "rss_after_mb": proc_status(pid, "VmRSS") / 1024}


def idle(port: int, pid: int, n: int, timeout_s: float) -> dict:
    threads_before = proc_status(pid, "Threads")
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout_s + 10)
        s.sendall(b"POST /score HT")  # half a request line, then nothing
        socks.append(s)
    t0 = time.perf_counter()
    time.sleep(0.5)
    threads_held = proc_status(pid, "Threads")
    refused = still_open = 0
    for s in socks:
        answer = b""
        try:
            while chunk := s.recv(4096):  # until the server closes the connection
                answer += chunk
        except ConnectionResetError:
            pass
        except TimeoutError:
            still_open += 1
        refused += answer.startswith(b"HTTP/1.0 503")
        s.close()
    return {"connections": n, "threads_before": threads_before, "threads_held": threads_held,
            "refused_503": refused, "still_open": still_open, "all_closed_after_s": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=1000, help="requests per concurrency level")
    ap.add_argument("--idle", type=int, default=1000, help="half-sent connections in the idle test")
    ap.add_argument("--timeout-s", type=float, default=10.0, help="the server's request deadline (its default: 10)")
    args = ap.parse_args()

    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=serve, args=(child, args.timeout_s), daemon=True)
    proc.start()
    port = parent.recv()
    try:
        print(f"CPU: {cpu_model()} ({os.cpu_count()} cores), Python {platform.python_version()}, "
              f"load average {os.getloadavg()[0]:.2f}; server pid {proc.pid} on 127.0.0.1:{port}")
        print("\nload: POST /score, 2 completions, one connection per request")
        print(f"{'clients':>8} {'requests':>9} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'failures':>9}")
        for clients in (1, 16, 64):
            r = load(port, clients, args.requests)
            kinds = f"  {r['kinds']}" if r["kinds"] else ""
            print(f"{r['clients']:>8} {r['requests']:>9} {r['rps']:>8.0f} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} "
                  f"{r['failures']:>9}{kinds}")
        f = flood(port, proc.pid)
        print(f"\nflood: {f['posts']} unauthenticated POSTs announcing {f['declared_mb']:.0f} MB each, at once")
        print(f"  answered {f['statuses']} in {f['seconds']:.2f} s; MB the client got to send each: {f['sent_mb']}")
        print(f"  server RSS {f['rss_before_mb']:.1f} MB -> {f['rss_after_mb']:.1f} MB "
              f"({f['rss_after_mb'] - f['rss_before_mb']:+.1f} MB)")
        i = idle(port, proc.pid, args.idle, args.timeout_s)
        print(f"\nidle: {i['connections']} connections sending half a request line, server timeout {args.timeout_s:g} s")
        print(f"  server threads {i['threads_before']} before, {i['threads_held']} while they are held; "
              f"{i['refused_503']} refused at once with 503; all closed by the server {i['all_closed_after_s']:.1f} s "
              f"after the last was opened ({i['still_open']} still open {args.timeout_s + 10:g} s after accept)")
        r = load(port, 16, args.requests)
        print(f"  afterwards, 16 clients: {r['rps']:.0f} req/s, p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, "
              f"{r['failures']} failures")
    finally:
        parent.send("stop")
        proc.join(timeout=30)
        if proc.is_alive():
            proc.kill()


if __name__ == "__main__":
    main()
