# mypy: disable-error-code="comparison-overlap"
"""VRRP machine: every RFC 5798 §6.4 transition (and keepalived's choices) in scripted time.

(mypy: comparison-overlap is disabled here because it narrows ``m.state`` across calls that
change it.)

Timing is asserted exactly: all the intervals used are dyadic fractions, so float arithmetic
is exact (e.g. v2, priority 100, advert_int 1: Master_Down_Interval = 3 + 156/256 = 3.609375).
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lvsd.vrrp.codec import (
    MCAST_GROUP4,
    Advert,
    AuthType,
    Invalid,
    InvalidReason,
    decode,
    encode,
)
from lvsd.vrrp.machine import (
    Action,
    AddVips,
    AdvertReceived,
    BecomeBackup,
    BecomeFault,
    BecomeMaster,
    InterfaceChanged,
    RemoveVips,
    RunNotify,
    ScriptResult,
    SendAdvert,
    SendGratuitous,
    Shutdown,
    Start,
    State,
    SyncGroup,
    Timer,
    VrrpMachine,
)
from lvsd.vrrp.params import TrackedInterface, TrackedScript, VrrpParams

pytestmark = pytest.mark.unit

ME = IPv4Address("192.0.2.1")
LOWER = IPv4Address("192.0.2.0")
HIGHER = IPv4Address("192.0.2.2")
VIP = IPv4Address("192.0.2.100")
MDI_100 = 3 + 156 / 256  # v2, priority 100, advert_int 1
SKEW_100 = 156 / 256


def mk(**kw: Any) -> VrrpMachine:
    base: dict[str, Any] = dict(name="VI_1", vrid=51, addresses=(VIP,), primary_address=ME)
    base.update(kw)
    return VrrpMachine(VrrpParams(**base))


def adv(prio: int, *, version: int = 2, aint: float = 1.0, vrid: int = 51) -> Advert:
    return Advert(version, vrid, prio, aint, (VIP,))


def kinds(actions: list[Action]) -> list[str]:
    return [type(a).__name__ for a in actions]


def sent(actions: list[Action]) -> list[int]:
    return [a.priority for a in actions if isinstance(a, SendAdvert)]


def fire(m: VrrpMachine) -> list[Action]:
    """Advance to the machine's next deadline."""
    d = m.next_deadline
    assert d is not None
    return m.tick(d)


def backup_at(t: float = 0.0, **kw: Any) -> VrrpMachine:
    m = mk(**kw)
    m.start(t)
    assert m.state == State.BACKUP
    return m


def master_at(t: float = 0.0, **kw: Any) -> VrrpMachine:
    m = backup_at(t, **kw)
    acts = fire(m)
    assert m.state == State.MASTER, acts
    return m


# ----------------------------------------------------------------- §6.4.1 Initialize


def test_startup_address_owner_goes_master_at_once() -> None:
    m = mk(priority=255)
    acts = m.start(0.0)
    assert kinds(acts) == ["SendAdvert", "BecomeMaster", "AddVips", "SendGratuitous",
                           "RunNotify"]
    assert sent(acts) == [255]
    assert acts[3] == SendGratuitous((VIP,), 5, "master")
    assert acts[4] == RunNotify("MASTER", 255)
    assert m.state == State.MASTER
    assert m.next_deadline == 1.0  # Adver_Timer = Advertisement_Interval


def test_startup_backup_waits_master_down_interval() -> None:
    m = mk(priority=100)
    acts = m.start(10.0)
    # keepalived force-removes stale VIPs at startup, then enters BACKUP
    assert kinds(acts) == ["RemoveVips", "BecomeBackup", "RunNotify"]
    assert acts[2] == RunNotify("BACKUP", 100)
    assert m.next_deadline == 10.0 + MDI_100


def test_startup_state_master_below_255_still_starts_as_backup() -> None:
    # keepalived vrrp_init_state: only an address owner skips the wait.
    m = mk(priority=150, initial_state="MASTER")
    m.start(0.0)
    assert m.state == State.BACKUP
    assert m.next_deadline == 3 + 106 / 256


