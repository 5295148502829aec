"""The sans-IO checker core against keepalived's timing rules, with a scripted clock."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

from lvsd.checks.health import RealServerId
from lvsd.checks.result import ProbeResult
from lvsd.checks.tracker import (
    BOOTSTRAP_DELAY,
    CheckTracker,
    HealthBoard,
    Transition,
    detection_bound,
)
from lvsd.config.model import NOPOS, Checker, CheckKind, HttpUrl, Script

pytestmark = pytest.mark.unit

OK = ProbeResult(True, "connected")
REFUSED = ProbeResult(False, "refused")


def tcp(**kw: Any) -> Checker:
    base: dict[str, Any] = dict(connect_timeout=3.0, retry=2, delay_before_retry=1.5,
                                   delay_loop=10.0, warmup=0.0)
    base.update(kw)
    return Checker(CheckKind.TCP_CHECK, NOPOS, "192.0.2.1", 80, **base)


def http(n_urls: int, **kw: Any) -> Checker:
    urls = tuple(HttpUrl(f"/u{i}") for i in range(n_urls))
    base: dict[str, Any] = dict(connect_timeout=2.0, retry=1, delay_before_retry=3.0,
                                   delay_loop=6.0, warmup=0.0, urls=urls)
    base.update(kw)
    return Checker(CheckKind.HTTP_GET, NOPOS, "192.0.2.1", 80, **base)


class Run:
    """Drive a tracker: each attempt starts at the deadline and lasts ``latency(result)``."""

    def __init__(self, tr: CheckTracker) -> None:
        self.tr = tr
        self.log: list[tuple[float, int, bool]] = []  # (start, url index, ok)
        self.transitions: list[Transition] = []

    def step(self, server: Callable[[float, int], ProbeResult],
             latency: Callable[[ProbeResult], float] = lambda r: 0.0) -> Transition | None:
        start = self.tr.deadline
        idx = self.tr.url_index
        res = server(start, idx)
        self.log.append((start, idx, res.ok))
        tr = self.tr.on_result(res, start + latency(res))
        if tr is not None:
            self.transitions.append(tr)
        return tr

    def until(self, pred: Callable[[], bool], server: Callable[[float, int], ProbeResult],
              latency: Callable[[ProbeResult], float] = lambda r: 0.0, limit: int = 200) -> None:
        for _ in range(limit):
            if pred():
                return
            self.step(server, latency)
        raise AssertionError("condition never met")


def always(r: ProbeResult) -> Callable[[float, int], ProbeResult]:
    return lambda t, i: r


# ------------------------------------------------------------------------- start / warmup


def test_first_check_after_bootstrap_delay_plus_seeded_warmup() -> None:
    ck = tcp(warmup=5.0)
    a = CheckTracker(ck, 100.0, random.Random(7))
    b = CheckTracker(ck, 100.0, random.Random(7))
    assert a.deadline == b.deadline  # injected randomness is reproducible
    starts = [CheckTracker(ck, 100.0, random.Random(s)).deadline for s in range(200)]
    assert all(100.0 + BOOTSTRAP_DELAY <= d <= 106.0 for d in starts)
    assert max(starts) - min(starts) > 4.0  # really spread over the warmup window


def test_warmup_zero_is_exactly_one_second_and_default_is_delay_loop() -> None:
    assert CheckTracker(tcp(warmup=0.0), 50.0, random.Random(1)).deadline == 51.0
    starts = [CheckTracker(tcp(warmup=None, delay_loop=20.0), 0.0, random.Random(s)).deadline
              for s in range(200)]
    assert all(1.0 <= d <= 21.0 for d in starts) and max(starts) > 15.0


# ------------------------------------------------------------------------- up / down


def test_undecided_until_first_result_then_up_with_delay_loop() -> None:
    tr = CheckTracker(tcp(), 0.0, random.Random(0))
    assert tr.verdict() is None
    t = tr.on_result(OK, 1.0)
    assert t is not None and t.up and t.first and t.reason == "connected"
    assert tr.deadline == 11.0
    v = tr.verdict()
    assert v is not None and v.up and v.since == 1.0
    assert tr.on_result(OK, 11.0) is None  # no transition while it stays up


def test_up_goes_down_after_retry_plus_one_failures_with_delay_before_retry() -> None:
    ck = tcp(retry=2, delay_before_retry=1.5, delay_loop=10.0)
    tr = CheckTracker(ck, 0.0, random.Random(0))
    tr.on_result(OK, 1.0)
    assert tr.on_result(REFUSED, 11.0) is None and tr.deadline == 12.5  # retry 1
    assert tr.on_result(REFUSED, 12.5) is None and tr.deadline == 14.0  # retry 2
    t = tr.on_result(REFUSED, 14.0)
    assert t is not None and not t.up and not t.first
    assert t.reason == "refused (after 2 retries)"
    assert tr.deadline == 24.0  # then every delay_loop


def test_retry_zero_goes_down_on_first_failure() -> None:
    tr = CheckTracker(tcp(retry=0), 0.0, random.Random(0))
    tr.on_result(OK, 1.0)
    t = tr.on_result(ProbeResult(False, "timeout after 3000 ms"), 11.0)
    assert t is not None and not t.up and t.reason == "timeout after 3000 ms"


def test_success_between_failures_resets_retry_count() -> None:
    tr = CheckTracker(tcp(retry=1), 0.0, random.Random(0))
    tr.on_result(OK, 1.0)
    for k in range(5):  # fail, succeed on the retry, again and again: never down
        assert tr.on_result(REFUSED, 11.0 + k * 20) is None
        assert tr.on_result(OK, 12.5 + k * 20) is None
    assert tr.up and tr.retry_it == 0


def test_down_is_checked_every_delay_loop_and_one_success_brings_it_back() -> None:
    tr = CheckTracker(tcp(retry=0), 0.0, random.Random(0))
    tr.on_result(REFUSED, 1.0)
    assert not tr.up and tr.deadline == 11.0
    for k in range(3):
        assert tr.on_result(REFUSED, 11.0 + 10 * k) is None  # no retries while down
        assert tr.deadline == 21.0 + 10 * k
    t = tr.on_result(OK, 41.0)
    assert t is not None and t.up and t.reason == "connected"


def test_never_up_server_fails_first_decision_after_retries() -> None:
    tr = CheckTracker(tcp(retry=2), 0.0, random.Random(0))
    assert tr.on_result(REFUSED, 1.0) is None
    assert tr.on_result(REFUSED, 2.5) is None
    t = tr.on_result(REFUSED, 4.0)
    assert t is not None and not t.up and t.first


def test_alpha_starts_down_and_decided() -> None:
    tr = CheckTracker(tcp(alpha=True, retry=3), 0.0, random.Random(0))
    v = tr.verdict()
    assert v is not None and not v.up and "alpha" in v.reason
    assert tr.on_result(REFUSED, 1.0) is None and tr.deadline == 11.0  # no retries while down
    t = tr.on_result(OK, 11.0)
    assert t is not None and t.up and not t.first


def test_rise_needs_n_consecutive_successes_and_a_failure_resets() -> None:
    tr = CheckTracker(tcp(retry=0, rise=3), 0.0, random.Random(0))
    tr.on_result(REFUSED, 1.0)  # down
    assert tr.on_result(OK, 11.0) is None
    assert tr.on_result(OK, 21.0) is None
    assert tr.on_result(REFUSED, 31.0) is None  # resets the count
    assert tr.on_result(OK, 41.0) is None
    assert tr.on_result(OK, 51.0) is None
    assert tr.deadline == 61.0  # rise successes are delay_loop apart
    t = tr.on_result(OK, 61.0)
    assert t is not None and t.up and "3 successes" in t.reason


def test_rise_does_not_delay_the_first_decision_of_a_non_alpha_checker() -> None:
    tr = CheckTracker(tcp(rise=5), 0.0, random.Random(0))
    t = tr.on_result(OK, 1.0)
    assert t is not None and t.up


def test_misc_check_schedules_from_the_script_start() -> None:
    ck = Checker(CheckKind.MISC_CHECK, NOPOS, "192.0.2.1", 80, delay_loop=10.0, warmup=0.0,
                 retry=1, delay_before_retry=2.0, misc_path=Script("/bin/true"))
    tr = CheckTracker(ck, 0.0, random.Random(0))
    tr.on_result(ProbeResult(True, "script exit 0", 4.0, started=1.0), 5.0)
    assert tr.deadline == 11.0  # last_ran + delay_loop, not end + delay_loop
    tr.on_result(ProbeResult(False, "script exit 1", 3.0, started=11.0), 14.0)
    assert tr.deadline == 14.0  # start + delay_before_retry already passed: at once
    tr2 = CheckTracker(tcp(), 0.0, random.Random(0))
    tr2.on_result(ProbeResult(True, "connected", 4.0, started=1.0), 5.0)
    assert tr2.deadline == 15.0  # other checkers: from the end of the attempt


# ------------------------------------------------------------------------- detection bound


@pytest.mark.parametrize("retry,ct,dbr,dl", [(0, 1.0, 1.0, 5.0), (1, 3.0, 1.0, 10.0),
                                             (3, 2.0, 0.5, 6.0), (2, 5.0, 3.0, 60.0)])
def test_worst_case_detection_bound(retry: int, ct: float, dbr: float, dl: float) -> None:
    """Kill the server at every instant of a check cycle; the worst detection equals the bound
    (death right after a successful attempt, every failed attempt timing out)."""
    ck = tcp(retry=retry, connect_timeout=ct, delay_before_retry=dbr, delay_loop=dl)
    bound = detection_bound(ck)
    assert bound == dl + (retry + 1) * ct + retry * dbr
    worst = 0.0
    for k in range(41):
        tr = CheckTracker(ck, 0.0, random.Random(0))
        run = Run(tr)
        run.step(always(OK))  # up at t=1
        death = 1.0 + dl * k / 40  # somewhere in the next cycle
        def is_down(run: Run = run) -> bool:
            return bool(run.transitions) and not run.transitions[-1].up

        def server(t: float, i: int, death: float = death) -> ProbeResult:
            return OK if t < death else ProbeResult(False, "timeout")

        run.until(is_down, server, lambda r: 0.0 if r.ok else ct)
        detected = run.transitions[-1].at - death
        assert 0 < detected <= bound + 1e-9
        worst = max(worst, detected)
    assert worst == pytest.approx(bound)


# ------------------------------------------------------------------------- HTTP multi-URL


def test_http_walks_one_url_per_delay_loop_and_comes_up_after_a_full_pass() -> None:
    tr = CheckTracker(http(3), 0.0, random.Random(0))
    run = Run(tr)
    for _ in range(3):
        run.step(always(ProbeResult(True, "HTTP 200")))
    assert [(s, i) for s, i, _ in run.log] == [(1.0, 0), (7.0, 1), (13.0, 2)]
    assert len(run.transitions) == 1 and run.transitions[0].up
    assert run.transitions[0].at == 13.0 and tr.url_index == 0


def test_http_failure_retries_same_url_then_down_on_it() -> None:
    tr = CheckTracker(http(3, retry=2, delay_before_retry=3.0, delay_loop=6.0), 0.0,
                      random.Random(0))
    run = Run(tr)
    for _ in range(3):
        run.step(always(ProbeResult(True, "HTTP 200")))  # up after the first pass
    bad = ProbeResult(False, "HTTP 503")
    server = lambda t, i: bad if i == 1 else ProbeResult(True, "HTTP 200")  # noqa: E731
    run.step(server)  # url 0 fine
    run.step(server)  # url 1 fails: retry 1
    run.step(server)  # retry 2
    t = run.step(server)  # third consecutive failure of url 1: down
    assert t is not None and not t.up and t.reason == "/u1: HTTP 503 (after 2 retries)"
    starts = [(s, i) for s, i, _ in run.log[3:]]
    assert starts == [(19.0, 0), (25.0, 1), (28.0, 1), (31.0, 1)]
    assert tr.failed_url == 1
    # while down: the failed URL only, every max(delay_before_retry, delay_loop)
    run.step(server)
    assert run.log[-1][:2] == (37.0, 1) and tr.deadline == 43.0


def test_http_recovery_restarts_at_first_url_and_needs_a_clean_pass() -> None:
    tr = CheckTracker(http(3, retry=0, delay_before_retry=2.0, delay_loop=6.0), 0.0,
                      random.Random(0))
    run = Run(tr)
    ok = ProbeResult(True, "HTTP 200")
    for _ in range(3):
        run.step(always(ok))
    run.step(lambda t, i: ProbeResult(False, "HTTP 500"))  # url 0 fails, retry 0: down
    assert not tr.up and tr.failed_url == 0
    broken = {2}
    server = lambda t, i: ProbeResult(False, "HTTP 404") if i in broken else ok  # noqa: E731
    run.step(server)  # failed url 0 answers: walk restarts at url 0
    assert tr.failed_url is None and tr.url_index == 0 and not tr.up
    run.step(server)  # url 0
    run.step(server)  # url 1
    run.step(server)  # url 2 fails during the walk: retried every delay_before_retry
    assert not tr.up and tr.url_index == 2 and tr.deadline - run.log[-1][0] == 2.0
    broken.clear()
    t = run.step(server)
    assert t is not None and t.up


def test_http_first_pass_failure_after_a_success_is_immediate() -> None:
    """keepalived sets retry_it = retry while !has_run: no retries once a URL passed."""
    tr = CheckTracker(http(2, retry=3), 0.0, random.Random(0))
    assert tr.on_result(ProbeResult(True, "HTTP 200"), 1.0) is None
    t = tr.on_result(ProbeResult(False, "HTTP 503"), 7.0)
    assert t is not None and not t.up and t.first


def test_http_fast_recovery_checks_back_to_back() -> None:
    tr = CheckTracker(http(3, fast_recovery=True), 0.0, random.Random(0))
    tr.on_result(ProbeResult(True, "HTTP 200"), 1.0)
    assert tr.deadline == 1.0  # not yet run: no delay between URLs


# ------------------------------------------------------------------------- aggregation

RS = RealServerId("192.0.2.10:80/TCP", "192.0.2.1", 80)


def test_board_alive_only_while_all_checkers_up() -> None:
    a = CheckTracker(tcp(), 0.0, random.Random(0))
    b = CheckTracker(tcp(retry=0, delay_loop=5.0), 0.0, random.Random(0))
    board = HealthBoard()
    board.bind(RS, 1, [a, b])
    assert board.refresh(RS, 0.0) is None  # undecided
    a.on_result(OK, 1.0)
    assert board.refresh(RS, 1.0) is None  # b still undecided
    b.on_result(ProbeResult(False, "HTTP 503"), 1.0)
    h = board.refresh(RS, 1.0)
    assert h is not None and not h.alive and "HTTP 503" in h.reason
    assert h.failed_checkers == (b.checker.label,)
    b.on_result(OK, 6.0)
    h = board.refresh(RS, 6.0)
    assert h is not None and h.alive and h.since == 6.0


def test_board_no_checkers_is_alive_and_dynamic_weights() -> None:
    board = HealthBoard()
    board.bind(RS, 5, [])
    h = board.refresh(RS, 0.0)
    assert h is not None and h.alive and h.dynamic_weight is None
    misc = Checker(CheckKind.MISC_CHECK, NOPOS, "192.0.2.1", 80, misc_dynamic=True,
                   misc_path=Script("/x"))
    filec = Checker(CheckKind.FILE_CHECK, NOPOS, "192.0.2.1", 80, track_file="/f")
    m = CheckTracker(misc, 0.0, random.Random(0))
    f = CheckTracker(filec, 0.0, random.Random(0))
    board.bind(RS, 5, [m, f])
    m.on_result(ProbeResult(True, "script exit 12", weight=10), 1.0)
    f.on_result(ProbeResult(True, "file value 3", weight=3), 1.0)
    h = board.refresh(RS, 1.0)
    # keepalived cur_weights: (misc status-2 - configured) + file offset; effective 5 + 8 = 13
    assert h is not None and h.alive and h.dynamic_weight == 8
    assert {v.dynamic_weight for v in h.verdicts} == {10, 3}
    m.on_result(ProbeResult(True, "script exit 0"), 2.0)  # back to the configured weight
    h = board.refresh(RS, 2.0)
    assert h is not None and h.dynamic_weight == 3
