# mypy: disable-error-code="comparison-overlap"
"""VRRP machine reload (``VrrpMachine.update`` / ``Reconfigure``) in scripted time.

Dyadic intervals only, so the timer arithmetic is exact (v2, priority 100, advert_int 1:
Master_Down_Interval = 3 + 156/256).
"""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Address
from typing import Any

import pytest

from lvsd.vrrp.codec import Advert
from lvsd.vrrp.machine import (
    Action,
    AddVips,
    AdvertReceived,
    BecomeBackup,
    BecomeMaster,
    InterfaceChanged,
    Reconfigure,
    RemoveVips,
    ScriptResult,
    SendAdvert,
    SendGratuitous,
    State,
    SyncGroup,
    VrrpMachine,
)
from lvsd.vrrp.params import TrackedInterface, TrackedScript, VrrpParams

pytestmark = pytest.mark.unit

ME = IPv4Address("192.0.2.1")
PEER = IPv4Address("192.0.2.2")
VIP = IPv4Address("192.0.2.100")
VIP2 = IPv4Address("192.0.2.101")
VIP3 = IPv4Address("192.0.2.102")
MDI_100 = 3 + 156 / 256


def mk(**kw: Any) -> VrrpMachine:
    base: dict[str, Any] = dict(name="VI_1", vrid=51, addresses=(VIP,), primary_address=ME,
                                garp_master_delay=0.0)
    base.update(kw)
    return VrrpMachine(VrrpParams(**base))


def new(m: VrrpMachine, **kw: Any) -> VrrpParams:
    return dataclasses.replace(m.params, **kw)


def adv(prio: int, aint: float = 1.0, version: int = 2) -> Advert:
    return Advert(version, 51, prio, aint, (VIP,))


def kinds(actions: list[Action]) -> list[str]:
    return [type(a).__name__ for a in actions]


def backup(t: float = 0.0, **kw: Any) -> VrrpMachine:
    m = mk(**kw)
    m.start(t)
    assert m.state == State.BACKUP
    return m


def master(t: float = 0.0, **kw: Any) -> VrrpMachine:
    m = backup(t, **kw)
    d = m.next_deadline
    assert d is not None
    m.tick(d)
    assert m.state == State.MASTER
    return m


def transitions(m: VrrpMachine) -> int:
    return len(m.counters.transitions)


# ------------------------------------------------------------------------------ master


def test_master_lower_priority_stays_master_and_adverts_it_at_once() -> None:
    m = master(priority=200)
    t, before = 10.0, transitions(m)
    acts = m.handle(Reconfigure(new(m, priority=150)), t)
    assert m.state == State.MASTER and transitions(m) == before
    assert kinds(acts) == ["SendAdvert"]
    assert isinstance(acts[0], SendAdvert) and acts[0].priority == 150
    assert m.next_deadline == t + 1.0  # Adver_Timer restarted from the advert just sent
    # a higher-priority backup's advert is then the peers' business: RFC §6.4.3 applies
    acts = m.receive(adv(180), PEER, t + 0.5)
    assert m.state == State.BACKUP and any(isinstance(a, BecomeBackup) for a in acts)


def test_master_unchanged_advert_content_sends_nothing_and_keeps_timer() -> None:
    m = master(priority=200)
    d = m.next_deadline
    acts = m.update(new(m, preempt_delay=2.0), 4.25)
    assert acts == [] and m.next_deadline == d and m.state == State.MASTER


def test_master_advert_int_change_reschedules_adverts() -> None:
    m = master(priority=200)
    acts = m.update(new(m, advert_int=2.0), 5.0)
    assert kinds(acts) == ["SendAdvert"]
    assert isinstance(acts[0], SendAdvert) and acts[0].advert.advert_int == 2.0
    assert m.next_deadline == 7.0 and m.master_adver_int == 2.0
    assert [a.priority for a in m.tick(7.0) if isinstance(a, SendAdvert)] == [200]
    assert m.next_deadline == 9.0


def test_master_vip_diff_adds_removes_and_garps_new_only() -> None:
    m = master(priority=200, addresses=(VIP, VIP2), garp_master_delay=4.0,
               garp_master_repeat=3)
    t, before = 20.0, transitions(m)
    m.tick(t)  # the startup GARP bursts are long done
    acts = m.update(new(m, addresses=(VIP, VIP3)), t)
    assert transitions(m) == before and m.state == State.MASTER
    assert kinds(acts) == ["SendAdvert", "RemoveVips", "AddVips", "SendGratuitous"]
    assert isinstance(acts[0], SendAdvert) and acts[0].advert.addresses == (VIP, VIP3)
    assert acts[1] == RemoveVips((VIP2,))
    assert acts[2] == AddVips((VIP3,))
    assert acts[3] == SendGratuitous((VIP3,), 3, "reload: new addresses")
    # the delayed burst follows garp_master_delay later (for the current addresses)
    acts = m.tick(t + 1.0)
    assert kinds(acts) == ["SendAdvert"]
    later = m.tick(t + 4.0)
    assert SendGratuitous((VIP, VIP3), 3, "delayed") in later