def test_startup_owner_with_state_backup_waits() -> None:
    m = mk(priority=255, initial_state="BACKUP")
    m.start(0.0)
    assert m.state == State.BACKUP and m.next_deadline == 3 + 1 / 256


def test_startup_v3_skew_scales_with_interval() -> None:
    m = mk(version=3, advert_int=0.5)
    m.start(0.0)
    assert m.next_deadline == 1.5 + 156 * 0.5 / 256


def test_startup_down_timer_adverts() -> None:
    m = mk(down_timer_adverts=5)
    m.start(0.0)
    assert m.next_deadline == 5 + SKEW_100


# ----------------------------------------------------------------- §6.4.2 Backup


def test_backup_takes_over_exactly_at_master_down_interval_after_last_advert() -> None:
    m = backup_at(0.0)
    m.receive(adv(200), HIGHER, 10.0)
    assert m.next_deadline == 10.0 + MDI_100
    assert m.tick(10.0 + MDI_100 - 1e-9) == []
    assert m.state == State.BACKUP
    acts = m.tick(10.0 + MDI_100)
    assert kinds(acts) == ["SendAdvert", "BecomeMaster", "AddVips", "SendGratuitous",
                           "RunNotify"]
    assert m.state == State.MASTER
    assert m.next_deadline == 10.0 + MDI_100 + 1.0


def test_backup_priority_zero_sets_timer_to_skew_time() -> None:
    m = backup_at(0.0)
    m.receive(adv(200), HIGHER, 1.0)
    assert m.receive(adv(0), HIGHER, 2.0) == []
    assert m.next_deadline == 2.0 + SKEW_100
    acts = m.tick(2.0 + SKEW_100)
    assert m.state == State.MASTER
    assert acts[1] == BecomeMaster(
        "priority 0 advert from 192.0.2.2: took over after Skew_Time", State.BACKUP)
    assert m.counters.priority_zero_received == 1


@pytest.mark.parametrize("prio", [100, 101, 254, 255])
def test_backup_accepts_higher_or_equal_priority(prio: int) -> None:
    m = backup_at(0.0)
    m.receive(adv(prio), HIGHER, 2.5)
    assert m.next_deadline == 2.5 + MDI_100
    assert m.master_address == HIGHER and m.master_priority == prio


def test_backup_preempt_discards_lower_priority_timer_keeps_running() -> None:
    m = backup_at(0.0)
    m.receive(adv(200), HIGHER, 1.0)
    m.receive(adv(50), LOWER, 2.0)  # a lower-priority master: not accepted
    assert m.next_deadline == 1.0 + MDI_100
    assert m.counters.lower_priority_discarded == 1
    m.tick(1.0 + MDI_100)
    assert m.state == State.MASTER


def test_backup_nopreempt_accepts_lower_priority() -> None:
    m = backup_at(0.0, preempt=False)
    m.receive(adv(50), LOWER, 2.0)
    assert m.next_deadline == 2.0 + MDI_100
    assert m.counters.lower_priority_discarded == 0


def test_backup_v3_adopts_master_advert_interval() -> None:
    m = backup_at(0.0, version=3, advert_int=1.0)
    m.receive(adv(200, version=3, aint=2.0), HIGHER, 0.5)
    assert m.master_adver_int == 2.0
    assert m.next_deadline == 0.5 + 3 * 2.0 + 156 * 2.0 / 256
    # becoming master returns to our own interval
    fire(m)
    assert m.state == State.MASTER and m.master_adver_int == 1.0
    start = 0.5 + 6 + 156 * 2 / 256
    assert m.next_deadline == start + 1.0


