"""`tiller serve-reward`: serve any tiller reward backend over HTTP.

    TILLER_REWARD_TOKEN=$(openssl rand -hex 24) tiller serve-reward --config configs/x.yaml --port 8765

serves the config's `rloo.reward` backend (a trained classifier reward model, a Python
callable, or even a GenRM client) on 127.0.0.1 unless `--host` says otherwise. An RLOO run
elsewhere reaches it with `reward.backend: http` (`tiller.rewards.http.HttpReward`).

Endpoints (JSON in, JSON out):
- `GET /health` -> `{"status": "ok", "backend": ..., "auth": ...}`. Needs no token (it tells
  nothing but liveness); `auth` says whether the token sent, if any, would be accepted:
  `ok`, `missing`, `invalid`, or `disabled` (server started with --no-auth).
- `POST /score` with `Authorization: Bearer <token>` and
  `{"prompts": [[{"role", "content"}, ...], ...], "completions": ["...", ...], "group_size": k}`
  -> `{"scores": [...]}` (one per completion, in order; `group_size` defaults to 1 and must
  divide the number of completions). A missing or wrong token gets 401, a malformed body 400
  with `{"error": "<what is wrong>"}`, a failing backend 500 with its error message.

Batching: one worker thread owns the backend (so a GPU model is never called from two threads)
and, each time it is free, takes every request waiting in the queue (up to `--max-batch`
completions, optionally waiting `--max-wait-ms` for more) and scores requests that share a
group_size in one backend call. Under load, concurrent requests are thus merged; a lone
request is not delayed. If a merged call fails, each request is retried alone so one bad
request cannot fail the others.

Connections (what a client that misbehaves, or floods, can cost):
- the token is checked from the headers, before any byte of the body is read: an
  unauthenticated 200 MB POST gets its 401 at once and the connection is closed unread (only a
  body of at most 64 KiB is read and dropped, so an ordinary client sees the answer rather than
  a reset connection);
- a connection must deliver its whole request within `--timeout-s` (default 10 s) of being
  accepted, a deadline and not a per-read timeout: a client that sends nothing, or one byte at a
  time, is disconnected when it expires;
- `--workers` threads (default 64) handle connections; at most `--max-connections` (default
  256) are open at once, the others waiting for a worker; one more is answered 503 with
  `Retry-After: 1` (which the client retries) instead of piling up threads; the listen backlog
  is `--max-connections` too, so a burst of connects is queued by the kernel, not dropped;
- any body that cannot be parsed, too deeply nested JSON included, is a 400 with a message.
One request per connection (HTTP/1.0), as the tiller clients do anyway. The limit that
remains: a flood of idle connections can fill `--max-connections` for up to `--timeout-s`,
during which honest clients get 503 and retry; it costs the server no memory or threads.

Why the standard library's `http.server` and not a server library: the two checks that matter
here are not available in the well-known Python servers. waitress reads the whole request body
(spooling it to a temporary file) before the application sees the headers, so the token could
only be checked after a 200 MB upload; uvicorn has no deadline for receiving a request
(its keep-alive timeout is reset by every byte; uvicorn issue #157). What `http.server` lacks,
a bounded worker pool, a connection limit and a request deadline, takes a few dozen lines below.

The token comes from an environment variable (`--token-env`, default TILLER_REWARD_TOKEN),
never from the command line or the config, and is never printed. Without it the server
refuses to start unless `--no-auth` is given explicitly.
"""

from __future__ import annotations

import argparse
import hmac
import io
import json
import math
import os
import queue
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

DEFAULT_TOKEN_ENV = "TILLER_REWARD_TOKEN"
MAX_BODY_BYTES = 256 * 1024 * 1024
# An error answered before the body is read: a body up to this size is read and dropped first
# (_Handler._answer_unread); a larger one is left unread and the connection closed.
DISCARD_BODY_BYTES = 64 * 1024
DEFAULT_TIMEOUT_S = 10.0
DEFAULT_WORKERS = 64
DEFAULT_MAX_CONNECTIONS = 256
REQUEST_KEYS = ("prompts", "completions", "group_size")


class BadRequest(ValueError):
    """A /score body that does not have the documented shape; the message says what is wrong."""


