"""Rewards from a remote `tiller serve-reward` server, and the retrying JSON-over-HTTP helper
that the GenRM client shares.

`reward.backend: http` points an RLOO run (or `eval.judge`) at a server started with
`tiller serve-reward`:

    rloo:
      reward:
        backend: http
        url: http://127.0.0.1:8765          # the address serve-reward printed
        api_key_env: TILLER_REWARD_TOKEN    # the variable holding the bearer token (the default)

The protocol is two endpoints (see `tiller.rewards.server`): `GET /health` and
`POST /score` with `{"prompts": [[{role, content}, ...], ...], "completions": [...],
"group_size": k}` answered by `{"scores": [...]}`.

Robustness (shared with the GenRM client through `request_json`):
- at most `concurrency` requests in flight;
- `timeout_s` is a deadline for a whole attempt (connect, send, wait, read the answer), not a
  timeout per socket read: a server that trickles its answer a byte at a time is cut off at
  `timeout_s` like one that says nothing. A watchdog timer shuts the attempt's socket down when
  the time is up, which ends whatever read or write is blocked (urllib has no such deadline);
- HTTP 408/429/5xx, refused or dropped connections and timeouts are retried `max_retries`
  times with exponential backoff (and jitter; a `Retry-After` header is honoured);
- any other HTTP error fails at once, with the server's own error message;
- when retries are exhausted a `RemoteRewardError` names the URL and the last error.
So one request gives up after at most `(max_retries + 1) * timeout_s` plus the backoff waits
(`RetryPolicy.worst_case_s`; docs/remote-rewards.md has the numbers); a `score` call with
more requests than `concurrency` runs them in waves, each bounded so. Every failure surfaces
as a `RemoteRewardError` (`RemoteRequestRejected` is one) with a one-line message; `score`
either returns every score or raises: it never returns a partial list and never substitutes
a value.

Only the standard library is used (urllib, concurrent.futures, json).
"""

from __future__ import annotations

import functools
import http.client
import ipaddress
import json
import logging
import math
import os
import random
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Callable

from tiller.config import RewardBackendConfig
from tiller.rewards import strip_thinking

log = logging.getLogger("tiller.rewards")

DEFAULT_TOKEN_ENV = "TILLER_REWARD_TOKEN"
# Answers are small JSON; a server sending more than this is broken, not slow.
MAX_ANSWER_BYTES = 64 * 1024 * 1024


class RemoteRewardError(RuntimeError):
    """A remote reward server could not be used: unreachable after the retries, a request it
    refused, or an answer of the wrong shape. The message names the URL."""

    def __init__(self, message: str, url: str | None = None, status: int | None = None):
        super().__init__(message)
        self.url = url
        self.status = status


class RemoteRequestRejected(RemoteRewardError):
    """The server answered with an HTTP error that retrying cannot fix (4xx other than 408/429)."""


# ----------------------------------------------------------------------------- retrying requests


@dataclass
class RetryPolicy:
    max_retries: int = 4
    timeout_s: float = 120.0
    # Wait before retry n (0-based): backoff_s * 2**n, at most max_backoff_s, plus up to 25% jitter.
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0

    @classmethod
    def from_config(cls, cfg: RewardBackendConfig, backoff_s: float | None = None) -> "RetryPolicy":
        return cls(
            max_retries=cfg.max_retries,
            timeout_s=cfg.timeout_s,
            backoff_s=backoff_s if backoff_s is not None else float(getattr(cfg, "retry_backoff_s", 1.0)),
            max_backoff_s=float(getattr(cfg, "retry_max_backoff_s", 30.0)),
        )

    def delay(self, retry: int, retry_after: float | None = None) -> float:
        d = min(self.max_backoff_s, self.backoff_s * (2 ** retry))
        d *= 1.0 + 0.25 * random.random()  # concurrent clients should not retry in lockstep
        if retry_after is not None:
            d = max(d, retry_after)
        return min(d, self.max_backoff_s * 1.25)

    def worst_case_s(self, retry_after: bool = True) -> float:
        """The longest one request can take before it gives up: every attempt runs to its
        deadline and every backoff wait is at its longest, jitter included. A server's
        Retry-After can stretch any wait up to 1.25 * max_backoff_s; `retry_after=False` is the
        bound for a server that sends none (timeouts, dropped connections)."""
        if retry_after:
            waits = self.max_retries * self.max_backoff_s * 1.25
        else:
            waits = sum(min(self.max_backoff_s, self.backoff_s * 2 ** n) * 1.25 for n in range(self.max_retries))
        return (self.max_retries + 1) * self.timeout_s + waits