def test_backup_preempt_delay() -> None:
    m = backup_at(0.0, priority=200, preempt_delay=10.0)
    mdi = 3 + 56 / 256
    for t in range(10):  # lower-priority master advertising every second from t=0
        m.receive(adv(100), LOWER, float(t))
        assert m.next_deadline == t + mdi, t  # still accepted during the delay
    m.receive(adv(100), LOWER, 10.0)  # delay over: discarded
    assert m.next_deadline == 9 + mdi
    assert m.tick(9 + mdi)[1] == BecomeMaster(
        "no advert received within master down interval", State.BACKUP)


def test_backup_preempt_delay_reset_by_higher_priority() -> None:
    m = backup_at(0.0, priority=200, preempt_delay=10.0)
    m.receive(adv(100), LOWER, 0.0)
    m.receive(adv(250), HIGHER, 5.0)  # a better master appears: the delay is forgotten
    m.receive(adv(100), LOWER, 20.0)  # new lower master: the delay starts again
    m.receive(adv(100), LOWER, 29.0)
    assert m.next_deadline == 29.0 + 3 + 56 / 256


def test_backup_shutdown_sends_nothing() -> None:
    m = backup_at(0.0)
    acts = m.shutdown(1.0)
    assert acts == [RunNotify("STOP", 100)]
    assert m.state == State.STOPPED and m.next_deadline is None
    assert m.tick(100.0) == [] and m.receive(adv(1), LOWER, 100.0) == []


# ----------------------------------------------------------------- §6.4.3 Master


def test_master_sends_adverts_every_interval() -> None:
    m = master_at(0.0, garp_master_delay=0)
    t0 = MDI_100
    for k in range(1, 6):
        assert m.next_deadline == t0 + k
        assert sent(m.tick(t0 + k)) == [100]
    assert m.counters.adverts_sent == 6


def test_master_hearing_priority_zero_sends_advert_at_once() -> None:
    m = master_at(0.0)
    acts = m.receive(adv(0), HIGHER, 4.0)
    assert sent(acts) == [100]
    assert m.state == State.MASTER
    assert m._adver_at == 5.0  # Adver_Timer reset to Advertisement_Interval


def test_master_steps_down_on_higher_priority() -> None:
    m = master_at(0.0)
    acts = m.receive(adv(150), HIGHER, 4.0)
    assert kinds(acts) == ["BecomeBackup", "RemoveVips", "RunNotify"]
    assert acts[0] == BecomeBackup("higher priority 150 advert from 192.0.2.2", State.MASTER)
    assert m.state == State.BACKUP
    assert m.next_deadline == 4.0 + MDI_100
    assert m.counters.released_master == 1


def test_master_steps_down_on_equal_priority_from_higher_address() -> None:
    m = master_at(0.0)
    acts = m.receive(adv(100), HIGHER, 4.0)
    assert isinstance(acts[0], BecomeBackup) and "higher address" in acts[0].reason
    assert m.state == State.BACKUP


def test_master_equal_priority_lower_address_forces_election() -> None:
    m = master_at(0.0)
    acts = m.receive(adv(100), LOWER, 4.0)
    assert m.state == State.MASTER
    assert kinds(acts) == ["SendAdvert", "SendGratuitous", "RunNotify"]
    assert acts[2] == RunNotify("MASTER_RX_LOWER_PRI", 100)


def test_master_lower_priority_keepalived_sends_advert_and_garps() -> None:
    m = master_at(0.0, garp_lower_prio_repeat=2, garp_lower_prio_delay=3.0,
                  garp_master_delay=0)
    acts = m.receive(adv(50), LOWER, 4.0)
    assert sent(acts) == [100]
    assert SendGratuitous((VIP,), 2, "lower priority advert") in acts
    assert m._adver_at == 5.0
    # the delayed lower-priority burst
    acts = m.tick(7.0)
    assert SendGratuitous((VIP,), 2, "lower priority delayed") in acts


def test_master_lower_prio_no_advert() -> None:
    m = master_at(0.0, lower_prio_no_advert=True, garp_lower_prio_repeat=0)
    acts = m.receive(adv(50), LOWER, 4.0)
    assert acts == [RunNotify("MASTER_RX_LOWER_PRI", 100)]