def parse_score_request(body: bytes) -> tuple[list[list[dict]], list[str], int]:
    """Validate a /score body and return (prompts, completions, group_size)."""
    try:
        data = json.loads(body)
    except ValueError as e:
        raise BadRequest(f"the request body is not valid JSON ({e})") from None
    except RecursionError:  # how json gives up on deep nesting
        raise BadRequest("the request body is JSON nested too deeply to parse") from None
    if not isinstance(data, dict):
        raise BadRequest('the request body must be a JSON object {"prompts": [...], "completions": [...], "group_size": k}')
    unknown = sorted(set(data) - set(REQUEST_KEYS))
    if unknown:
        raise BadRequest(f"unknown key(s) {unknown}; expected {list(REQUEST_KEYS)}")
    for key in ("prompts", "completions"):
        if key not in data:
            raise BadRequest(f"missing key '{key}'")
    prompts, completions = data["prompts"], data["completions"]
    if not isinstance(prompts, list):
        raise BadRequest("'prompts' must be a list of conversations, each a list of {\"role\", \"content\"} messages")
    for i, conv in enumerate(prompts):
        if not isinstance(conv, list) or not conv:
            raise BadRequest(f"prompts[{i}] must be a non-empty list of {{\"role\", \"content\"}} messages")
        for j, m in enumerate(conv):
            if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
                raise BadRequest(f"prompts[{i}][{j}] must be an object with string 'role' and 'content'")
    if not isinstance(completions, list) or not all(isinstance(c, str) for c in completions):
        raise BadRequest("'completions' must be a list of strings")
    if len(prompts) != len(completions):
        raise BadRequest(f"{len(prompts)} prompts for {len(completions)} completions: give one prompt per completion")
    group_size = data.get("group_size", 1)
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise BadRequest(f"'group_size' must be a positive integer, got {group_size!r}")
    if len(completions) % group_size:
        raise BadRequest(f"{len(completions)} completions do not split into groups of group_size={group_size}")
    return prompts, completions, group_size


# ----------------------------------------------------------------------------- batching


@dataclass
class _Job:
    prompts: list
    completions: list
    group_size: int
    done: threading.Event = field(default_factory=threading.Event)
    scores: list | None = None
    error: BaseException | None = None


class Batcher:
    """One worker thread that owns the backend and merges waiting requests (module docstring)."""

    def __init__(self, backend: Any, max_batch: int = 256, max_wait_s: float = 0.0):
        self.backend = backend
        self.max_batch = max(1, max_batch)
        self.max_wait_s = max(0.0, max_wait_s)
        self._queue: queue.Queue = queue.Queue()
        self._stop = object()
        self.stats = {"requests": 0, "completions": 0, "backend_calls": 0}
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="tiller-reward-batcher", daemon=True)
        self._thread.start()

    def score(self, prompts: list, completions: list, group_size: int) -> list[float]:
        if not completions:
            return []
        job = _Job(prompts, completions, group_size)
        self._queue.put(job)
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.scores  # type: ignore[return-value]

    def close(self) -> None:
        self._queue.put(self._stop)
        self._thread.join(timeout=30)

    def _take(self) -> tuple[list[_Job], bool]:
        first = self._queue.get()
        if first is self._stop:
            return [], True
        jobs, size = [first], len(first.completions)
        deadline = time.monotonic() + self.max_wait_s
        while size < self.max_batch:
            remaining = deadline - time.monotonic()
            try:
                item = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is self._stop:
                self._queue.put(item)  # finish this batch, then stop
                break
            jobs.append(item)
            size += len(item.completions)
        return jobs, False

    def _call(self, jobs: list[_Job]) -> None:
        prompts = [p for j in jobs for p in j.prompts]
        completions = [c for j in jobs for c in j.completions]
        with self._lock:
            self.stats["backend_calls"] += 1
        scores = [float(s) for s in self.backend.score(prompts, completions, group_size=jobs[0].group_size)]
        if len(scores) != len(completions):
            raise RuntimeError(f"the reward backend returned {len(scores)} scores for {len(completions)} completions")
        bad = [s for s in scores if not math.isfinite(s)]
        if bad:
            raise RuntimeError(f"the reward backend returned a non-finite score ({bad[0]})")
        start = 0
        for j in jobs:
            j.scores = scores[start:start + len(j.completions)]
            start += len(j.completions)

    def _run(self) -> None:
        while True:
            jobs, stop = self._take()
            if stop:
                return
            with self._lock:
                self.stats["requests"] += len(jobs)
                self.stats["completions"] += sum(len(j.completions) for j in jobs)
            by_group: dict[int, list[_Job]] = {}
            for j in jobs:
                by_group.setdefault(j.group_size, []).append(j)
            for bucket in by_group.values():
                try:
                    self._call(bucket)
                except Exception as e:  # noqa: BLE001 - reported to the requests
                    if len(bucket) == 1:
                        bucket[0].error = e
                    else:  # find out which request fails; the others still get their scores
                        for j in bucket:
                            try:
                                self._call([j])
                            except Exception as e1:  # noqa: BLE001
                                j.error = e1
                for j in bucket:
                    j.done.set()


