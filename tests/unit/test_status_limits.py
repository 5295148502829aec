"""The status endpoint's limits (``lvsd.status.limits``), sans-IO, with a scripted clock."""

from __future__ import annotations

import pytest

from lvsd.status.limits import (
    HEALTH,
    OVERFLOW_CLIENT,
    REASONS,
    REQUEST,
    STREAM,
    Limits,
    Phase,
    StatusLimits,
    TokenBuckets,
    connection_cap,
)

pytestmark = pytest.mark.unit


def test_defaults_and_validation() -> None:
    d = StatusLimits()
    assert (d.rate, d.burst, d.max_requests, d.max_streams, d.max_connections) == (
        50.0, 100, 16, 32, 128)
    assert (d.header_timeout, d.idle_timeout, d.request_timeout) == (10.0, 60.0, 30.0)
    for bad in ({"rate": 0}, {"burst": 0}, {"max_requests": 0}, {"max_connections": 0},
                {"header_timeout": 0}, {"idle_timeout": -1}):
        with pytest.raises(ValueError):
            StatusLimits(**bad)  # type: ignore[arg-type]


def test_connection_cap_keeps_most_descriptors() -> None:
    assert connection_cap(128, 1024) == 128
    assert connection_cap(128, 256) == 64
    assert connection_cap(128, 2) == 1
    assert connection_cap(128, None) == 128


