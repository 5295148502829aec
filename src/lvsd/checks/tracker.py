"""Sans-IO up/down core of the health checks: keepalived's checker timing, as plain objects.

Theory of operation
-------------------
A :class:`CheckTracker` holds the state of one checker (keepalived ``checker_t``: ``is_up``,
``has_run``, ``retry_it``; for HTTP_GET/SSL_GET also ``url_it`` and ``failed_url``). The async
shell asks it *when* to probe (:attr:`CheckTracker.deadline`) and, for HTTP, *which URL*
(:attr:`CheckTracker.url_index`); it runs one attempt and feeds the :class:`ProbeResult` back with
``now``. The tracker returns a :class:`Transition` when the checker's verdict changes and moves
its deadline. No sockets, no event loop, no wall clock; randomness is injected.

Rules (keepalived 2.x, ``check_api.c`` ``register_checkers_thread`` and each checker's epilog;
``check_tcp.c tcp_epilog`` is the model for TCP/UDP/PING/DNS/SMTP/MISC):

* First attempt at ``start + 1 s + uniform(0, warmup)`` (BOOTSTRAP_DELAY + random warmup; warmup
  defaults to delay_loop; ``warmup 0`` means exactly 1 s).
* A checker starts up (``is_up``) and undecided; with ``alpha`` it starts down and that is
  already a decision.
* Success: ``retry_it = 0``; if the checker was down (or had never run) it goes up; next attempt
  after ``delay_loop``.
* Failure while up (or before the first run): if ``retry_it < retry`` it is a retry: ``retry_it
  += 1`` and the next attempt comes after ``delay_before_retry``; otherwise the checker goes down
  (``retry_it = 0``) and the next attempt is after ``delay_loop``. So an up checker goes down
  after ``retry + 1`` consecutive failures.
* Failure while down: nothing changes, next attempt after ``delay_loop`` (no retries).
* Delays run from the end of an attempt, except MISC_CHECK (``check_misc.c``: from the start of
  the script, ``last_ran``).
* ``rise N`` (lvsd extension, keepalived behaves as ``rise 1``): a down checker needs N
  consecutive successes, each ``delay_loop`` apart, to come back up; a failure resets the count.

A result marked ``local`` (the attempt was not made: the director ran out of descriptors,
buffers or memory, see :mod:`lvsd.checks.result`) is no verdict: up/down, the retry and rise
counts and the HTTP URL walk stay as they are; it is counted (``failures["local"]``) and the
next attempt comes ``delay_loop`` later (keepalived check_tcp.c ``tcp_connect_thread``: "TCP
connect fail to create socket. Rescheduling."), or ``delay_before_retry`` later in a retry
sequence, so a real failure is not found later than without the local error.
:class:`LogBudget` bounds how often the shell logs them.

HTTP_GET / SSL_GET with several ``url`` blocks (``check_http.c epilog``/``timeout_epilog``):

* One URL per attempt. A success moves to the next URL, ``delay_loop`` later; success of the
  last URL completes a pass, which brings a down checker up, and starts again at the first URL.
* A failure retries the *same* URL after ``delay_before_retry``; the ``retry+1``-th consecutive
  failure of that URL takes the checker down and remembers it as ``failed_url``; it is then
  re-tried every ``max(delay_before_retry, delay_loop)``.
* When the failed URL answers again the walk restarts at the first URL (``delay_loop`` between
  URLs); the checker comes up only after a full clean pass. A failure during that walk (no
  ``failed_url``) re-tries that URL every ``delay_before_retry``.
* Before the first complete pass, once one URL has succeeded, a later URL's failure takes the
  checker down at once (keepalived sets ``retry_it = retry`` while ``!has_run``).
* ``fast_recovery``: no delay between attempts before the first run and while down without a
  failed URL.

Worst-case detection bound (an up server dies just after an attempt succeeded):
``delay_loop + (retry + 1) × connect_timeout + retry × delay_before_retry`` (MISC_CHECK: with
``misc_timeout`` in place of connect_timeout). :func:`detection_bound` computes it.

Aggregation (keepalived ``update_svr_checker_state``): a real server is alive only while all its
checkers are up; :class:`HealthBoard` turns tracker states into
:class:`~lvsd.checks.health.RealServerHealth`. It is decided as soon as one checker is down, or
when all are decided up. Dynamic weight follows keepalived: effective weight = configured weight
+ Σ checker ``cur_weight``, where MISC_CHECK ``misc_dynamic`` exit 2..255 sets the absolute
weight ``status - 2`` (``cur_weight = status - 2 - configured``) and FILE_CHECK adds ``value ×
weight``. Each verdict carries its checker's value (MISC: ``status - 2``; FILE: the offset);
``RealServerHealth.dynamic_weight`` is the Σ ``cur_weight`` (None when no checker sets one), so
the pool's effective weight is ``configured + dynamic_weight`` clamped to 0..2^31-1.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from lvsd.checks.health import CheckerVerdict, RealServerHealth, RealServerId
from lvsd.checks.result import ProbeResult, failure_class
from lvsd.config.model import Checker, CheckKind

BOOTSTRAP_DELAY = 1.0  # keepalived check_api.h BOOTSTRAP_DELAY (TIMER_HZ)


def attempt_timeout(ck: Checker) -> float:
    """The longest one attempt may take (connect_timeout; MISC_CHECK: misc_timeout)."""
    if ck.kind is CheckKind.MISC_CHECK:
        return ck.misc_timeout if ck.misc_timeout is not None else ck.delay_loop
    return ck.connect_timeout


def detection_bound(ck: Checker) -> float:
    """Worst case from a server dying to its checker going down (see module docstring)."""
    t = attempt_timeout(ck)
    return ck.delay_loop + (ck.retry + 1) * t + ck.retry * ck.delay_before_retry


@dataclass(frozen=True, slots=True)
class Transition:
    up: bool
    reason: str
    at: float
    first: bool  # the first decision of this checker (it was undecided)


class CheckTracker:
    """keepalived's per-checker state machine (see module docstring)."""

    def __init__(self, checker: Checker, start: float, rng: random.Random | None = None) -> None:
        self.checker = checker
        self.is_http = checker.kind in (CheckKind.HTTP_GET, CheckKind.SSL_GET)
        self.up = not checker.alpha
        self.decided = checker.alpha
        self.has_run = False
        self.retry_it = 0
        self.rise_it = 0
        self.url_it: int | None = 0
        self.failed_url: int | None = None
        self.reason = "alpha: starts down" if checker.alpha else "not checked yet"
        self.since = start
        self.weight: int | None = None
        self.last: ProbeResult | None = None
        self.last_at: float | None = None
        self.attempts = 0
        self.failures: dict[str, int] = {}  # failed attempts by result.failure_class
        warm = checker.warmup if checker.warmup is not None else checker.delay_loop
        jitter = (rng or random.Random()).uniform(0.0, warm) if warm > 0 else 0.0
        self.deadline = start + BOOTSTRAP_DELAY + jitter

    # ------------------------------------------------------------------ queries

    @property
    def url_index(self) -> int:
        """HTTP: which ``url`` block the next attempt must fetch."""
        return self.url_it or 0

    def verdict(self) -> CheckerVerdict | None:
        """The published verdict, or None while undecided."""
        if not self.decided:
            return None
        return CheckerVerdict(self.checker.label, self.up, self.reason, self.since,
                              self.weight if self.up else None)

    # ------------------------------------------------------------------ input

    def on_result(self, result: ProbeResult, now: float) -> Transition | None:
        """Feed one attempt's result; returns a transition if the verdict changed."""
        self.last, self.last_at = result, now
        self.attempts += 1
        if not result.ok:
            cls = failure_class(result.reason)
            self.failures[cls] = self.failures.get(cls, 0) + 1
        if result.local:
            self._local(result, now)
            return None
        if self.is_http:
            return self._http(result, now)
        return self._generic(result, now)

    def _local(self, r: ProbeResult, now: float) -> None:
        """No verdict: only the next attempt moves (see the module docstring)."""
        ck = self.checker
        delay = ck.delay_before_retry if self.retry_it and self.has_run else ck.delay_loop
        anchor = r.started if (ck.kind is CheckKind.MISC_CHECK and r.started is not None) else now
        self.deadline = max(anchor + delay, now)

    def _generic(self, r: ProbeResult, now: float) -> Transition | None:
        ck = self.checker
        tr: Transition | None = None
        delay = ck.delay_loop
        if r.ok:
            self.retry_it = 0
            self.weight = r.weight
            if not self.up or not self.has_run:
                tr = self._succeeded(r.reason, now)
        else:
            self.rise_it = 0
            if (self.up or not self.has_run) and self.retry_it >= ck.retry:
                self.retry_it = 0
                tr = self._down(r.reason, now)
            elif self.up:
                self.retry_it += 1
                delay = ck.delay_before_retry
        self.has_run = True
        anchor = r.started if (ck.kind is CheckKind.MISC_CHECK and r.started is not None) else now
        self.deadline = max(anchor + delay, now)
        return tr

    def _http(self, r: ProbeResult, now: float) -> Transition | None:
        ck = self.checker
        n = len(ck.urls)
        tr: Transition | None = None
        if r.ok:  # keepalived REGISTER_CHECKER_NEW
            cur = self.url_it or 0
            self.url_it = cur + 1 if cur + 1 < n else None
            self.retry_it = 0
            if self.url_it is None and self.failed_url is None:
                if not self.up or not self.has_run:
                    tr = self._succeeded(r.reason, now)
                    self.has_run = True
                self.url_it = 0
                self.retry_it = 0
            elif self.failed_url is not None:
                self.failed_url = None
                self.url_it = 0
                self.retry_it = 0
            delay = ck.delay_loop
            if not self.has_run:
                self.retry_it = ck.retry
        else:
            self.rise_it = 0
            if self.up or not self.has_run:  # REGISTER_CHECKER_RETRY
                self.has_run = True
                self.retry_it += 1
                if self.retry_it > ck.retry:
                    if self.up:
                        tr = self._down(self._url_reason(r.reason), now)
                    self.failed_url = self.url_it or 0
            # else REGISTER_CHECKER_FAILED: nothing changes
            if self.failed_url is not None:
                delay = max(ck.delay_before_retry, ck.delay_loop)
            else:
                delay = ck.delay_before_retry
        if ck.fast_recovery and (not self.has_run or (not self.up and self.failed_url is None)):
            delay = 0.0
        self.deadline = now + delay
        return tr

    def _url_reason(self, reason: str) -> str:
        urls = self.checker.urls
        if len(urls) > 1:
            return f"{urls[self.url_it or 0].path}: {reason}"
        return reason

    def _succeeded(self, reason: str, now: float) -> Transition | None:
        if not self.up and self.checker.rise > 1:
            self.rise_it += 1
            if self.rise_it < self.checker.rise:
                return None
            reason = f"{reason} ({self.rise_it} successes in a row)"
        self.rise_it = 0
        return self._set(True, reason, now)

    def _down(self, reason: str, now: float) -> Transition | None:
        ck = self.checker
        if ck.retry and self.has_run:
            reason = f"{reason} (after {ck.retry} {'retry' if ck.retry == 1 else 'retries'})"
        self.weight = None
        return self._set(False, reason, now)

    def _set(self, up: bool, reason: str, now: float) -> Transition | None:
        first = not self.decided
        changed = first or up != self.up
        self.up, self.decided = up, True
        if not changed:
            return None
        self.reason, self.since = reason, now
        return Transition(up, reason, now, first)