# ----------------------------------------------------------------------------- HTTP


class _DeadlineReader(io.RawIOBase):
    """Reads a connection until a fixed deadline. A socket timeout alone bounds each wait, so a
    client sending one byte every few seconds would hold its worker forever."""

    def __init__(self, sock: socket.socket, deadline: float):
        self._sock = sock
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the request did not arrive before the server's deadline")
        self._sock.settimeout(remaining)
        return self._sock.recv_into(buffer)


class _Handler(BaseHTTPRequestHandler):
    server: "RewardHTTPServer"
    server_version = "tiller-reward"
    sys_version = ""

    def __init__(self, request: socket.socket, client_address: Any, server: "RewardHTTPServer", deadline: float):
        self.deadline = deadline  # before the base class, which handles the whole request in __init__
        super().__init__(request, client_address, server)

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # the plain reader, replaced by one that keeps the deadline
        self.rfile = io.BufferedReader(_DeadlineReader(self.connection, self.deadline))

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base class signature
        if self.server.verbose:
            sys.stderr.write(f"[tiller serve-reward] {self.address_string()} {format % args}\n")

    def _send(self, status: int, payload: dict, headers: dict | None = None) -> None:
        body = json.dumps(payload).encode("utf-8")
        # A client that does not read its answer holds the worker at most this long.
        self.connection.settimeout(self.server.timeout_s)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _answer_unread(self, status: int, payload: dict, headers: dict | None = None) -> None:
        """Answer without reading the body, then close. A small body is read and dropped first:
        closing a socket with unread data resets the connection, and the client could lose the
        answer. A large one is never read: not reading it is the point of answering first."""
        self.close_connection = True
        length = self.headers.get("Content-Length", "").strip()
        if length.isdigit() and int(length) <= DISCARD_BODY_BYTES:
            try:
                self.rfile.read(int(length))
            except OSError:  # the deadline passed (TimeoutError) or the client left: answer anyway
                pass
        self._send(status, payload, headers)

    def _auth(self) -> str:
        token = self.server.token
        if token is None:
            return "disabled"
        header = self.headers.get("Authorization", "")
        if not header:
            return "missing"
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            return "invalid"
        return "ok"

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        if self.path.split("?", 1)[0].rstrip("/") == "/health":
            self._send(200, {"status": "ok", "backend": self.server.backend_name, "auth": self._auth()})
        else:
            self._send(404, {"error": f"no such endpoint: GET {self.path} (endpoints: GET /health, POST /score)"})

    def do_POST(self) -> None:  # noqa: N802
        # Everything that the headers decide is answered before a byte of the body is read.
        if self.path.split("?", 1)[0].rstrip("/") != "/score":
            self._answer_unread(404, {"error": f"no such endpoint: POST {self.path} (endpoints: GET /health, POST /score)"})
            return
        auth = self._auth()
        if auth in ("missing", "invalid"):
            self.server.count("unauthorized")
            self._answer_unread(401, {"error": f"{auth} bearer token: send 'Authorization: Bearer <token>'"},
                                {"WWW-Authenticate": 'Bearer realm="tiller-reward"'})
            return
        length = self.headers.get("Content-Length")
        if length is None or not length.strip().isdigit():
            self._answer_unread(411 if length is None else 400, {"error": "the request needs a valid Content-Length header"})
            return
        n = int(length)
        if n > MAX_BODY_BYTES:
            self._answer_unread(413, {"error": f"request body of {n} bytes is over the {MAX_BODY_BYTES} byte limit"})
            return
        body = self.rfile.read(n)  # past the deadline: TimeoutError, and http.server closes the connection
        try:
            prompts, completions, group_size = parse_score_request(body)
        except Exception as e:  # noqa: BLE001 - whatever fails to parse is the request's fault: 400, not a dropped connection
            self.server.count("bad_requests")
            message = str(e) if isinstance(e, BadRequest) else f"cannot parse the request body ({type(e).__name__}: {e})"
            self._send(400, {"error": message})
            return
        try:
            scores = self.server.batcher.score(prompts, completions, group_size)
        except Exception as e:  # noqa: BLE001 - the client gets the message
            self.server.count("backend_errors")
            self._send(500, {"error": f"the reward backend failed: {type(e).__name__}: {e}"})
            return
        self._send(200, {"scores": scores})