def test_token_bucket_burst_then_rate() -> None:
    b = TokenBuckets(rate=2.0, burst=3, max_clients=10)
    assert [b.take("a", 100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert b.take("a", 100.0) == pytest.approx(0.5)  # next token in 1/rate
    assert b.take("b", 100.0) == 0.0  # per client
    assert b.take("a", 100.25) == pytest.approx(0.25)  # half a token came back
    assert b.take("a", 100.5) == 0.0
    assert b.take("a", 100.5) > 0
    assert b.take("a", 200.0) == 0.0  # refilled, never above burst:
    assert [b.take("a", 200.0) for _ in range(3)][-1] > 0


def test_token_table_is_bounded() -> None:
    b = TokenBuckets(rate=1.0, burst=2, max_clients=2)
    assert b.take("a", 0.0) == 0.0 and b.take("b", 0.0) == 0.0
    assert b.take("c", 0.0) == 0.0  # table full: c shares the overflow bucket
    assert b.take("d", 0.0) == 0.0
    assert b.take("e", 0.0) > 0  # the overflow bucket (burst 2) is empty
    assert OVERFLOW_CLIENT in b._b and len(b) == 3
    # once a and b have refilled they carry no information and make room
    assert b.take("f", 10.0) == 0.0
    assert "f" in b._b and "a" not in b._b and "b" not in b._b


def test_admit_rate_then_caps() -> None:
    lim = Limits(StatusLimits(rate=1.0, burst=2, max_requests=1, max_streams=1))
    assert lim.admit("10.0.0.1", REQUEST, 0.0).admitted
    v = lim.admit("10.0.0.2", REQUEST, 0.0)  # own bucket, but the one request slot is taken
    assert (v.status, v.reason, v.retry_after) == (503, "too_many_requests", 1)
    assert lim.admit("10.0.0.2", STREAM, 0.0).admitted  # streams have their own cap
    assert lim.admit("10.0.0.3", STREAM, 0.0).status == 503
    v = lim.admit("10.0.0.1", REQUEST, 0.0)  # second token of .1 goes; still no slot
    assert v.status == 503
    v = lim.admit("10.0.0.1", REQUEST, 0.0)
    assert (v.status, v.reason, v.retry_after) == (429, "rate_limited", 1)
    lim.finished(REQUEST)
    assert lim.admit("10.0.0.1", REQUEST, 1.0).admitted
    # /healthz: never limited, takes no slot
    for _ in range(100):
        assert lim.admit("10.0.0.1", HEALTH, 1.0).admitted
    st = lim.stats()
    assert st.requests_in_flight == 1 and st.streams_open == 1
    assert st.rejected == {**dict.fromkeys(REASONS, 0), "rate_limited": 1,
                           "too_many_requests": 2, "too_many_streams": 1}


def test_retry_after_rounds_up() -> None:
    lim = Limits(StatusLimits(rate=0.25, burst=1))
    assert lim.admit("c", REQUEST, 0.0).admitted
    lim.finished(REQUEST)
    assert lim.admit("c", REQUEST, 1.0).retry_after == 3  # 3 s until the next token


def test_connection_cap() -> None:
    lim = Limits(StatusLimits(max_connections=3))
    assert all(lim.connection_opened(c, 0.0) for c in "abc")
    assert not lim.connection_opened("d", 0.0)
    lim.set_connection_cap(2)
    assert not lim.connection_opened("d", 0.0)
    lim.connection_closed("a")
    lim.connection_closed("b")
    lim.connection_closed("zz")  # unknown (an aborted one): ignored
    assert lim.connection_opened("d", 0.0)
    assert lim.stats().connections_open == 2 and lim.stats().max_connections == 2
    assert lim.rejected["too_many_connections"] == 2


def test_header_deadline_from_connect_and_not_extended_by_dribbling() -> None:
    lim = Limits(StatusLimits(header_timeout=10, idle_timeout=60, request_timeout=30))
    lim.connection_opened("idle", 0.0)
    lim.connection_opened("slow", 1.0)
    for t in range(2, 11):  # a byte a second: no extension
        lim.data_received("slow", float(t))
    assert lim.next_deadline() == 10.0
    assert lim.expired(9.99) == []
    assert lim.expired(10.0) == [("idle", "header_timeout")]
    assert lim.expired(11.0) == [("slow", "header_timeout")]
    assert lim.expired(1000.0) == []  # reported once
    assert lim.phase("idle") is Phase.CLOSING and lim.next_deadline() is None
    assert lim.stats().connections_open == 2  # until the shell reports the close
    lim.connection_closed("idle")
    lim.connection_closed("slow")
    assert lim.stats().connections_open == 0 and lim.rejected["header_timeout"] == 2


def test_request_idle_and_next_head() -> None:
    lim = Limits(StatusLimits(header_timeout=10, idle_timeout=60, request_timeout=30))
    lim.connection_opened("c", 0.0)
    lim.data_received("c", 1.0)
    lim.request_started("c", REQUEST, 2.0)
    assert lim.phase("c") is Phase.REQUEST and lim.next_deadline() == 32.0
    lim.request_ended("c", 3.0)
    assert lim.phase("c") is Phase.IDLE and lim.next_deadline() == 63.0
    lim.data_received("c", 50.0)  # the next request's first byte: header deadline again
    assert lim.phase("c") is Phase.HEAD and lim.next_deadline() == 60.0
    lim.request_started("c", HEALTH, 55.0)  # /healthz moves the phase like any request
    lim.request_ended("c", 55.0)
    assert lim.expired(114.9) == []
    assert lim.expired(115.0) == [("c", "idle_timeout")]


def test_request_deadline_bounds_a_client_that_does_not_read() -> None:
    lim = Limits(StatusLimits(request_timeout=30))
    lim.connection_opened("c", 0.0)
    lim.request_started("c", REQUEST, 1.0)
    assert lim.expired(31.0) == [("c", "request_timeout")]
    lim.request_ended("c", 40.0)  # late end after the expiry: stays closing
    assert lim.phase("c") is Phase.CLOSING and lim.next_deadline() is None


def test_stream_has_no_deadline_until_it_ends() -> None:
    lim = Limits(StatusLimits(idle_timeout=60))
    lim.connection_opened("s", 0.0)
    lim.request_started("s", STREAM, 1.0)
    assert lim.next_deadline() is None and lim.expired(1e9) == []
    lim.request_ended("s", 5000.0)
    assert lim.next_deadline() == 5060.0


def test_deadline_heap_stays_bounded_under_churn() -> None:
    lim = Limits()
    lim.connection_opened("c", 0.0)
    for i in range(10_000):  # keep-alive requests: every one moves the deadline
        lim.request_started("c", REQUEST, float(i))
        lim.request_ended("c", float(i))
    assert len(lim._heap) <= 4 * 1 + 64 + 1
    assert lim.next_deadline() == 9999.0 + 60.0


def test_count() -> None:
    lim = Limits()
    lim.count("request_timeout")
    assert lim.stats().rejected["request_timeout"] == 1
    assert lim.stats().as_dict()["rejected"] == lim.rejected
