"""VRRP machine: a MASTER whose VIPs cannot be added, and a shutdown before start (issue 16).

Scripted clock; intervals are dyadic so float arithmetic is exact (v2, priority 100,
advert_int 1: Master_Down_Interval = 3 + 156/256 = 3.609375).
"""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from lvsd.vrrp.machine import (
    VIP_RETRY_FIRST,
    VIP_RETRY_MAX,
    AddVips,
    BecomeFault,
    RemoveVips,
    RunNotify,
    SendAdvert,
    State,
    VipsAdded,
    VrrpMachine,
)
from lvsd.vrrp.params import VrrpParams

pytestmark = pytest.mark.unit

ME = IPv4Address("192.0.2.1")
VIP = IPv4Address("192.0.2.100")
MDI = 3.609375
ERR = "add 192.0.2.100/24 dev eth0: No buffer space available (ENOBUFS)"


def master(now: float = 0.0) -> VrrpMachine:
    m = VrrpMachine(VrrpParams("VI_1", 51, addresses=(VIP,), primary_address=ME))
    m.start(now)
    acts = m.tick(now + MDI)
    assert m.state is State.MASTER and any(isinstance(a, AddVips) for a in acts)
    return m


def test_failed_add_is_a_fault_with_the_real_reason_and_a_bounded_backoff() -> None:
    m = master()
    t = MDI
    acts = m.handle(VipsAdded(ERR), t)
    # leaves MASTER as a fault does: priority 0 first (a peer takes over at Skew_Time), the
    # partial VIPs removed, notify FAULT
    assert m.state is State.FAULT
    assert isinstance(acts[0], SendAdvert) and acts[0].priority == 0
    assert any(isinstance(a, BecomeFault) and ERR in a.reason for a in acts)
    assert any(isinstance(a, RemoveVips) for a in acts)
    assert any(isinstance(a, RunNotify) and a.state == "FAULT" for a in acts)
    st = m.status()
    assert st.fault_reasons == (f"VIPs not held: {ERR}",)
    assert st.vip_retry_at == t + VIP_RETRY_FIRST and st.counters.vip_add_failed == 1
    assert m.next_deadline == t + VIP_RETRY_FIRST
    # each consecutive failure doubles the wait, up to the bound
    waits = []
    for _ in range(8):
        due = m.next_deadline
        assert due is not None
        waits.append(due - t)
        m.tick(due)  # the fault ends: BACKUP, then master after Master_Down_Interval
        assert m.state is State.BACKUP and m.status().fault_reasons == ()
        t = due + MDI
        m.tick(t)
        assert m.state is State.MASTER
        m.handle(VipsAdded(ERR), t)
        assert m.state is State.FAULT
    assert waits == [min(VIP_RETRY_MAX, VIP_RETRY_FIRST * 2 ** i) for i in range(8)]
    assert waits[-1] == VIP_RETRY_MAX
    # an add that works resets the back-off
    due = m.next_deadline
    assert due is not None
    m.tick(due)
    m.tick(due + MDI)
    m.handle(VipsAdded(None), due + MDI)
    assert m.state is State.MASTER and m.status().vip_retry_at is None
    m.handle(VipsAdded(ERR), due + MDI + 1)
    assert m.status().vip_retry_at == due + MDI + 1 + VIP_RETRY_FIRST


def test_late_failure_after_leaving_master_changes_nothing() -> None:
    m = master()
    m.shutdown(10.0)
    assert m.handle(VipsAdded(ERR), 10.5) == [] and m.state is State.STOPPED
    assert m.next_deadline is None


def test_shutdown_before_start_runs_no_notify_stop() -> None:
    m = VrrpMachine(VrrpParams("VI_1", 51, addresses=(VIP,), primary_address=ME))
    acts = m.shutdown(0.0)
    assert not any(isinstance(a, RunNotify) for a in acts)
    assert m.state is State.STOPPED
    started = VrrpMachine(VrrpParams("VI_1", 51, addresses=(VIP,), primary_address=ME))
    started.start(0.0)
    assert RunNotify("STOP", 100) in started.shutdown(1.0)