def test_master_higher_prio_send_advert() -> None:
    m = master_at(0.0, higher_prio_send_advert=True)
    acts = m.receive(adv(150), HIGHER, 4.0)
    assert kinds(acts)[:2] == ["SendAdvert", "BecomeBackup"]


def test_master_ignores_its_own_looped_advert() -> None:
    m = master_at(0.0)
    assert m.receive(adv(100), ME, 4.0) == []
    assert m.state == State.MASTER


def test_master_v3_step_down_adopts_interval() -> None:
    m = master_at(0.0, version=3, advert_int=1.0)
    m.receive(adv(200, version=3, aint=0.5), HIGHER, 10.0)
    assert m.state == State.BACKUP
    assert m.next_deadline == 10.0 + 1.5 + 156 * 0.5 / 256


def test_master_shutdown_sends_priority_zero_and_removes_vips() -> None:
    m = master_at(0.0)
    acts = m.shutdown(5.0)
    assert kinds(acts) == ["SendAdvert", "RemoveVips", "RunNotify"]
    assert sent(acts) == [0] and acts[2] == RunNotify("STOP", 100)
    assert m.counters.priority_zero_sent == 1
    assert m.state == State.STOPPED and m.next_deadline is None


def test_garp_schedule_delay_and_refresh() -> None:
    m = mk(priority=255, garp_master_delay=5.0, garp_master_repeat=3,
           garp_master_refresh=60.0, garp_master_refresh_repeat=2)
    acts = m.start(0.0)
    assert SendGratuitous((VIP,), 3, "master") in acts
    garps: list[tuple[float, SendGratuitous]] = []
    t = 0.0
    while t < 200:
        t = m.next_deadline  # type: ignore[assignment]
        garps += [(t, a) for a in m.tick(t) if isinstance(a, SendGratuitous)]
    assert [(when, a.count, a.reason) for when, a in garps] == [
        (5.0, 3, "delayed"), (65.0, 2, "refresh"), (125.0, 2, "refresh"), (185.0, 2, "refresh")]
    # leaving master cancels them all
    m.receive(adv(255), HIGHER, 250.0)
    assert m.state == State.BACKUP and m.next_deadline == 250.0 + 3 + 1 / 256


# ----------------------------------------------------------------- tracking and FAULT


def test_interface_down_weight_zero_master_goes_fault_with_priority_zero() -> None:
    m = master_at(0.0, track_interfaces=(TrackedInterface("eth0"),))
    acts = m.interface("eth0", False, 5.0)
    assert kinds(acts) == ["SendAdvert", "BecomeFault", "RemoveVips", "RunNotify"]
    assert sent(acts) == [0]
    assert acts[1] == BecomeFault("interface eth0 down", State.MASTER)
    assert m.state == State.FAULT and m.next_deadline is None
    # adverts are ignored in FAULT
    assert m.receive(adv(50), LOWER, 6.0) == []
    assert m.counters.adverts_ignored == 1
    acts = m.interface("eth0", True, 7.0)
    assert kinds(acts) == ["BecomeBackup", "RunNotify"]
    assert m.state == State.BACKUP and m.next_deadline == 7.0 + MDI_100


def test_backup_fault_and_recovery() -> None:
    m = backup_at(0.0, track_interfaces=(TrackedInterface("eth0"),))
    acts = m.interface("eth0", False, 1.0)
    assert kinds(acts) == ["BecomeFault", "RunNotify"]
    assert acts[1] == RunNotify("FAULT", 100)


def test_interface_down_before_start_starts_in_fault() -> None:
    m = mk(track_interfaces=(TrackedInterface("eth0"),))
    assert m.interface("eth0", False, 0.0) == []
    acts = m.start(0.0)
    assert kinds(acts) == ["RemoveVips", "BecomeFault", "RunNotify"]
    assert m.state == State.FAULT