class RewardHTTPServer(HTTPServer):
    """`HTTPServer` whose connections are handled by a bounded pool of workers, at most
    `max_connections` open at once, each with `timeout_s` to deliver its request (module docstring)."""

    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], backend: Any, token: str | None, backend_name: str = "",
                 max_batch: int = 256, max_wait_s: float = 0.0, verbose: bool = False,
                 workers: int = DEFAULT_WORKERS, max_connections: int = DEFAULT_MAX_CONNECTIONS,
                 timeout_s: float = DEFAULT_TIMEOUT_S):
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.max_connections = max(1, max_connections)
        self.request_queue_size = self.max_connections  # the listen backlog: a burst of connects waits in the kernel
        self.timeout_s = timeout_s
        # Made before binding: a failed bind calls server_close, which uses them.
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="tiller-reward-conn")
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)  # type: ignore[arg-type] - process_request passes the deadline
        self.backend = backend
        self.token = token
        self.backend_name = backend_name or type(backend).__name__
        self.verbose = verbose
        self.batcher = Batcher(backend, max_batch=max_batch, max_wait_s=max_wait_s)
        self.counts = {"unauthorized": 0, "bad_requests": 0, "backend_errors": 0, "refused_busy": 0}
        self._count_lock = threading.Lock()

    def count(self, key: str) -> None:
        with self._count_lock:
            self.counts[key] += 1

    def open_connections(self) -> int:
        with self._open_lock:
            return len(self._open)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Called by serve_forever for each accepted connection: hand it to the pool, or refuse it."""
        deadline = time.monotonic() + self.timeout_s  # from accept: waiting for a worker counts too
        with self._open_lock:
            full = len(self._open) >= self.max_connections
            if not full:
                self._open.add(request)
        if full:
            self.count("refused_busy")
            self._refuse(request)
            return
        self._pool.submit(self._handle, request, client_address, deadline)

    def _handle(self, request: socket.socket, client_address: Any, deadline: float) -> None:
        try:
            _Handler(request, client_address, self, deadline)
        except Exception:  # noqa: BLE001 - one connection's failure is reported, never raised into the pool
            self.handle_error(request, client_address)
        finally:
            with self._open_lock:  # under the lock, so server_close never touches a closed (reused) descriptor
                self._open.discard(request)
                self.shutdown_request(request)

    def _refuse(self, request: socket.socket) -> None:
        """503 to a connection over the limit, from the accepting thread: never blocks it."""
        message = f"the reward server has its limit of {self.max_connections} connections open; retry later"
        body = json.dumps({"error": message}).encode()
        head = (f"HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                "Retry-After: 1\r\nConnection: close\r\n\r\n").encode()
        try:
            request.setblocking(False)  # a fresh connection's send buffer takes these bytes at once
            request.send(head + body)
        except OSError:
            pass
        self.shutdown_request(request)

    def server_close(self) -> None:
        """Stop listening; connections still sending their request see the end of the stream (one
        being scored still gets its answer: only reading is shut down); wait for the workers."""
        super().server_close()
        with self._open_lock:
            for sock in self._open:
                try:
                    sock.shutdown(socket.SHUT_RD)
                except OSError:
                    pass
        self._pool.shutdown(wait=True)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Typically a client that timed out and hung up before its answer: one line, no traceback.
        exc = sys.exc_info()[1]
        sys.stderr.write(f"[tiller serve-reward] request from {client_address[0]} failed: {type(exc).__name__}: {exc}\n")

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = f"[{host}]" if ":" in str(host) else host
        return f"http://{host}:{port}"


class RewardServer:
    """A reward server on a background thread: `with RewardServer(backend, token=...) as s: s.url`.

    Closing it stops the HTTP server and the batcher; the backend is closed too when
    `close_backend` is set."""

    def __init__(self, backend: Any, host: str = "127.0.0.1", port: int = 0, token: str | None = None,
                 backend_name: str = "", max_batch: int = 256, max_wait_s: float = 0.0,
                 verbose: bool = False, close_backend: bool = False, workers: int = DEFAULT_WORKERS,
                 max_connections: int = DEFAULT_MAX_CONNECTIONS, timeout_s: float = DEFAULT_TIMEOUT_S):
        self.httpd = RewardHTTPServer((host, port), backend, token, backend_name, max_batch, max_wait_s, verbose,
                                      workers=workers, max_connections=max_connections, timeout_s=timeout_s)
        self.close_backend = close_backend
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return self.httpd.url

    def start(self) -> "RewardServer":
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="tiller-reward-http", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.httpd.serve_forever(poll_interval=0.2)

    def close(self) -> None:
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self.httpd.server_close()
        self.httpd.batcher.close()
        if self.close_backend:
            self.httpd.backend.close()

    def __enter__(self) -> "RewardServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()


# ----------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tiller serve-reward",
        description="Serve the config's rloo.reward backend over HTTP (GET /health, POST /score) with a bearer token.",
    )
    p.add_argument("--config", required=True, help="YAML config; its rloo.reward section picks the backend")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (repeatable), e.g. --set rloo.reward.path=runs/x/reward/model")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8765, help="port (0 picks a free one; the URL is printed)")
    p.add_argument("--token-env", default=DEFAULT_TOKEN_ENV,
                   help=f"environment variable holding the bearer token (default {DEFAULT_TOKEN_ENV})")
    p.add_argument("--no-auth", action="store_true", help="serve without a token (only on a trusted network)")
    p.add_argument("--device", default="auto", help="device for a classifier reward model: auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--max-batch", type=int, default=256, help="most completions merged into one backend call")
    p.add_argument("--max-wait-ms", type=float, default=0.0,
                   help="how long a free worker waits for more requests to merge (default 0: no added latency)")
    p.add_argument("--workers", type=int, default=DEFAULT_WORKERS,
                   help=f"threads handling connections (default {DEFAULT_WORKERS}); "
                        "more requests than this cannot be merged into one batch")
    p.add_argument("--max-connections", type=int, default=DEFAULT_MAX_CONNECTIONS,
                   help=f"open connections at most (default {DEFAULT_MAX_CONNECTIONS}; also the listen backlog); "
                        "one more gets 503")
    p.add_argument("--timeout-s", type=float, default=DEFAULT_TIMEOUT_S,
                   help=f"seconds a connection has to send its whole request (default {DEFAULT_TIMEOUT_S:g})")
    p.add_argument("--verbose", action="store_true", help="log every request to stderr")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from tiller.config import ConfigError
    from tiller.config_loading import load_config
    from tiller.rewards import make_reward_backend

    def fail(message: str) -> int:
        print(f"tiller serve-reward: error: {message}", file=sys.stderr, flush=True)
        return 2

    if not 0 <= args.port <= 65535:
        return fail(f"--port must be 0-65535, got {args.port}")
    if args.workers < 1 or args.max_connections < 1 or not args.timeout_s > 0:
        return fail("--workers and --max-connections must be at least 1, --timeout-s above 0")
    token = None
    if not args.no_auth:
        token = os.environ.get(args.token_env) or None
        if token is None:
            return fail(
                f"no bearer token: set ${args.token_env} (e.g. export {args.token_env}=$(openssl rand -hex 24)) "
                "or pass --no-auth to serve without one"
            )
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as e:
        return fail(str(e))
    rcfg = cfg.rloo.reward
    device = args.device
    if device == "auto":
        device = "cpu"
        if rcfg.backend == "classifier":
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        backend = make_reward_backend(rcfg, default_path=Path(cfg.run_dir) / "reward" / "model", device=device)
    except Exception as e:  # noqa: BLE001 - a clear message instead of a traceback
        return fail(f"cannot build the reward backend '{rcfg.backend}': {type(e).__name__}: {e}")
    try:
        server = RewardServer(backend, args.host, args.port, token, backend_name=rcfg.backend,
                              max_batch=args.max_batch, max_wait_s=args.max_wait_ms / 1000.0,
                              verbose=args.verbose, close_backend=True, workers=args.workers,
                              max_connections=args.max_connections, timeout_s=args.timeout_s)
    except OSError as e:
        backend.close()
        return fail(f"cannot listen on {args.host}:{args.port}: {e}")
    auth = "disabled (--no-auth)" if token is None else f"bearer token from ${args.token_env}"
    if token is None and args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"tiller serve-reward: warning: serving on {args.host} without a token: anyone who can reach it can use it",
              file=sys.stderr, flush=True)
    print(f"tiller serve-reward: backend {rcfg.backend}, auth {auth}", flush=True)
    print(f"tiller serve-reward: listening on {server.url}", flush=True)

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()  # stops the batcher and closes the backend
        print("tiller serve-reward: stopped", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