def test_master_only_removed_vip_no_garp() -> None:
    m = master(priority=200, addresses=(VIP, VIP2))
    acts = m.update(new(m, addresses=(VIP,)), 9.0)
    assert kinds(acts) == ["SendAdvert", "RemoveVips"]


def test_master_garp_refresh_rearmed() -> None:
    m = master(priority=200, garp_master_delay=0.0)
    acts = m.update(new(m, garp_master_refresh=8.0, garp_master_refresh_repeat=2), 3.5)
    assert acts == []
    for t in (4.5, 5.5, 6.5, 7.5, 8.5, 9.5, 10.5):
        assert not any(isinstance(a, SendGratuitous) for a in m.tick(t))
    assert SendGratuitous((VIP,), 2, "refresh") in m.tick(11.5)


def test_master_tracking_fault_on_reload_removes_old_and_new_vips() -> None:
    m = master(priority=200, addresses=(VIP, VIP2))
    m.interface("eth1", False, 5.0)  # not tracked yet: ignored
    acts = m.update(new(m, addresses=(VIP,), track_interfaces=(TrackedInterface("eth1"),)), 6.0)
    assert m.state == State.MASTER  # new tracked interfaces start up; the shell feeds states
    acts = m.interface("eth1", False, 6.0)
    assert m.state == State.FAULT
    assert acts[0] == SendAdvert(acts[0].advert) and isinstance(acts[0], SendAdvert)
    assert acts[0].priority == 0 and RemoveVips((VIP,)) in acts


def test_master_weight_change_recomputes_priority() -> None:
    m = master(priority=100, track_interfaces=(TrackedInterface("eth1", -20),))
    m.interface("eth1", False, 5.0)
    assert m.effective_priority == 80
    acts = m.update(new(m, track_interfaces=(TrackedInterface("eth1", -50),)), 6.0)
    assert m.effective_priority == 50 and m.state == State.MASTER
    assert [a.priority for a in acts if isinstance(a, SendAdvert)] == [50]


# ------------------------------------------------------------------------------ backup


def test_backup_priority_change_moves_down_timer_by_skew_change() -> None:
    m = backup(priority=100)
    m.receive(adv(200), PEER, 1.0)
    assert m.next_deadline == 1.0 + MDI_100
    acts = m.update(new(m, priority=150), 2.0)
    assert acts == [] and m.state == State.BACKUP
    assert m.next_deadline == 1.0 + 3 + 106 / 256  # time since the last advert is kept
    assert m.master_priority == 200 and m.master_address == PEER


def test_backup_down_timer_adverts_change() -> None:
    m = backup(priority=100)
    m.receive(adv(200), PEER, 1.0)
    m.update(new(m, down_timer_adverts=5), 2.0)
    assert m.next_deadline == 1.0 + 5 + 156 / 256


def test_backup_priority_zero_skew_moves_by_skew_change() -> None:
    m = backup(priority=100)
    m.receive(adv(0), PEER, 1.0)
    assert m.next_deadline == 1.0 + 156 / 256
    m.update(new(m, priority=200), 1.25)
    assert m.next_deadline == 1.0 + 56 / 256


def test_backup_new_vips_only_remembered() -> None:
    m = backup(priority=100)
    m.receive(adv(200), PEER, 1.0)
    acts = m.update(new(m, addresses=(VIP, VIP2)), 2.0)
    assert acts == [] and m.params.addresses == (VIP, VIP2)
    # when it later takes over it adds all of them
    d = m.next_deadline
    assert d is not None
    acts = m.tick(d)
    assert AddVips((VIP, VIP2)) in acts


def test_backup_raised_above_master_takes_over_by_preemption() -> None:
    m = backup(priority=100)
    m.receive(adv(150), PEER, 1.0)
    m.update(new(m, priority=200), 1.5)
    assert m.state == State.BACKUP  # no jump: the RFC rules decide
    m.receive(adv(150), PEER, 2.0)  # now lower: discarded, the down timer keeps running
    assert m.counters.lower_priority_discarded == 1
    d = m.next_deadline
    assert d == 1.0 + 3 + 56 / 256
    assert any(isinstance(a, BecomeMaster) for a in m.tick(d))


def test_backup_nopreempt_on_reload_accepts_lower() -> None:
    m = backup(priority=200)
    m.update(new(m, preempt=False), 0.5)
    m.receive(adv(100), PEER, 1.0)
    assert m.counters.lower_priority_discarded == 0
    assert m.master_priority == 100