def test_owner_leaving_fault_goes_master_at_once() -> None:
    m = mk(priority=255, track_interfaces=(TrackedInterface("eth0"),))
    m.interface("eth0", False, 0.0)
    m.start(0.0)
    acts = m.interface("eth0", True, 1.0)
    assert m.state == State.MASTER and sent(acts) == [255]


def test_weights_adjust_priority_and_shift_down_timer() -> None:
    m = backup_at(0.0, priority=100, track_interfaces=(
        TrackedInterface("up_plus", 20), TrackedInterface("down_minus", -30)))
    assert m.effective_priority == 120  # +20 while up, -30 only while down
    m.receive(adv(200), HIGHER, 1.0)
    assert m.next_deadline == 1.0 + 3 + 136 / 256
    m.interface("down_minus", False, 2.0)
    assert m.effective_priority == 90
    # keepalived moves the running down timer by the change in Skew_Time
    assert m.next_deadline == 1.0 + 3 + 166 / 256
    m.interface("up_plus", False, 2.5)
    assert m.effective_priority == 70
    # adverts now carry it
    fire(m)
    assert m.state == State.MASTER
    assert sent(fire(m)) == [70]


def test_weights_clip_to_1_and_254_and_reverse() -> None:
    m = mk(priority=250, track_interfaces=(TrackedInterface("a", 50),))
    assert m.effective_priority == 254
    m = mk(priority=10, track_interfaces=(TrackedInterface("a", -50),))
    m.interface("a", False, 0.0)
    assert m.effective_priority == 1
    m = mk(priority=100, track_interfaces=(TrackedInterface("a", 10, reverse=True),))
    assert m.effective_priority == 90  # reverse: +10 while up becomes -10
    m.interface("a", False, 0.0)
    assert m.effective_priority == 100


def test_weight_zero_reverse_faults_while_up() -> None:
    m = mk(track_interfaces=(TrackedInterface("a", 0, reverse=True),))
    m.start(0.0)
    assert m.state == State.FAULT
    m.interface("a", False, 1.0)
    assert m.state == State.BACKUP


def test_owner_priority_never_changes() -> None:
    m = mk(priority=255, track_interfaces=(TrackedInterface("a", -50),))
    m.interface("a", False, 0.0)
    assert m.effective_priority == 255


def test_script_rise_fall_like_keepalived() -> None:
    m = mk(track_scripts=(TrackedScript("chk", weight=-20, rise=2, fall=3),))
    m.start(0.0)
    assert m.effective_priority == 100  # init: unknown, no contribution
    m.script("chk", False, 1.0)  # in init, one result decides
    assert m.effective_priority == 80
    m.script("chk", True, 2.0)
    assert m.effective_priority == 80  # 1 of rise=2
    m.script("chk", True, 3.0)
    assert m.effective_priority == 100  # OK
    m.script("chk", False, 4.0)
    m.script("chk", False, 5.0)
    assert m.effective_priority == 100  # 2 of fall=3
    m.script("chk", True, 6.0)  # a success resets the fall count
    m.script("chk", False, 7.0)
    m.script("chk", False, 8.0)
    assert m.effective_priority == 100
    m.script("chk", False, 9.0)
    assert m.effective_priority == 80


def test_weight_zero_script_holds_init_until_first_result() -> None:
    m = mk(track_scripts=(TrackedScript("chk"),))
    assert m.start(0.0) == []
    assert m.state == State.INIT and m.next_deadline is None
    acts = m.script("chk", True, 2.0)
    assert kinds(acts) == ["RemoveVips", "BecomeBackup", "RunNotify"]
    assert m.next_deadline == 2.0 + MDI_100
    acts = m.script("chk", False, 3.0)
    assert m.state == State.FAULT


def test_init_fail_script_starts_faulty_until_rise_successes() -> None:
    m = mk(track_scripts=(TrackedScript("chk", rise=2, init_fail=True),))
    m.start(0.0)
    assert m.state == State.FAULT
    m.script("chk", True, 1.0)
    assert m.state == State.FAULT
    m.script("chk", True, 2.0)
    assert m.state == State.BACKUP


