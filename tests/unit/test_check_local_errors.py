"""A check not made for a local reason (EMFILE, ENOBUFS, ...) is no verdict (issue 16 item 1):
the sans-IO tracker keeps its state, counts it and moves only its next attempt; the log budget
bounds the log lines; the probes' classification of errnos."""

from __future__ import annotations

import errno
from typing import Any

import pytest

from lvsd.checks.result import LOCAL_ERRNOS, ProbeResult, local_failure, os_failure
from lvsd.checks.tracker import CheckTracker, LogBudget
from lvsd.config.model import NOPOS, Checker, CheckKind, HttpUrl

pytestmark = pytest.mark.unit

OK = ProbeResult(True, "connected")
REFUSED = ProbeResult(False, "refused")
EMFILE = local_failure(errno.EMFILE, 0.0)


def tcp(**kw: Any) -> Checker:
    base: dict[str, Any] = dict(connect_timeout=3.0, retry=2, delay_before_retry=1.5,
                                delay_loop=10.0, warmup=0.0)
    base.update(kw)
    return Checker(CheckKind.TCP_CHECK, NOPOS, "192.0.2.1", 80, **base)


def state(t: CheckTracker) -> tuple[object, ...]:
    return (t.up, t.decided, t.has_run, t.retry_it, t.rise_it, t.url_it, t.failed_url,
            t.reason, t.since, t.weight)


def test_local_errors_never_take_an_up_checker_down() -> None:
    t = CheckTracker(tcp(retry=0), 0.0)
    assert t.on_result(OK, 1.0) is not None and t.up
    before = state(t)
    now = 1.0
    for _ in range(50):  # far more than retry + 1: a failure would have taken it down at once
        now = t.deadline
        assert t.on_result(EMFILE, now) is None
        assert state(t) == before
        assert t.deadline == now + 10.0  # keepalived: rescheduled after delay_loop
    assert t.failures == {"local": 50}
    assert t.last is EMFILE and t.attempts == 51
    # a real failure afterwards is judged as if the local errors had not happened
    tr = t.on_result(REFUSED, t.deadline)
    assert tr is not None and not tr.up and tr.reason == "refused"


def test_local_errors_never_bring_a_down_checker_up_nor_count_as_rise() -> None:
    t = CheckTracker(tcp(retry=0, rise=2), 0.0)
    t.on_result(REFUSED, 1.0)
    assert not t.up
    assert t.on_result(OK, 11.0) is None and t.rise_it == 1
    before = state(t)
    assert t.on_result(EMFILE, 21.0) is None and state(t) == before
    assert t.on_result(OK, 31.0) is not None and t.up  # the rise count was kept


def test_undecided_checker_stays_undecided() -> None:
    t = CheckTracker(tcp(), 0.0)
    assert t.on_result(EMFILE, 1.0) is None
    assert t.verdict() is None and not t.has_run


def test_retry_sequence_keeps_its_count_and_cadence() -> None:
    t = CheckTracker(tcp(retry=2), 0.0)
    t.on_result(OK, 1.0)
    t.on_result(REFUSED, 11.0)
    assert t.retry_it == 1 and t.deadline == 12.5
    assert t.on_result(EMFILE, 12.5) is None
    # still one failure of three, next attempt delay_before_retry later (not delay_loop)
    assert t.retry_it == 1 and t.deadline == 14.0 and t.up
    t.on_result(REFUSED, 14.0)
    tr = t.on_result(REFUSED, 15.5)
    assert tr is not None and not tr.up  # the 3rd real failure, not the 4th attempt


def test_http_url_walk_is_kept() -> None:
    urls = tuple(HttpUrl(f"/u{i}") for i in range(3))
    t = CheckTracker(Checker(CheckKind.HTTP_GET, NOPOS, "192.0.2.1", 80, urls=urls, retry=1,
                             delay_loop=6.0, delay_before_retry=3.0, warmup=0.0), 0.0)
    t.on_result(OK, 1.0)
    assert t.url_index == 1
    before = state(t)
    assert t.on_result(EMFILE, 7.0) is None
    assert state(t) == before and t.url_index == 1


def test_misc_schedules_from_the_start_of_the_attempt() -> None:
    ck = Checker(CheckKind.MISC_CHECK, NOPOS, "192.0.2.1", 0, delay_loop=10.0, warmup=0.0)
    t = CheckTracker(ck, 0.0)
    t.on_result(ProbeResult(True, "script exit 0", started=1.0), 1.5)
    t.on_result(ProbeResult(False, "local error", started=11.0, local=True), 11.2)
    assert t.deadline == 21.0 and t.up


def test_log_budget_one_line_per_interval_and_counts_the_rest() -> None:
    b = LogBudget(10.0)
    assert b.allow(0.0) == 0
    assert [b.allow(x) for x in (1.0, 2.0, 9.9)] == [None, None, None]
    assert b.allow(10.0) == 3
    assert b.allow(10.5) is None
    assert b.allow(25.0) == 1


@pytest.mark.parametrize("code", sorted(LOCAL_ERRNOS))
def test_resource_errnos_are_local(code: int) -> None:
    r = os_failure(OSError(code, "x"), 0.0)
    assert r.local and not r.ok
    assert r.reason.startswith("local error: ") and errno.errorcode[code] in r.reason
    assert os_failure(code, 0.0).local


@pytest.mark.parametrize("code", [errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ECONNRESET,
                                  errno.ETIMEDOUT, errno.EADDRNOTAVAIL])
def test_errors_about_the_peer_or_the_config_are_verdicts(code: int) -> None:
    r = os_failure(OSError(code, "x"), 0.0)
    assert not r.local and not r.ok and "local" not in r.reason