class LogBudget:
    """At most one log line per ``interval`` seconds; counts the lines it holds back."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.held = 0
        self._next = float("-inf")

    def allow(self, now: float) -> int | None:
        """None: stay quiet (the line is counted); else log now, having held back that many
        lines since the last one."""
        if now < self._next:
            self.held += 1
            return None
        held, self.held = self.held, 0
        self._next = now + self.interval
        return held


class HealthBoard:
    """Aggregates tracker verdicts into :class:`RealServerHealth` per real server."""

    def __init__(self) -> None:
        self._servers: dict[RealServerId, tuple[int, tuple[CheckTracker, ...]]] = {}
        self._health: dict[RealServerId, RealServerHealth] = {}

    def bind(self, rsid: RealServerId, weight: int, trackers: Sequence[CheckTracker]) -> None:
        self._servers[rsid] = (weight, tuple(trackers))

    def unbind(self, rsid: RealServerId) -> bool:
        """Forget a server; True if it had a published health."""
        self._servers.pop(rsid, None)
        return self._health.pop(rsid, None) is not None

    def servers(self) -> Iterable[RealServerId]:
        return self._servers.keys()

    @property
    def health(self) -> dict[RealServerId, RealServerHealth]:
        return self._health

    def refresh(self, rsid: RealServerId, now: float) -> RealServerHealth | None:
        """Recompute one server; returns the new health if it changed (None otherwise)."""
        entry = self._servers.get(rsid)
        if entry is None:
            return None
        weight, trackers = entry
        old = self._health.get(rsid)
        new = aggregate(weight, trackers, now, old)
        if new is None or new == old:
            return None
        self._health[rsid] = new
        return new


def aggregate(weight: int, trackers: Sequence[CheckTracker], now: float,
              previous: RealServerHealth | None) -> RealServerHealth | None:
    """Health of one real server, or None while undecided (no checker down, some undecided)."""
    verdicts = [t.verdict() for t in trackers]
    known = [v for v in verdicts if v is not None]
    down = [v for v in known if not v.up]
    if not down and len(known) < len(verdicts):
        return None
    alive = not down
    if not trackers:
        reason = "no checkers"
    elif alive:
        reason = "all checkers up" if len(trackers) > 1 else known[0].reason
    else:
        reason = "; ".join(f"{v.checker}: {v.reason}" for v in down)
    dyn: int | None = None  # Σ keepalived cur_weight: effective = configured + dyn
    for t in trackers:
        if t.up and t.decided and t.weight is not None:
            # MISC_CHECK sets the absolute weight status-2 (check_misc.c); FILE_CHECK an offset
            misc = t.checker.kind is CheckKind.MISC_CHECK
            dyn = (dyn or 0) + (t.weight - weight if misc else t.weight)
    if previous is not None and previous.alive == alive:
        since = previous.since
    elif down:
        since = max(v.since for v in down)
    elif known:
        since = max(v.since for v in known)
    else:
        since = now
    return RealServerHealth(alive, tuple(known), dyn, reason, since)