def test_unknown_tracker_names_are_ignored() -> None:
    m = backup_at(0.0)
    assert m.interface("nope", False, 1.0) == [] and m.script("nope", False, 1.0) == []


# ----------------------------------------------------------------- invalid input & counters


def snapshot(m: VrrpMachine) -> tuple[object, ...]:
    return (m.state, m.wantstate, m.effective_priority, m.next_deadline, m._down_at,
            m._adver_at, tuple(m._garp), m.master_adver_int, m.master_address,
            m.master_priority, m._preempt_at)


@pytest.mark.parametrize("state", ["backup", "master", "fault", "init"])
@pytest.mark.parametrize("reason", list(InvalidReason))
def test_invalid_never_changes_state(state: str, reason: InvalidReason) -> None:
    m = mk(track_interfaces=(TrackedInterface("eth0"),))
    if state != "init":
        m.start(0.0)
    if state == "master":
        fire(m)
    if state == "fault":
        m.interface("eth0", False, 0.5)
    before = snapshot(m)
    assert m.receive(Invalid(reason, "x"), HIGHER, 4.0) == []
    assert snapshot(m) == before
    assert m.counters.invalid[reason] == 1


def test_wrong_vrid_or_version_advert_counted_not_processed() -> None:
    m = backup_at(0.0)
    before = snapshot(m)
    m.receive(adv(200, vrid=52), HIGHER, 1.0)
    m.receive(adv(200, version=3), HIGHER, 1.0)
    m.receive(adv(200, aint=2.0), HIGHER, 1.0)  # v2: another interval is dropped
    assert snapshot(m) == before
    assert m.counters.invalid[InvalidReason.ADVERT_INT] == 1
    assert m.counters.invalid[InvalidReason.VRID] == 1
    assert m.counters.invalid[InvalidReason.VERSION] == 1


def test_counters_and_transition_log() -> None:
    m = mk(transitions_kept=3)
    m.start(0.0)
    m.tick(MDI_100)
    m.receive(Advert(2, 51, 200, 1.0, ()), HIGHER, 5.0)  # empty VIP list: warning only
    fire(m)
    m.shutdown(20.0)
    c = m.counters
    assert c.adverts_received == 1 and c.addr_list_mismatch == 1
    assert c.became_master == 2 and c.released_master == 1
    assert [(t.old, t.new) for t in c.transitions] == [
        (State.MASTER, State.BACKUP), (State.BACKUP, State.MASTER), (State.MASTER, State.STOPPED)]
    assert len(c.transitions) == 3
    st_ = m.status()
    assert st_.state == State.STOPPED and st_.counters.became_master == 2
    assert st_.counters.transitions[-1].reason == "shutdown"
    c.became_master += 1  # the report is a copy: the live counters move on without it
    assert st_.counters.became_master == 2 and m.status().counters.became_master == 3


def test_handle_dispatches_events() -> None:
    m = mk(track_interfaces=(TrackedInterface("eth0"),),
           track_scripts=(TrackedScript("s", weight=5),))
    assert kinds(m.handle(Start(), 0.0))[-1] == "RunNotify"
    m.handle(ScriptResult("s", True), 0.1)
    assert m.effective_priority == 105
    m.handle(AdvertReceived(adv(200), HIGHER), 1.0)
    assert m.master_priority == 200
    assert m.handle(Timer(), 1.0) == []
    m.handle(InterfaceChanged("eth0", False), 2.0)
    assert m.state == State.FAULT
    assert kinds(m.handle(Shutdown(), 3.0)) == ["RunNotify"]