RETRY_STATUSES = frozenset({408, 429})  # plus every 5xx


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is answered as the HTTP error it is: following it would send the
    Authorization header (the key) to wherever the redirect points."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001 - base signature
        return None


class _Deadline:
    """The deadline of one request attempt. At `seconds` a timer shuts the attempt's socket
    down, which ends a blocked send or read at once; socket timeouts alone bound each read, so
    a server sending a byte a second would never trip them. Before there is a socket to shut
    down (connecting, and for HTTPS the TLS handshake), the socket timeout bounds each step."""

    def __init__(self, seconds: float):
        self.expired = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def attach(self, sock: socket.socket) -> None:
        with self._lock:
            self._sock = sock
            expired = self.expired
        if expired:  # the time ran out while connecting
            self._shutdown(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            sock = self._sock
        if sock is not None:
            self._shutdown(sock)

    @staticmethod
    def _shutdown(sock: socket.socket) -> None:
        try:  # the plain socket's shutdown: for TLS, SSLSocket.shutdown would also drop its state
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        except OSError:
            pass

    def cancel(self) -> None:
        self._timer.cancel()


class _DeadlineHTTPConnection(http.client.HTTPConnection):
    def __init__(self, *args: Any, deadline: _Deadline, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._deadline = deadline

    def connect(self) -> None:
        super().connect()
        self._deadline.attach(self.sock)


class _DeadlineHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, *args: Any, deadline: _Deadline, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._deadline = deadline

    def connect(self) -> None:
        super().connect()  # TCP, proxy tunnel, TLS handshake; then the socket the request uses
        self._deadline.attach(self.sock)


_DEADLINE_CONNECTIONS = {http.client.HTTPConnection: _DeadlineHTTPConnection,
                         http.client.HTTPSConnection: _DeadlineHTTPSConnection}


class _DeadlineOpen:
    """urllib's HTTP(S) handler, opening its connection with the attempt's deadline."""

    def __init__(self, deadline: _Deadline):
        super().__init__()
        self._deadline = deadline

    def do_open(self, http_class: Any, req: Any, **kwargs: Any) -> Any:
        return super().do_open(functools.partial(_DEADLINE_CONNECTIONS[http_class], deadline=self._deadline), req, **kwargs)


class _DeadlineHTTPHandler(_DeadlineOpen, urllib.request.HTTPHandler):
    pass


class _DeadlineHTTPSHandler(_DeadlineOpen, urllib.request.HTTPSHandler):
    pass


def _opener(url: str, deadline: _Deadline) -> urllib.request.OpenerDirector:
    handlers: list[Any] = [_NoRedirect(), _DeadlineHTTPHandler(deadline), _DeadlineHTTPSHandler(deadline)]
    # A loopback server is never reached through an http_proxy from the environment.
    if _is_loopback(urllib.parse.urlsplit(url).hostname):
        handlers.append(urllib.request.ProxyHandler({}))
    return urllib.request.build_opener(*handlers)


def one_line(text: str, limit: int = 300) -> str:
    """Whitespace (newlines of an HTML error page, a traceback) folded: messages stay one line."""
    return " ".join(text.split())[:limit]


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _error_text(body: bytes) -> str:
    """The human part of an error body: OpenAI's {"error": {"message"}}, ours {"error": "..."}, ..."""
    text = body.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return one_line(text) or "(empty body)"
    if isinstance(data, dict):
        for key in ("error", "message", "detail"):
            value = data.get(key)
            if isinstance(value, dict):
                value = value.get("message", value)
            if value:
                return one_line(str(value))
    return one_line(text)


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def request_json(
    url: str,
    payload: Any = None,
    *,
    policy: RetryPolicy,
    token: str | None = None,
    what: str = "request",
    on_retry: Callable[[str], None] | None = None,
    abort: threading.Event | None = None,
) -> Any:
    """GET (payload None) or POST a JSON body, retrying what a retry can fix; return parsed JSON.

    Raises `RemoteRequestRejected` for a non-retryable HTTP error and `RemoteRewardError`
    (naming the URL, the number of attempts and the last error) once retries are exhausted.
    The token goes into the Authorization header only; it is never part of a message.
    """
    data = None if payload is None else json.dumps(payload).encode("utf-8")
    headers = {"Accept": "application/json", "User-Agent": "tiller-reward-client"}
    if data is not None:
        headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    attempts = policy.max_retries + 1
    last = "no attempt made"
    for attempt in range(attempts):
        if abort is not None and abort.is_set():
            raise RemoteRewardError(f"{what} to {url} cancelled: another request of the same batch failed", url=url)
        retry_after = None
        deadline = _Deadline(policy.timeout_s)
        try:
            req = urllib.request.Request(url, data=data, headers=headers, method="GET" if data is None else "POST")
            # timeout= still bounds connecting, before the deadline has a socket to shut down.
            with _opener(url, deadline).open(req, timeout=policy.timeout_s) as resp:
                raw = resp.read(MAX_ANSWER_BYTES + 1)
            if len(raw) > MAX_ANSWER_BYTES:
                last = f"the answer is over {MAX_ANSWER_BYTES} bytes"
            elif not deadline.expired:  # an answer cut short by the deadline is no answer
                try:
                    return json.loads(raw)
                except (ValueError, RecursionError) as e:
                    last = f"the answer is not JSON ({type(e).__name__}: {e}): {raw[:200]!r}"
        except urllib.error.HTTPError as e:
            try:
                body = e.read(MAX_ANSWER_BYTES)
            except Exception:  # noqa: BLE001 - the body is only for the message
                body = b""
            message = _error_text(body)
            if e.code in RETRY_STATUSES or e.code >= 500:
                last = f"HTTP {e.code}: {message}"
                retry_after = _retry_after(e.headers)
            else:
                raise RemoteRequestRejected(f"{what}: {url} answered HTTP {e.code}: {message}", url=url, status=e.code) from None
        except urllib.error.URLError as e:
            last = f"cannot connect ({e.reason})"
        except TimeoutError:
            last = f"no answer within timeout_s={policy.timeout_s:g} s"
        except (ConnectionError, http.client.HTTPException) as e:
            last = f"connection lost ({type(e).__name__}: {e})"
        except OSError as e:
            last = f"network error ({type(e).__name__}: {e})"
        finally:
            deadline.cancel()
        if deadline.expired:  # whatever the shut-down socket made urllib raise, this is why
            last = f"no complete answer within timeout_s={policy.timeout_s:g} s"
        last = one_line(last)
        if attempt + 1 < attempts:
            if on_retry is not None:
                on_retry(last)
            delay = policy.delay(attempt, retry_after)
            log.warning("%s to %s failed (%s); retry %d/%d in %.1f s", what, url, last, attempt + 1, policy.max_retries, delay)
            if abort is not None:
                abort.wait(delay)
            else:
                time.sleep(delay)
    raise RemoteRewardError(
        f"{what}: {url} failed after {attempts} attempt(s) (max_retries={policy.max_retries}); last error: {last}",
        url=url,
    )


def read_token(api_key_env: str | None, default_env: str | None = None, what: str = "reward server") -> str | None:
    """The secret from the environment variable the config names (never from the config itself).

    A variable named explicitly in the config must be set; the default one may be absent."""
    if api_key_env:
        value = os.environ.get(api_key_env)
        if not value:
            raise RemoteRewardError(
                f"reward.api_key_env names the environment variable {api_key_env!r} for the {what}'s key, "
                "but it is not set (or empty) in this process"
            )
        return value
    if default_env:
        return os.environ.get(default_env) or None
    return None


def run_all(pool: ThreadPoolExecutor, fns: list[Callable[[], Any]], abort: threading.Event) -> list[Any]:
    """Run the calls on the pool; return their results in order or raise the first error.

    On the first error the pending calls are cancelled and `abort` tells running ones to stop
    retrying, so a dead server fails a batch once, not once per request. Calls already waiting
    for an answer are not waited for: the error is raised at once."""
    futures: list[Future] = [pool.submit(fn) for fn in fns]
    done, pending = wait(futures, return_when=FIRST_EXCEPTION)
    failed = [f for f in futures if f.done() and not f.cancelled() and f.exception() is not None]
    if failed:
        abort.set()
        for f in pending:
            f.cancel()
        raise failed[0].exception()
    return [f.result() for f in futures]


# ----------------------------------------------------------------------------- the client


class HttpReward:
    """Scores from a `tiller serve-reward` server (see the module docstring)."""

    def __init__(self, cfg: RewardBackendConfig, *, backoff_s: float | None = None, check: bool = True):
        if not cfg.url:
            raise ValueError("reward backend 'http' needs reward.url (the address `tiller serve-reward` printed)")
        self.cfg = cfg
        base = cfg.url.strip().rstrip("/")
        for suffix in ("/score", "/health"):
            if base.endswith(suffix):
                base = base[: -len(suffix)]
        self.url = base
        self.policy = RetryPolicy.from_config(cfg, backoff_s)
        self.token_env = cfg.api_key_env or DEFAULT_TOKEN_ENV
        self._token = read_token(cfg.api_key_env, DEFAULT_TOKEN_ENV, "reward server")
        self._pool = ThreadPoolExecutor(max_workers=cfg.concurrency, thread_name_prefix="tiller-http-reward")
        self._lock = threading.Lock()
        self._counts = {"reward/http_requests": 0, "reward/http_retries": 0, "reward/http_failures": 0}
        self.server_info: dict = {}
        if check:
            self.check()

    def __repr__(self) -> str:  # never shows the token
        return f"HttpReward(url={self.url!r}, token_env={self.token_env!r})"

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._counts[key] += n

    def check(self) -> dict:
        """Fail early and clearly if the server is unreachable or refuses our token."""
        info = request_json(
            f"{self.url}/health", policy=self.policy, token=self._token, what="reward server health check",
            on_retry=lambda _: self._count("reward/http_retries"),
        )
        if not isinstance(info, dict) or info.get("status") != "ok":
            raise RemoteRewardError(
                f"{self.url}/health did not answer like a tiller reward server: {one_line(str(info), 200)}", url=self.url
            )
        auth = info.get("auth")
        if auth in ("missing", "invalid"):
            raise RemoteRewardError(
                f"the reward server at {self.url} requires a bearer token and the one sent was {auth}: "
                f"set ${self.token_env} to the token the server was started with",
                url=self.url,
            )
        self.server_info = info
        return info

    def _post(self, prompts: list, completions: list[str], group_size: int, abort: threading.Event) -> list[float]:
        self._count("reward/http_requests")
        url = f"{self.url}/score"
        answer = request_json(
            url, {"prompts": prompts, "completions": completions, "group_size": group_size},
            policy=self.policy, token=self._token, what="reward request",
            on_retry=lambda _: self._count("reward/http_retries"), abort=abort,
        )
        scores = answer.get("scores") if isinstance(answer, dict) else None
        if not isinstance(scores, list) or len(scores) != len(completions):
            raise RemoteRewardError(
                f"{url} answered without {len(completions)} scores: {one_line(str(answer), 200)}", url=url
            )
        out = []
        for s in scores:
            if isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(s):
                raise RemoteRewardError(f"{url} answered a score that is not a finite number: {s!r}", url=url)
            out.append(float(s))
        return out

    def score(self, prompts: list[list[dict]], completions: list[str], group_size: int = 1,
              records: list[dict] | None = None) -> list[float]:
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts for {len(completions)} completions")
        if group_size < 1 or len(completions) % group_size:
            raise ValueError(f"{len(completions)} completions do not split into groups of {group_size}")
        if not completions:
            return []
        texts = [strip_thinking(c) for c in completions] if self.cfg.strip_thinking else list(completions)
        # Whole groups per request (a server-side pairwise judge needs them), about batch_size each.
        per = max(1, self.cfg.batch_size // group_size) * group_size
        spans = [(s, min(s + per, len(texts))) for s in range(0, len(texts), per)]
        abort = threading.Event()
        try:
            parts = run_all(
                self._pool,
                [lambda a=a, b=b: self._post(prompts[a:b], texts[a:b], group_size, abort) for a, b in spans],
                abort,
            )
        except Exception:
            self._count("reward/http_failures")
            raise
        return [s for part in parts for s in part]

    def metrics(self) -> dict[str, float]:
        """Cumulative counters since construction."""
        with self._lock:
            return {k: float(v) for k, v in self._counts.items()}

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
