"""Sans-IO limits of the status endpoint: what a local client may cost the daemon.

Theory of operation
-------------------
The status endpoint (:mod:`lvsd.status.app`) runs on the daemon's event loop, beside the VRRP
timers and the health checks, and anyone who can reach its port may connect without a token.
Without limits one client could take every file descriptor (idle connections: health checks
then fail with EMFILE and empty the pool), keep the loop busy (a scrape loop) or make the
process queue unbounded work. :class:`Limits` decides, from events and ``now`` (monotonic
seconds) fed by the shell, what each connection and request may do; it has no clock, socket or
event loop. keepalived has no HTTP endpoint to follow; the HTTP side follows RFC 9110 (503 and
``Retry-After``, §15.6.4 and §10.2.3) and RFC 6585 §4 (429).

Decisions, in the order the shell asks for them:

1. **A new TCP connection** (:meth:`Limits.connection_opened`): refused while
   ``max_connections`` are open; the shell aborts it at once (its descriptor is freed before it
   carries a byte). The shell lowers the cap to a share of the process' descriptor limit
   (:func:`connection_cap`) so that VRRP, the checks and the data plane always keep most of them.
2. **Deadlines per connection** (:meth:`Limits.expired`, :meth:`Limits.next_deadline`). A
   connection is in one of three phases:

   * *waiting for a request head*: from its opening, or from the first byte of the next request
     on a kept-alive connection, it has ``header_timeout`` to deliver a complete request head
     (dribbling bytes, slowloris, does not extend it);
   * *idle* between requests on a kept-alive connection: closed after ``idle_timeout``;
   * *in a request*: an ordinary request (``/status``, ``/metrics``, the page) must be answered,
     response written, within ``request_timeout`` (a client that does not read its answer holds
     a request slot no longer); an event stream (``/events``) has no deadline (the shell bounds
     each of its writes by ``request_timeout``) but is capped in number.

   Expired connections are returned once, with the reason; the shell closes them and reports
   :meth:`Limits.connection_closed` when the descriptor is gone.
3. **A request** (:meth:`Limits.admit`) by its kind: ``health`` (``/healthz``: cheap, always
   admitted, takes no slot, so a supervisor can still tell "alive" under abuse), ``request`` or
   ``stream``. First the client's token bucket (per remote IP: ``rate`` tokens a second up to
   ``burst``; empty: **429** with the seconds until the next token), then the cap on concurrent
   requests (``max_requests``) or on open event streams (``max_streams``): **503**. Nothing
   waits for a slot: a request is answered or refused at once, so no queue can grow.
   :meth:`Limits.finished` gives the slot back.

The bucket table is bounded (``max_clients``): buckets that have refilled completely carry no
information and are dropped first; past the bound, new clients share one overflow bucket.

Every refusal and every close is counted by reason (:data:`REASONS`); :meth:`Limits.stats`
returns the counts and the open connections, requests and streams as a frozen
:class:`EndpointStats` (``/status`` ``status_endpoint`` and ``lvsd_status_*`` metrics).

Defaults (:class:`StatusLimits`, documented in ``docs/operations.md``): 50 requests/s per
client with a burst of 100 (test harnesses poll at up to 50/s, ``lvsd reload`` at 10/s, a
browser page at 1/s, Prometheus every few seconds); 16 concurrent requests; 32 event streams;
128 connections, at most a quarter of ``RLIMIT_NOFILE``; header timeout 10 s; idle timeout
60 s; request timeout 30 s.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from enum import Enum

#: every reason :class:`Limits` counts, in the order outputs list them
REASONS = (
    "rate_limited",          # 429: the client's token bucket was empty
    "too_many_requests",     # 503: max_requests requests in flight
    "too_many_streams",      # 503: max_streams /events streams open
    "too_many_connections",  # connection aborted at accept: max_connections open
    "header_timeout",        # no complete request head within header_timeout
    "idle_timeout",          # kept-alive connection idle for idle_timeout
    "request_timeout",       # answer not written within request_timeout
)

HEALTH = "health"
REQUEST = "request"
STREAM = "stream"

OVERFLOW_CLIENT = "*"  # the bucket shared by clients past max_clients


@dataclass(frozen=True, slots=True)
class StatusLimits:
    """What the status endpoint allows (seconds, counts; rate in requests per second)."""

    rate: float = 50.0
    burst: int = 100
    max_requests: int = 16
    max_streams: int = 32
    max_connections: int = 128
    header_timeout: float = 10.0
    idle_timeout: float = 60.0
    request_timeout: float = 30.0
    max_clients: int = 4096

    def __post_init__(self) -> None:
        if not (self.rate > 0 and self.burst >= 1):
            raise ValueError("status limits: rate must be > 0 and burst >= 1")
        if min(self.max_requests, self.max_streams, self.max_connections, self.max_clients) < 1:
            raise ValueError("status limits: every cap must be at least 1")
        if min(self.header_timeout, self.idle_timeout, self.request_timeout) <= 0:
            raise ValueError("status limits: timeouts must be > 0")


def connection_cap(configured: int, nofile_soft: int | None, share: int = 4) -> int:
    """The connection cap to apply: ``configured``, but at most ``1/share`` of the soft
    descriptor limit (``None``: unlimited), and at least 1."""
    if nofile_soft is None or nofile_soft <= 0:
        return configured
    return max(1, min(configured, nofile_soft // share))


@dataclass(frozen=True, slots=True)
class EndpointStats:
    """The endpoint's own counters, for ``/status`` and ``/metrics``."""

    rejected: Mapping[str, int] = field(default_factory=dict)  # by reason (every REASONS key)
    connections_open: int = 0
    requests_in_flight: int = 0
    streams_open: int = 0
    max_connections: int = 0

    def as_dict(self) -> dict[str, object]:
        return {"rejected": dict(self.rejected), "connections_open": self.connections_open,
                "requests_in_flight": self.requests_in_flight,
                "streams_open": self.streams_open, "max_connections": self.max_connections}