def test_backup_preempt_delay_moved_and_cleared() -> None:
    m = backup(priority=200, preempt_delay=4.0)
    m.receive(adv(100), PEER, 1.0)  # starts the preempt delay: accepted until 5.0
    m.update(new(m, preempt_delay=2.0), 1.5)
    m.receive(adv(100), PEER, 2.5)
    assert m.counters.lower_priority_discarded == 0
    m.receive(adv(100), PEER, 3.5)  # past 1.0 + 2.0
    assert m.counters.lower_priority_discarded == 1
    m2 = backup(priority=200, preempt_delay=4.0)
    m2.receive(adv(100), PEER, 1.0)
    m2.update(new(m2, preempt_delay=0.0), 1.5)
    m2.receive(adv(100), PEER, 2.0)
    assert m2.counters.lower_priority_discarded == 1


def test_v3_backup_keeps_learned_interval_v2_takes_new() -> None:
    m = backup(priority=100, version=3)
    m.receive(adv(200, 0.5, version=3), PEER, 1.0)
    m.update(new(m, advert_int=2.0), 1.25)
    assert m.master_adver_int == 0.5
    m2 = backup(priority=100)
    m2.update(new(m2, advert_int=2.0), 0.5)
    assert m2.master_adver_int == 2.0
    assert m2.next_deadline == 6 + 156 / 256  # the running timer moved with the new MDI


# ------------------------------------------------------------------------------ misc


def test_identity_change_refused() -> None:
    m = master()
    with pytest.raises(ValueError, match="identity changed"):
        m.update(new(m, vrid=52), 1.0)
    with pytest.raises(ValueError, match="identity changed"):
        m.update(new(m, version=3), 1.0)
    assert m.state == State.MASTER and m.params.vrid == 51


def test_script_tracker_keeps_result_and_retunes() -> None:
    ts = TrackedScript("chk", 0, rise=2, fall=2)
    m = mk(track_scripts=(ts,))
    m.start(0.0)
    m.script("chk", True, 0.5)  # init: one result decides
    assert m.state == State.BACKUP
    m.script("chk", False, 1.0)
    m.script("chk", False, 1.5)  # fall 2
    assert m.state == State.FAULT
    before = transitions(m)
    m.update(new(m, track_scripts=(dataclasses.replace(ts, rise=3),)), 2.0)
    assert m.state == State.FAULT and transitions(m) == before
    for t in (3.0, 4.0):
        m.script("chk", True, t)
    assert m.state == State.FAULT  # rise is now 3
    m.script("chk", True, 5.0)
    assert m.state == State.BACKUP


def test_removing_faulty_tracker_leaves_fault() -> None:
    m = backup(track_interfaces=(TrackedInterface("eth1"),))
    m.handle(InterfaceChanged("eth1", False), 1.0)
    assert m.state == State.FAULT
    acts = m.update(new(m, track_interfaces=()), 2.0)
    assert m.state == State.BACKUP and any(isinstance(a, BecomeBackup) for a in acts)


def test_pending_script_in_init_resolved_by_reload() -> None:
    m = mk(track_scripts=(TrackedScript("chk", 0),))
    assert m.start(0.0) == [] and m.state == State.INIT
    m.update(new(m, track_scripts=()), 1.0)
    assert m.state == State.BACKUP
    m2 = mk(track_scripts=(TrackedScript("chk", 0),))
    m2.start(0.0)
    m2.handle(ScriptResult("chk", True), 0.5)
    assert m2.state == State.BACKUP


def test_not_started_and_stopped_take_params_silently() -> None:
    m = mk()
    assert m.update(new(m, priority=150), 0.0) == [] and m.state == State.INIT
    assert m.effective_priority == 150
    m.start(0.0)
    m.shutdown(1.0)
    assert m.update(new(m, priority=120), 2.0) == [] and m.state == State.STOPPED


def master_group() -> tuple[VrrpMachine, VrrpMachine, SyncGroup]:
    """Sync group G of A and B (priority 200), started and run until both are master."""
    a, b = mk(name="A", priority=200), mk(name="B", vrid=52, priority=200)
    g = SyncGroup("G", [a, b])
    g.start(0.0)
    d = g.next_deadline
    assert d is not None
    g.tick(d)
    return a, b, g


def test_sync_group_members_update_without_transition() -> None:
    a, b, g = master_group()
    assert a.state == b.state == State.MASTER
    n = transitions(a) + transitions(b)
    out = g.handle("A", Reconfigure(new(a, priority=150)), 10.0)
    assert [type(x).__name__ for _, x in out] == ["SendAdvert"]
    assert a.state == b.state == State.MASTER and transitions(a) + transitions(b) == n


def test_sync_group_reload_fault_propagates() -> None:
    a, b, g = master_group()
    g.handle("A", Reconfigure(new(a, track_interfaces=(TrackedInterface("eth9"),))), 5.0)
    out = g.handle("A", InterfaceChanged("eth9", False), 5.0)
    assert a.state == b.state == State.FAULT
    assert ("B", RemoveVips((VIP,))) in out


def test_received_advert_after_update_uses_new_params() -> None:
    m = master(priority=200)
    m.update(new(m, priority=100), 5.0)
    acts = m.handle(AdvertReceived(adv(150), PEER), 5.5)
    assert m.state == State.BACKUP and any(isinstance(a, RemoveVips) for a in acts)
