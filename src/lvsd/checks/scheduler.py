"""Async shell that runs every health check on the tracker cores' schedule.

Theory of operation
-------------------
For each distinct checker (same kind, target, parameters and timing, wherever it appears: a
real server listed under several virtual servers is probed once) the scheduler owns one
:class:`~lvsd.checks.tracker.CheckTracker`. Deadlines sit in one heap served by a single loop
timer (cheaper than a timer per checker when there are thousands). When a deadline is due the
probe starts (TCP_CHECK, HTTP_GET, SSL_GET: plain callbacks, no task; others: a task),
bounded by ``concurrency`` (excess probes queue in deadline order; the lateness shows in
:attr:`Scheduler.stats`); its result goes to the tracker, the deadline is re-armed, and the
:class:`~lvsd.checks.tracker.HealthBoard` recomputes every real server bound to that tracker.
All times are the event loop's clock (``loop.time()``; monotonic). Changed healths are
published to callbacks and to :meth:`Scheduler.events` subscribers as :class:`HealthEvent`;
``health=None`` means the server was removed. While a new checker of a server is still
undecided, the server's previous health stays published (keepalived: a new checker starts up).

``log_all_failures`` (checker) or ``checker_log_all_failures`` (global_defs) logs every failed
attempt of an up checker, retries included (keepalived); otherwise only transitions are
reported (as health events). An attempt not made for a local reason (EMFILE, ENOBUFS, ...:
:mod:`lvsd.checks.result`) changes no state; it is counted (``CheckerStatus.failures["local"]``)
and logged at most once every :data:`LOCAL_ERROR_LOG_INTERVAL` seconds for the whole
scheduler, with the number of lines held back, so an exhausted descriptor table cannot flood
the log.

Reload (:meth:`Scheduler.update`): a checker whose identity is unchanged keeps its tracker
(state, retry count, schedule). A checker whose probe is unchanged but whose timing changed
inherits the old state and is re-timed. New checkers start like at boot (1 s + warmup, alpha
respected); removed ones are cancelled, in-flight probes included (a MISC_CHECK script's
process group is stopped and SIGKILLed in the background; :meth:`Scheduler.close` waits for
that). The TLS client contexts
of SSL_GET (global ``SSL`` block: ca, certificate, key) are rebuilt after every reload.

:meth:`Scheduler.status` exposes per-checker state for the status page. Shutdown
(:meth:`Scheduler.close`) cancels timers and in-flight probes and waits for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import gc
import heapq
import itertools
import logging
import math
import random
import ssl
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass, field
from functools import partial

from lvsd.checks import file as file_probe
from lvsd.checks import http as http_probe
from lvsd.checks import misc as misc_probe
from lvsd.checks import ping as ping_probe
from lvsd.checks import smtp as smtp_probe
from lvsd.checks import tcp as tcp_probe
from lvsd.checks import udp as udp_probe
from lvsd.checks.health import RealServerHealth, RealServerId
from lvsd.checks.result import ProbeResult, local_failure
from lvsd.checks.tracker import CheckTracker, HealthBoard, LogBudget
from lvsd.config.model import NOPOS, Checker, CheckKind, Config, GlobalDefs
from lvsd.scriptrun import wait_stopped

_log = logging.getLogger(__name__)

#: seconds between two log lines about checks not made for a local reason
LOCAL_ERROR_LOG_INTERVAL = 10.0

#: kinds probed by a callback engine (no task): TcpEngine, HttpEngine
_CALLBACK_KINDS = frozenset({CheckKind.TCP_CHECK, CheckKind.HTTP_GET, CheckKind.SSL_GET})

_TIMING = ("delay_loop", "warmup", "retry", "delay_before_retry", "alpha", "rise",
           "log_all_failures", "fast_recovery")
_TIMING_DEFAULTS = {k: getattr(Checker(CheckKind.TCP_CHECK, NOPOS, "0.0.0.0", 0), k)
                    for k in _TIMING}


@dataclass(frozen=True, slots=True)
class HealthEvent:
    rsid: RealServerId
    health: RealServerHealth | None  # None: removed / undecided
    at: float


@dataclass(frozen=True, slots=True)
class CheckerStatus:
    label: str
    servers: tuple[RealServerId, ...]
    up: bool | None  # None: undecided
    reason: str
    since: float
    last_ok: bool | None
    last_reason: str | None
    last_latency: float | None
    last_at: float | None
    next_check: float | None
    attempts: int
    retry_it: int
    in_flight: bool
    failures: Mapping[str, int] = field(default_factory=dict)  # failed attempts by class


@dataclass(frozen=True, slots=True)
class ProbeKey:
    """Identity of a probe: the checker without position, plus the HTTP fallback vhost."""

    checker: Checker
    vhost: str | None

    @property
    def probe_only(self) -> ProbeKey:
        return ProbeKey(dataclasses.replace(self.checker, **_TIMING_DEFAULTS), self.vhost)


def key_for(ck: Checker, vhost: str | None) -> ProbeKey:
    # positions take no part in model equality (config/model.py); unsupported keywords do not
    # change what is probed
    norm = dataclasses.replace(ck, unsupported=())
    if ck.kind not in (CheckKind.HTTP_GET, CheckKind.SSL_GET):
        vhost = None
    return ProbeKey(norm, vhost)


@dataclass
class _Entry:
    key: ProbeKey
    tracker: CheckTracker
    servers: set[RealServerId]
    token: int = 0  # heap entries with another token are stale
    task: asyncio.Task[None] | None = None
    cancel: Callable[[], None] | None = None  # callback-based probe in flight
    launch: int = 0  # id of that probe: late callbacks of a stopped one are ignored
    removed: bool = False
    label: str = ""  # the checker's label, computed once (every status snapshot shows it)

    def __post_init__(self) -> None:
        self.label = self.tracker.checker.label


@dataclass
class SchedulerStats:
    launched: int = 0
    completed: int = 0
    lateness: list[float] | None = None  # filled when collect_lateness
    max_in_flight: int = 0


class Scheduler:
    def __init__(self, config: Config | None = None, *, concurrency: int = 1024,
                 rng: random.Random | None = None,
                 on_change: Callable[[HealthEvent], None] | None = None,
                 collect_lateness: bool = False) -> None:
        self._rng = rng or random.Random()
        self._concurrency = concurrency
        self._entries: dict[ProbeKey, _Entry] = {}
        self._board = HealthBoard()
        self._callbacks: list[Callable[[HealthEvent], None]] = [on_change] if on_change else []
        self._queues: list[asyncio.Queue[HealthEvent]] = []
        self._pending: deque[_Entry] = deque()
        # one heap of (deadline, token, entry) and one loop timer for its head: far cheaper
        # than a TimerHandle per checker when there are thousands
        self._heap: list[tuple[float, int, _Entry]] = []
        self._tokens = itertools.count(1)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._in_flight = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._clock_res = 1e-9
        self._foreign_clock = True
        self._tcp: tcp_probe.TcpEngine | None = None
        self._http: http_probe.HttpEngine | None = None
        self._globals = GlobalDefs()
        self._ssl: dict[tuple[bool, str | None], ssl.SSLContext] = {}
        self.stats = SchedulerStats(lateness=[] if collect_lateness else None)
        self._local_log = LogBudget(LOCAL_ERROR_LOG_INTERVAL)
        self._stopping: set[asyncio.Task[None]] = set()  # probe tasks cancelled, not yet done
        self._config = config

    # ------------------------------------------------------------------ public

    async def start(self) -> None:
        """Bind to the running loop and apply the initial config."""
        self._bind_loop()
        if self._config is not None:
            self.update(self._config)

    @property
    def health(self) -> Mapping[RealServerId, RealServerHealth]:
        return self._board.health

    def add_callback(self, cb: Callable[[HealthEvent], None]) -> None:
        self._callbacks.append(cb)

    async def events(self) -> AsyncGenerator[HealthEvent, None]:
        """Current healths first, then every change, until :meth:`close`."""
        q: asyncio.Queue[HealthEvent] = asyncio.Queue()
        now = asyncio.get_running_loop().time()
        for rsid, h in list(self._board.health.items()):
            q.put_nowait(HealthEvent(rsid, h, now))
        self._queues.append(q)
        try:
            while True:
                ev = await q.get()
                if ev.at < 0:  # close sentinel
                    return
                yield ev
        finally:
            with contextlib.suppress(ValueError):
                self._queues.remove(q)

    def update(self, config: Config) -> None:
        """Apply a (re)loaded config (see module docstring)."""
        if self._loop is None:
            self._bind_loop()
        self._config = config
        self._globals = config.global_defs
        # SSL_GET contexts hold the SSL block's files as read then: a reload (new paths, or
        # certificates rotated in place) rebuilds them on the next probe
        self._ssl.clear()
        assert self._loop is not None
        now = self._loop.time()
        wanted: dict[ProbeKey, set[RealServerId]] = {}
        servers: dict[RealServerId, tuple[int, list[ProbeKey]]] = {}
        for vs in config.virtual_servers:
            for rs in vs.real_servers:
                rsid = RealServerId(vs.ident, rs.address, rs.port)
                vhost = rs.virtualhost or vs.virtualhost
                keys = []
                for ck in rs.checkers:
                    if ck.kind is CheckKind.BFD_CHECK:
                        continue  # not implemented; the config layer warns
                    k = key_for(ck, vhost)
                    keys.append(k)
                    wanted.setdefault(k, set()).add(rsid)
                servers[rsid] = (rs.weight, keys)
        # removed trackers (remember their state for a timing-only change)
        orphans: dict[ProbeKey, _Entry] = {}
        for k in list(self._entries):
            if k not in wanted:
                e = self._entries.pop(k)
                self._stop(e)
                orphans.setdefault(k.probe_only, e)
        for k, rsids in wanted.items():
            cur = self._entries.get(k)
            if cur is None:
                tr = self._new_tracker(k.checker, now)
                old = orphans.pop(k.probe_only, None)
                if old is not None:
                    _inherit(tr, old.tracker, now)
                cur = _Entry(k, tr, set(rsids))
                self._entries[k] = cur
                self._arm(cur)
            else:
                cur.servers = set(rsids)
        changed: list[HealthEvent] = []
        for rsid in list(self._board.servers()):
            if rsid not in servers and self._board.unbind(rsid):
                changed.append(HealthEvent(rsid, None, now))
        for rsid, (weight, keys) in servers.items():
            self._board.bind(rsid, weight, [self._entries[k].tracker for k in keys])
            h = self._board.refresh(rsid, now)
            if h is not None:
                changed.append(HealthEvent(rsid, h, now))
        for ev in changed:
            self._publish(ev)

    def status(self) -> list[CheckerStatus]:
        # the cyclic GC off meanwhile: these values are acyclic, and at thousands of checkers
        # the collector's passes during the build cost a quarter of it (daemon/snapshot.py)
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            return self._status()
        finally:
            if gc_was_enabled:
                gc.enable()

    def _status(self) -> list[CheckerStatus]:
        out = []
        for e in self._entries.values():
            t = e.tracker
            last = t.last
            out.append(CheckerStatus(
                label=e.label, servers=tuple(sorted(e.servers)),
                up=t.up if t.decided else None, reason=t.reason, since=t.since,
                last_ok=last.ok if last else None, last_reason=last.reason if last else None,
                last_latency=last.latency if last else None, last_at=t.last_at,
                next_check=None if self._busy(e) else t.deadline, attempts=t.attempts,
                retry_it=t.retry_it, in_flight=self._busy(e), failures=dict(t.failures)))
        return out

    def _bind_loop(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._clock_res = getattr(self._loop, "_clock_resolution", 1e-3)
        # asyncio's own loop clock is time.monotonic(): a probe's monotonic start is already
        # on it, and the per-result conversion (a dataclass copy) is only needed on another
        # loop (uvloop's clock differs slightly)
        self._foreign_clock = type(self._loop).time is not asyncio.BaseEventLoop.time

    @staticmethod
    def _busy(e: _Entry) -> bool:
        return e.task is not None or e.cancel is not None

    async def close(self) -> None:
        self._closed = True
        for e in self._entries.values():
            self._stop(e)
        tasks = set(self._stopping)  # those cancelled just now, and by earlier reloads
        self._pending.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._heap.clear()
        if self._tcp is not None:
            self._tcp.close()
            self._tcp = None
        if self._http is not None:
            self._http.close()
            self._http = None
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        # MISC_CHECK scripts stopped here or removed by an earlier reload: their process
        # groups are SIGKILLed before close returns (lvsd.scriptrun.runner)
        await wait_stopped()
        for q in self._queues:
            q.put_nowait(HealthEvent(RealServerId("", "", 0), None, -1.0))

    async def __aenter__(self) -> Scheduler:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ internals

    def _new_tracker(self, ck: Checker, now: float) -> CheckTracker:
        if ck.kind is CheckKind.FILE_CHECK:
            # the file's content is the state: no retries, no alpha, read at once
            ck = dataclasses.replace(ck, retry=0, alpha=False, warmup=0.0, rise=1)
            tr = CheckTracker(ck, now, self._rng)
            tr.deadline = now
            return tr
        return CheckTracker(ck, now, self._rng)

    def _arm(self, e: _Entry) -> None:
        if self._closed or e.removed:
            return
        e.token = next(self._tokens)
        at = e.tracker.deadline
        heapq.heappush(self._heap, (at, e.token, e))
        if at < self._timer_at:
            self._set_timer(at)

    def _set_timer(self, at: float) -> None:
        assert self._loop is not None
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        self._timer = self._loop.call_at(at, self._tick)

    def _tick(self) -> None:
        assert self._loop is not None
        self._timer, self._timer_at = None, math.inf
        if self._closed:
            return
        horizon = self._loop.time() + self._clock_res
        heap = self._heap
        while heap and heap[0][0] <= horizon:
            _, token, e = heapq.heappop(heap)
            if token == e.token and not e.removed:
                e.token = 0
                self._fire(e)
        if heap:
            self._set_timer(heap[0][0])

    def _stop(self, e: _Entry) -> None:
        e.removed = True
        e.token = 0
        if e.task is not None:
            e.task.cancel()
            # a cancelled MISC_CHECK still stops its script: close() waits for that
            self._stopping.add(e.task)
            e.task.add_done_callback(self._stopping.discard)
        if e.cancel is not None:
            e.cancel()
            e.cancel = None
            e.launch = 0
            self._in_flight -= 1

    def _fire(self, e: _Entry) -> None:
        if e.removed or self._closed:
            return
        if self._in_flight >= self._concurrency:
            self._pending.append(e)
            return
        self._launch(e)

    def _launch(self, e: _Entry) -> None:
        assert self._loop is not None
        if self.stats.lateness is not None:
            self.stats.lateness.append(self._loop.time() - e.tracker.deadline)
        self.stats.launched += 1
        self._in_flight += 1
        self.stats.max_in_flight = max(self.stats.max_in_flight, self._in_flight)
        ck = e.tracker.checker
        if ck.kind in _CALLBACK_KINDS:
            # fast path: callbacks only, no task (thousands of checks per second)
            lid = e.launch = next(self._tokens)
            done = partial(self._done_cb, e, lid)
            try:
                if ck.kind is CheckKind.TCP_CHECK:
                    if self._tcp is None:
                        self._tcp = tcp_probe.TcpEngine(self._loop)
                    e.cancel = self._tcp.start(ck, done)
                    return
                if self._http is None:
                    self._http = http_probe.HttpEngine(self._loop)
            except OSError as ex:  # epoll_create: EMFILE/ENOMEM, no verdict; retried later
                e.cancel = _noop
                self._loop.call_soon(done, local_failure(ex.errno or errno.EMFILE,
                                                         time.monotonic()))
                return
            try:
                ctx = self._ssl_ctx(ck) if ck.kind is CheckKind.SSL_GET else None
            except (OSError, ssl.SSLError) as ex:  # the SSL block's files (unreadable, bad)
                e.cancel = _noop
                self._loop.call_soon(done, ProbeResult(
                    False, f"internal error: {type(ex).__name__}: {ex}"))
                return
            e.cancel = self._http.start(ck, e.tracker.url_index, e.key.vhost, ctx, done)
        else:
            task = e.task = self._loop.create_task(self._run(e))
            task.add_done_callback(lambda t: self._task_gone(e, t))

    async def _run(self, e: _Entry) -> None:
        try:
            result = await self._probe(e)
        except Exception as ex:  # a probe bug must not kill the scheduler: record it as a failure
            result = ProbeResult(False, f"internal error: {type(ex).__name__}: {ex}")
        e.task = None
        self._done(e, result)

    def _task_gone(self, e: _Entry, task: asyncio.Task[None]) -> None:
        # a cancelled task (maybe before its first step) never reached _done: account here
        if task.cancelled():
            if e.task is task:
                e.task = None
            self._in_flight -= 1
            self._drain()

    def _done_cb(self, e: _Entry, lid: int, result: ProbeResult) -> None:
        if e.launch != lid:
            return  # stopped meanwhile (already accounted for by _stop)
        e.launch = 0
        self._done(e, result)

    def _done(self, e: _Entry, result: ProbeResult) -> None:
        e.cancel = None
        self._in_flight -= 1
        if self._pending:
            self._drain()
        if e.removed or self._closed:
            return
        self.stats.completed += 1
        assert self._loop is not None
        now = self._loop.time()  # the loop's clock (uvloop's differs slightly from monotonic)
        if result.started is not None and self._foreign_clock:
            result = dataclasses.replace(result, started=now - (time.monotonic() - result.started))
        t = e.tracker
        if result.local:
            held = self._local_log.allow(now)
            if held is not None:
                _log.warning("%s: check not made, %s: no verdict, the real server keeps its "
                             "state%s", t.checker.label, result.reason,
                             f" ({held} more such line(s) held back)" if held else "")
        elif not result.ok and t.up and (t.checker.log_all_failures
                                       or self._globals.checker_log_all_failures):
            # keepalived log_all_failures / checker_log_all_failures: every failed attempt
            # of an up checker (retries included), not only the transition
            _log.info("%s: check failed: %s (attempt %d of %d)", t.checker.label,
                      result.reason, t.retry_it + 1, t.checker.retry + 1)
        before = (t.up, t.decided, t.weight)
        t.on_result(result, now)
        self._arm(e)
        if (t.up, t.decided, t.weight) != before:
            for rsid in e.servers:
                h = self._board.refresh(rsid, now)
                if h is not None:
                    self._publish(HealthEvent(rsid, h, now))

    def _drain(self) -> None:
        while self._pending and self._in_flight < self._concurrency and not self._closed:
            nxt = self._pending.popleft()
            if not nxt.removed:
                self._launch(nxt)

    def _publish(self, ev: HealthEvent) -> None:
        for cb in list(self._callbacks):
            cb(ev)
        for q in self._queues:
            q.put_nowait(ev)

    def _ssl_ctx(self, ck: Checker) -> ssl.SSLContext:
        ca = self._globals.ssl.ca if self._globals.ssl is not None else None
        verify = ck.verify_cert
        ctx = self._ssl.get((verify, ca))
        if ctx is None:
            ctx = self._ssl[(verify, ca)] = http_probe.client_context(verify, ca)
            g = self._globals.ssl
            if g is not None and g.certificate:
                ctx.load_cert_chain(g.certificate, g.key, g.password)
        return ctx

    async def _probe(self, e: _Entry) -> ProbeResult:
        """One probe of a checker that runs as a task (TCP_CHECK, HTTP_GET and SSL_GET never
        come here: they run on the callback engines, see :meth:`_launch`)."""
        ck = e.tracker.checker
        kind = ck.kind
        if kind is CheckKind.MISC_CHECK:
            return await misc_probe.probe(ck, self._globals.script_user,
                                          self._globals.script_group,
                                          security=self._globals.enable_script_security)
        if kind is CheckKind.DNS_CHECK:
            # imported by the first DNS_CHECK: dnspython is a tenth of the daemon's start-up
            from lvsd.checks import dns as dns_probe

            return await dns_probe.probe(ck)
        if kind is CheckKind.UDP_CHECK:
            return await udp_probe.probe(ck)
        if kind is CheckKind.PING_CHECK:
            return await ping_probe.probe(ck)
        if kind is CheckKind.SMTP_CHECK:
            return await smtp_probe.probe(ck)
        if kind is CheckKind.FILE_CHECK:
            return file_probe.probe_sync(ck)
        return ProbeResult(False, f"{kind.value} not supported")


def _noop() -> None:
    pass


def _inherit(new: CheckTracker, old: CheckTracker, now: float) -> None:
    """Carry state across a timing-only change of a checker (keepalived migrates checker state
    on reload when the connection options compare equal)."""
    new.up, new.decided, new.has_run = old.up, old.decided, old.has_run
    new.reason, new.since, new.weight = old.reason, old.since, old.weight
    new.retry_it = min(old.retry_it, new.checker.retry)
    new.url_it, new.failed_url = old.url_it, old.failed_url
    new.last, new.last_at, new.attempts = old.last, old.last_at, old.attempts
    new.failures = old.failures
    if old.has_run:
        new.deadline = min(old.deadline, now + new.checker.delay_loop)