@dataclass(frozen=True, slots=True)
class Verdict:
    """The answer to :meth:`Limits.admit`: ``status`` 0 (admitted), 429 or 503."""

    status: int
    reason: str = ""
    retry_after: int = 0  # whole seconds, >= 1 when refused

    @property
    def admitted(self) -> bool:
        return self.status == 0


ADMITTED = Verdict(0)


class TokenBuckets:
    """One token bucket per client: ``rate`` tokens a second, at most ``burst``."""

    def __init__(self, rate: float, burst: int, max_clients: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.max_clients = max_clients
        self._b: dict[str, tuple[float, float]] = {}  # client -> (tokens, at)

    def __len__(self) -> int:
        return len(self._b)

    def take(self, client: str, now: float) -> float:
        """Take one token: 0.0 if there was one, else the seconds until there is one."""
        if client not in self._b and len(self._b) >= self.max_clients:
            self.prune(now)
            if len(self._b) >= self.max_clients:
                client = OVERFLOW_CLIENT
        tokens, at = self._b.get(client, (self.burst, now))
        tokens = min(self.burst, tokens + max(0.0, now - at) * self.rate)
        if tokens >= 1.0:
            self._b[client] = (tokens - 1.0, now)
            return 0.0
        self._b[client] = (tokens, now)
        return (1.0 - tokens) / self.rate

    def prune(self, now: float) -> None:
        """Forget the buckets that are full again (a fresh bucket is the same)."""
        for client in [c for c, (tok, at) in self._b.items()
                       if tok + (now - at) * self.rate >= self.burst]:
            del self._b[client]


class Phase(Enum):
    HEAD = "head"        # waiting for a complete request head (deadline: header_timeout)
    IDLE = "idle"        # kept alive between requests (deadline: idle_timeout)
    REQUEST = "request"  # answering (deadline: request_timeout)
    STREAM = "stream"    # an event stream (no deadline)
    CLOSING = "closing"  # expired, waiting for the shell to report the close


_TIMEOUT_REASON = {Phase.HEAD: "header_timeout", Phase.IDLE: "idle_timeout",
                   Phase.REQUEST: "request_timeout"}


class _Conn:
    __slots__ = ("deadline", "phase")

    def __init__(self, phase: Phase, deadline: float | None) -> None:
        self.phase = phase
        self.deadline = deadline


class Limits:
    """The decisions of the status endpoint; see the module docstring."""

    def __init__(self, limits: StatusLimits | None = None) -> None:
        self.limits = limits or StatusLimits()
        self.max_connections = self.limits.max_connections
        self.buckets = TokenBuckets(self.limits.rate, self.limits.burst, self.limits.max_clients)
        self._conns: dict[Hashable, _Conn] = {}
        self._heap: list[tuple[float, int, Hashable]] = []  # (deadline, seq, conn); lazy
        self._seq = 0
        self.requests = 0
        self.streams = 0
        self.rejected: dict[str, int] = dict.fromkeys(REASONS, 0)

    # ---- connections
    def set_connection_cap(self, cap: int) -> None:
        self.max_connections = max(1, cap)

    def connection_opened(self, conn: Hashable, now: float) -> bool:
        """A connection was accepted: True to keep it, False to abort it now."""
        if len(self._conns) >= self.max_connections:
            self.rejected["too_many_connections"] += 1
            return False
        self._conns[conn] = _Conn(Phase.HEAD, None)
        self._set_deadline(conn, now + self.limits.header_timeout)
        return True

    def data_received(self, conn: Hashable, now: float) -> None:
        """Bytes arrived: the first byte after an idle period starts the header deadline."""
        c = self._conns.get(conn)
        if c is not None and c.phase is Phase.IDLE:
            c.phase = Phase.HEAD
            self._set_deadline(conn, now + self.limits.header_timeout)

    def request_started(self, conn: Hashable, kind: str, now: float) -> None:
        """A complete request head was dispatched (after :meth:`admit` said yes)."""
        c = self._conns.get(conn)
        if c is None or c.phase is Phase.CLOSING:
            return
        if kind == STREAM:
            c.phase = Phase.STREAM
            self._set_deadline(conn, None)
        else:
            c.phase = Phase.REQUEST
            self._set_deadline(conn, now + self.limits.request_timeout)

    def request_ended(self, conn: Hashable, now: float) -> None:
        """The answer is written (or the request failed): the connection is idle."""
        c = self._conns.get(conn)
        if c is None or c.phase is Phase.CLOSING:
            return
        c.phase = Phase.IDLE
        self._set_deadline(conn, now + self.limits.idle_timeout)

    def connection_closed(self, conn: Hashable) -> None:
        """The descriptor is gone (any reason); unknown connections are ignored."""
        self._conns.pop(conn, None)

    def next_deadline(self) -> float | None:
        """The earliest deadline of an open connection (None: nothing to time out)."""
        while self._heap:
            at, _, conn = self._heap[0]
            c = self._conns.get(conn)
            if c is not None and c.deadline == at:
                return at
            heapq.heappop(self._heap)  # stale entry
        return None

    def expired(self, now: float) -> list[tuple[Hashable, str]]:
        """Connections whose deadline has passed, each with its reason, once."""
        out: list[tuple[Hashable, str]] = []
        while (at := self.next_deadline()) is not None and at <= now:
            _, _, conn = heapq.heappop(self._heap)
            c = self._conns[conn]
            reason = _TIMEOUT_REASON[c.phase]
            self.rejected[reason] += 1
            c.phase = Phase.CLOSING
            c.deadline = None
            out.append((conn, reason))
        return out

    def phase(self, conn: Hashable) -> Phase | None:
        c = self._conns.get(conn)
        return c.phase if c is not None else None

    @property
    def connections_open(self) -> int:
        return len(self._conns)

    def _set_deadline(self, conn: Hashable, at: float | None) -> None:
        c = self._conns[conn]
        c.deadline = at
        if at is None:
            return
        self._seq += 1
        heapq.heappush(self._heap, (at, self._seq, conn))
        if len(self._heap) > 4 * len(self._conns) + 64:  # superseded entries: rebuild
            self._heap = [(cc.deadline, i, k) for i, (k, cc) in enumerate(self._conns.items())
                          if cc.deadline is not None]
            heapq.heapify(self._heap)

    # ---- requests
    def admit(self, client: str, kind: str, now: float) -> Verdict:
        """May this request run? (``kind``: HEALTH, REQUEST or STREAM.)"""
        if kind == HEALTH:
            return ADMITTED
        wait = self.buckets.take(client, now)
        if wait > 0.0:
            self.rejected["rate_limited"] += 1
            return Verdict(429, "rate_limited", max(1, math.ceil(wait)))
        if kind == STREAM:
            if self.streams >= self.limits.max_streams:
                self.rejected["too_many_streams"] += 1
                return Verdict(503, "too_many_streams", 1)
            self.streams += 1
        else:
            if self.requests >= self.limits.max_requests:
                self.rejected["too_many_requests"] += 1
                return Verdict(503, "too_many_requests", 1)
            self.requests += 1
        return ADMITTED

    def count(self, reason: str) -> None:
        """A refusal or close the shell decided by these limits (an event stream's write that
        outlived ``request_timeout``)."""
        self.rejected[reason] += 1

    def finished(self, kind: str) -> None:
        """An admitted request ended: its slot is free."""
        if kind == STREAM:
            self.streams = max(0, self.streams - 1)
        elif kind == REQUEST:
            self.requests = max(0, self.requests - 1)

    def stats(self) -> EndpointStats:
        return EndpointStats(dict(self.rejected), len(self._conns), self.requests, self.streams,
                             self.max_connections)