def test_ipv6_v3_machine_ties_break_on_address() -> None:
    me, higher = IPv6Address("fe80::1"), IPv6Address("fe80::2")
    vip6 = IPv6Address("fd00::100")
    m = VrrpMachine(VrrpParams(name="V6", vrid=5, version=3, addresses=(vip6,),
                               primary_address=me, priority=255))
    m.start(0.0)
    acts = m.receive(Advert(3, 5, 255, 1.0, (vip6,)), higher, 1.0)
    assert m.state == State.BACKUP and isinstance(acts[0], BecomeBackup)


def test_primary_address_learned_later() -> None:
    m = mk(primary_address=None)
    m.start(0.0)
    m.tick(MDI_100)
    # unknown own address: an equal-priority advert cannot be ordered -> ignored (keepalived)
    assert m.receive(adv(100), HIGHER, 4.0) == [] and m.state == State.MASTER
    m.set_primary_address("192.0.2.1")
    m.receive(adv(100), HIGHER, 5.0)
    assert m.state == State.BACKUP


def test_sent_advert_carries_v2_auth() -> None:
    m = mk(priority=255, auth_type=AuthType.PASS, auth_pass=b"secret")
    a = m.start(0.0)[0]
    assert isinstance(a, SendAdvert)
    assert a.advert.auth_type == AuthType.PASS and a.advert.auth_data == b"secret"
    assert a.advert.addresses == (VIP,) and a.advert.advert_int == 1.0


events = st.one_of(
    st.builds(lambda p, s: ("adv", p, s), st.integers(0, 255),
              st.sampled_from([LOWER, ME, HIGHER])),
    st.builds(lambda r: ("inv", r), st.sampled_from(list(InvalidReason))),
    st.builds(lambda u: ("if", u), st.booleans()),
    st.builds(lambda ok: ("sc", ok), st.booleans()),
    st.just(("tick",)),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 5), events), max_size=40),
       st.sampled_from([2, 3]), st.booleans())
def test_random_event_sequences_keep_invariants(
    steps: list[tuple[float, tuple[Any, ...]]], version: int, preempt: bool
) -> None:
    m = mk(version=version, preempt=preempt,
           track_interfaces=(TrackedInterface("eth0"),),
           track_scripts=(TrackedScript("s", weight=-30, rise=2, fall=2),))
    now = 0.0
    m.start(now)
    vips = False
    for dt, ev in steps:
        now += dt
        before = snapshot(m)
        if ev[0] == "adv":
            acts = m.receive(adv(ev[1], version=version), ev[2], now)
        elif ev[0] == "inv":
            acts = m.receive(Invalid(ev[1]), HIGHER, now)
            assert acts == [] and snapshot(m) == before
        elif ev[0] == "if":
            acts = m.interface("eth0", ev[1], now)
        elif ev[0] == "sc":
            acts = m.script("s", ev[1], now)
        else:
            acts = m.tick(now)
        for a in acts:
            if isinstance(a, AddVips):
                vips = True
            if isinstance(a, RemoveVips):
                vips = False
        # VIPs are held exactly while master
        assert vips == (m.state == State.MASTER)
        if ev[0] == "tick":
            d = m.next_deadline
            assert d is None or d > now
        if m.state == State.MASTER:
            assert m._adver_at is not None and m._down_at is None
        if m.state == State.BACKUP:
            assert m._down_at is not None and m._adver_at is None
        if m.state == State.FAULT:
            assert m.next_deadline is None
        assert 1 <= m.effective_priority <= 254


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["backup", "master", "fault"]),
       st.one_of(
           st.binary(max_size=80).map(lambda b: ("raw", b, 0, 0)),
           st.tuples(st.just("mut"), st.integers(0, 255), st.integers(0, 19),
                     st.integers(0, 255)),
       ))
def test_wire_garbage_through_decode_and_machine(state: str, case: tuple[Any, ...]) -> None:
    """Random bytes and mutated valid packets, decoded with the instance's own expectations
    and fed to the machine: nothing raises, and whatever is Invalid changes nothing."""
    m = mk(track_interfaces=(TrackedInterface("eth0"),))
    m.start(0.0)
    if state == "master":
        fire(m)
    elif state == "fault":
        m.interface("eth0", False, 0.1)
    if case[0] == "raw":
        payload = case[1]
    else:
        _, prio, pos, val = case
        payload = bytearray(encode(adv(prio), HIGHER, MCAST_GROUP4))
        payload[pos % len(payload)] = val
        payload = bytes(payload)
    res = decode(payload, src=HIGHER, dst=MCAST_GROUP4, ttl=255, expect=m.params.expect())
    before = snapshot(m)
    acts = m.receive(res, HIGHER, 4.0)
    if isinstance(res, Invalid):
        assert acts == [] and snapshot(m) == before
        assert sum(m.counters.invalid.values()) == 1


# ----------------------------------------------------------------- sync group


def group(n: int = 2, **kw: Any) -> tuple[SyncGroup, list[VrrpMachine]]:
    ms = [mk(name=f"VI_{i}", vrid=50 + i, track_interfaces=(TrackedInterface(f"eth{i}"),),
             **kw) for i in range(n)]
    return SyncGroup("G", ms), ms


def test_sync_group_fault_takes_all_down_and_recovers_together() -> None:
    g, (a, b) = group()
    g.start(0.0)
    out = g.handle("VI_0", InterfaceChanged("eth0", False), 1.0)
    assert a.state == b.state == State.FAULT
    assert ("VI_1", BecomeFault("sync group G: VI_0 FAULT", State.BACKUP)) in out
    # a second member faulty too: the first recovering does not bring the group up
    g.handle("VI_1", InterfaceChanged("eth1", False), 2.0)
    g.handle("VI_0", InterfaceChanged("eth0", True), 3.0)
    assert a.state == b.state == State.FAULT
    g.handle("VI_1", InterfaceChanged("eth1", True), 4.0)
    assert a.state == b.state == State.BACKUP


def test_sync_group_goes_master_only_when_all_want_master() -> None:
    g, (a, b) = group()
    g.start(0.0)
    g.handle("VI_1", AdvertReceived(adv(200, vrid=51), HIGHER), 1.0)  # b still hears a master
    out = g.tick(MDI_100)  # a's timer fires, b does not want master: a waits
    assert out == [] and a.state == State.BACKUP and a.wantstate == State.MASTER
    out = g.tick(1.0 + MDI_100)  # b's timer fires: everyone wants master
    assert a.state == b.state == State.MASTER
    names = [n for n, act in out if isinstance(act, BecomeMaster)]
    assert sorted(names) == ["VI_0", "VI_1"]
    # one member hearing a better master takes the group to backup
    out = g.handle("VI_0", AdvertReceived(adv(250, vrid=50), HIGHER), 5.0)
    assert a.state == b.state == State.BACKUP
    assert ("VI_1", RemoveVips((VIP,))) in out


def test_sync_group_start_with_a_faulty_member() -> None:
    g, (a, b) = group()
    a.interface("eth0", False, 0.0)
    g.start(0.0)
    assert a.state == b.state == State.FAULT
    assert g.state == State.FAULT and g.next_deadline is None
    assert b.status().sync_group == "G" and b.status().vips_held is False


def test_sync_group_rejects_duplicate_names() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        SyncGroup("G", [mk(), mk()])


def test_sync_group_member_leaving_init_while_group_faulty_enters_fault() -> None:
    a = mk(name="A", vrid=50, track_interfaces=(TrackedInterface("eth0"),))
    b = mk(name="B", vrid=51, track_scripts=(TrackedScript("chk"),))  # waits for its script
    g = SyncGroup("G", [a, b])
    a.interface("eth0", False, 0.0)
    g.start(0.0)
    assert a.state == State.FAULT and b.state == State.INIT
    g.handle("B", ScriptResult("chk", True), 1.0)
    assert b.state == State.FAULT  # held down with the group, not BACKUP on its own
    g.handle("A", InterfaceChanged("eth0", True), 2.0)
    assert a.state == b.state == State.BACKUP
