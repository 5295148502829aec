# mypy: disable-error-code="comparison-overlap"
"""The pure side of a VRRP reload and of a sync group's notify: ``reload_plan`` (identity
matching, transport diff, what to stop and start, the VIP-entry diff) and ``SyncGroup``'s
``NotifyGroup`` decisions, on a scripted clock.

(mypy: comparison-overlap is disabled here because it narrows ``m.state`` across calls that
change it.)
"""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address
from typing import Any

import pytest

from lvsd.vrrp.codec import Advert
from lvsd.vrrp.machine import (
    Action,
    AddVips,
    AdvertReceived,
    InterfaceChanged,
    NotifyGroup,
    Reconfigure,
    RemoveVips,
    RunNotify,
    SendAdvert,
    SendGratuitous,
    Shutdown,
    State,
    SyncGroup,
    VrrpMachine,
)
from lvsd.vrrp.params import TrackedInterface, VrrpParams
from lvsd.vrrp.reload_plan import (
    ChangeVips,
    Running,
    Slot,
    plan_reload,
    reconfigure_actions,
    vip_diff,
)
from lvsd.vrrp.spec import InstanceSpec
from lvsd.vrrp.vips import Vip
from lvsd.vrrp.vmac import VmacPlan

pytestmark = pytest.mark.unit

ME = IPv4Address("192.0.2.1")
HIGHER = IPv4Address("192.0.2.2")
VIP = IPv4Address("192.0.2.100")
VIP2 = IPv4Address("192.0.2.101")
MDI_100 = 3 + 156 / 256  # v2, priority 100, advert_int 1


def spec(name: str = "VI_1", vrid: int = 51, *, interface: str = "eth0", version: int = 2,
         **kw: Any) -> InstanceSpec:
    pkw = {k: kw.pop(k) for k in list(kw) if k in ("priority", "addresses", "advert_int")}
    params = VrrpParams(name=name, vrid=vrid, version=version, **pkw)
    return InstanceSpec(params=params, interface=interface, **kw)


def run(*specs: InstanceSpec, pending: tuple[str, ...] = ()) -> list[Running]:
    return [Running(s.params.name, s, s.params.name in pending) for s in specs]


# ------------------------------------------------------------------ identity matching


def test_unchanged_specs_are_all_kept_in_file_order() -> None:
    a, b = spec("A", 51), spec("B", 52)
    plan = plan_reload(run(a, b), [spec("B", 52), spec("A", 51, priority=150)])
    assert [(s.name, s.old, s.new_transport) for s in plan.slots] == [
        ("B", "B", False), ("A", "A", False)]
    assert plan.stop == () and plan.start == () and len(plan.kept) == 2


def test_a_renamed_instance_keeps_its_member() -> None:
    plan = plan_reload(run(spec("VI_1")), [spec("VI_renamed")])
    assert plan.slots == (Slot(plan.slots[0].spec, "VI_1", False),)
    assert plan.slots[0].name == "VI_renamed" and plan.stop == () and plan.start == ()


@pytest.mark.parametrize("change", [
    dict(vrid=52), dict(interface="eth1"), dict(version=3),
])
def test_an_identity_change_is_a_stop_and_a_start(change: dict[str, Any]) -> None:
    plan = plan_reload(run(spec("VI_1")), [spec("VI_1", **change)])
    assert plan.stop == ("VI_1",) and plan.start == ("VI_1",)
    assert plan.slots[0].old is None


def test_a_changed_vmac_is_another_instance() -> None:
    plain = spec("VI_1")
    vmac = spec("VI_1", vmac=VmacPlan("VI_1", "vrrp.51", "eth0", "00:00:5e:00:01:33", 4, 51))
    plan = plan_reload(run(plain), [vmac])
    assert plan.stop == ("VI_1",) and plan.start == ("VI_1",)


def test_first_match_wins_and_an_unmatched_member_stops() -> None:
    # two running members with the same identity (on different names): the first is taken
    old = run(spec("X", 51), spec("Y", 51), spec("Z", 60))
    plan = plan_reload(old, [spec("N", 51)])
    assert [(s.name, s.old) for s in plan.slots] == [("N", "X")]
    assert plan.stop == ("Y", "Z") and plan.start == ()


def test_new_instances_start() -> None:
    plan = plan_reload(run(spec("A", 51)), [spec("A", 51), spec("B", 52)])
    assert plan.start == ("B",) and plan.stop == ()
    assert [s.old for s in plan.slots] == ["A", None]


def test_bad_spec_lists_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        plan_reload(run(spec()), [])
    with pytest.raises(ValueError, match="duplicate vrrp_instance names"):
        plan_reload(run(spec()), [spec("A", 51), spec("A", 52)])


# ------------------------------------------------------------------ transport diff


@pytest.mark.parametrize("change", [
    dict(peers=("192.0.2.9",)), dict(src_ip="192.0.2.7"), dict(transport="udp"),
    dict(mcast_group="224.0.0.19"), dict(udp_port=6000), dict(check_unicast_src=True),
])
def test_a_changed_transport_is_reopened(change: dict[str, Any]) -> None:
    plan = plan_reload(run(spec()), [spec(**change)])
    assert plan.slots[0].old == "VI_1" and plan.slots[0].new_transport


def test_a_pending_member_gets_its_new_transport_at_the_next_link_event() -> None:
    plan = plan_reload(run(spec(), pending=("VI_1",)), [spec(peers=("192.0.2.9",))])
    assert plan.slots[0].old == "VI_1" and not plan.slots[0].new_transport


def test_parameters_other_than_the_transport_keep_the_socket() -> None:
    plan = plan_reload(run(spec()), [spec(priority=200, garp_interval=0.5)])
    assert not plan.slots[0].new_transport


def test_tracked_interfaces_follow_the_new_specs() -> None:
    t = spec("A", 51)
    t = replace(t, params=replace(t.params, track_interfaces=(TrackedInterface("eth7"),)))
    dyn = spec("B", 52, interface="eth9", dynamic_interfaces=True)
    plan = plan_reload(run(spec("A", 51)), [t, dyn])
    assert plan.tracked == {"eth7", "eth9"}


# ------------------------------------------------------------------ VIP-entry diff


def test_vip_diff_compares_whole_entries() -> None:
    old = (Vip("192.0.2.100", 24), Vip("192.0.2.101", 32, label="eth0:a"))
    new = (Vip("192.0.2.100", 24), Vip("192.0.2.101", 32, label="eth0:b"),
           Vip("192.0.2.102", 32))
    d = vip_diff(old, new)
    assert d == ChangeVips(remove=(Vip("192.0.2.101", 32, label="eth0:a"),),
                           add=(Vip("192.0.2.101", 32, label="eth0:b"), Vip("192.0.2.102", 32)))


def _master(priority: int = 100, addresses: tuple[IPv4Address, ...] = (VIP,)) -> VrrpMachine:
    m = VrrpMachine(VrrpParams("VI_1", 51, priority=priority, addresses=addresses,
                               primary_address=ME, garp_master_delay=0))
    m.start(0.0)
    d = m.next_deadline
    assert d is not None
    m.tick(d)
    assert m.state == State.MASTER
    return m


def test_a_master_staying_master_edits_entries_instead_of_the_machines_address_actions() -> None:
    m = _master()
    old = (Vip("192.0.2.100", 24),)
    new = (Vip("192.0.2.100", 32), Vip("192.0.2.101", 24))  # prefix changed + one added
    acts = m.update(replace(m.params, addresses=(VIP, VIP2)), 10.0)
    assert AddVips((VIP2,)) in acts  # the machine speaks in addresses...
    out = reconfigure_actions("VI_1", [("VI_1", a) for a in acts], old, new,
                              was_master=True, still_master=m.state == State.MASTER)
    # ...the shell gets whole entries, removals first, before the GARPs for the new address
    assert out[0] == ("VI_1", ChangeVips(remove=(Vip("192.0.2.100", 24),)))
    assert out[1] == ("VI_1", ChangeVips(add=new))
    rest = [a for _, a in out[2:]]
    assert not any(isinstance(a, AddVips | RemoveVips) for a in rest)
    assert [type(a) for a in rest] == [SendAdvert, SendGratuitous]
    assert rest[1] == SendGratuitous((VIP2,), 5, "reload: new addresses")


def test_a_master_leaving_master_on_reload_drops_its_old_entries_then_the_rest() -> None:
    m = _master()
    old = (Vip("192.0.2.100", 24), Vip("192.0.2.101", 24))
    new = (Vip("192.0.2.100", 24),)
    # a newly tracked interface counts as up: with ``reverse`` that is a fault at once
    params = replace(m.params, addresses=(VIP,),
                     track_interfaces=(TrackedInterface("eth9", reverse=True),))
    acts = m.update(params, 10.0)
    assert m.state == State.FAULT
    out = reconfigure_actions("VI_1", [("VI_1", a) for a in acts], old, new,
                              was_master=True, still_master=False)
    assert out[0] == ("VI_1", ChangeVips(remove=(Vip("192.0.2.101", 24),)))
    # the machine's own RemoveVips (all that is left) stays, then the FAULT notify
    kinds = [type(a).__name__ for _, a in out[1:]]
    assert "RemoveVips" in kinds and kinds[-1] == "RunNotify"
    assert not any(isinstance(a, ChangeVips) and a.add for _, a in out)


def test_a_backup_only_remembers_new_entries() -> None:
    out = reconfigure_actions("VI_1", [], (Vip("192.0.2.100", 24),), (Vip("192.0.2.101", 24),),
                              was_master=False, still_master=False)
    assert out == []


def test_other_members_actions_are_left_alone() -> None:
    pairs: list[tuple[str, Action]] = [("VI_2", AddVips((VIP,))), ("VI_1", AddVips((VIP,)))]
    out = reconfigure_actions("VI_1", pairs, (), (), was_master=True, still_master=True)
    assert out == [("VI_2", AddVips((VIP,)))]


# ------------------------------------------------------------------ sync group notify


def _group(n: int = 2, notified: State | None = None) -> tuple[SyncGroup, list[VrrpMachine]]:
    ms = [VrrpMachine(VrrpParams(f"VI_{i}", 50 + i, addresses=(VIP,), primary_address=ME,
                                 track_interfaces=(TrackedInterface(f"eth{i}"),)))
          for i in range(n)]
    return SyncGroup("G", ms, notified=notified), ms


def _group_notifies(out: list[tuple[str, Action]]) -> list[str]:
    return [a.state for n, a in out if isinstance(a, NotifyGroup) and n == "G"]


def test_group_notifies_backup_at_start_after_its_members() -> None:
    g, _ = _group()
    out = g.start(0.0)
    assert _group_notifies(out) == ["BACKUP"]
    assert out[-1] == ("G", NotifyGroup("BACKUP"))  # after every member's own notify
    assert [n for n, a in out if isinstance(a, RunNotify)] == ["VI_0", "VI_1"]


def test_group_notifies_master_once_all_members_are_master() -> None:
    g, (a, b) = _group()
    g.start(0.0)
    # both down timers fire at the same scripted instant: the group notifies MASTER once,
    # after both members' VIP work and notifies (keepalived vrrp_sync.c vrrp_sync_master)
    out = g.tick(MDI_100)
    assert a.state == b.state == State.MASTER
    assert _group_notifies(out) == ["MASTER"] and out[-1] == ("G", NotifyGroup("MASTER"))
    kinds = [(n, type(x).__name__) for n, x in out]
    for n in ("VI_0", "VI_1"):
        assert kinds.index((n, "AddVips")) < kinds.index((n, "RunNotify"))
    # adverts and GARP refreshes while master notify nothing more
    assert g.tick(MDI_100 + 1.0) and _group_notifies(g.tick(MDI_100 + 2.0)) == []


def test_group_notifies_fault_then_backup_and_not_twice() -> None:
    g, (a, b) = _group()
    g.start(0.0)
    out = g.handle("VI_0", InterfaceChanged("eth0", False), 1.0)
    assert a.state == b.state == State.FAULT and _group_notifies(out) == ["FAULT"]
    assert out[-1] == ("G", NotifyGroup("FAULT"))
    # a second member faulty: still FAULT, no new notify
    assert _group_notifies(g.handle("VI_1", InterfaceChanged("eth1", False), 2.0)) == []
    assert _group_notifies(g.handle("VI_0", InterfaceChanged("eth0", True), 3.0)) == []
    out = g.handle("VI_1", InterfaceChanged("eth1", True), 4.0)
    assert a.state == b.state == State.BACKUP and _group_notifies(out) == ["BACKUP"]


def test_group_steps_down_to_backup_with_one_notify() -> None:
    g, (a, b) = _group()
    g.start(0.0)
    g.tick(MDI_100)
    out = g.handle("VI_0", AdvertReceived(Advert(2, 50, 250, 1.0, (VIP,)), HIGHER), 5.0)
    assert a.state == b.state == State.BACKUP
    assert _group_notifies(out) == ["BACKUP"] and out[-1] == ("G", NotifyGroup("BACKUP"))


def test_group_notifies_stop_once_every_member_stopped() -> None:
    g, _ = _group()
    g.start(0.0)
    g.tick(MDI_100)
    first = g.handle("VI_0", Shutdown(), 9.0)
    assert _group_notifies(first) == []  # VI_1 still master
    last = g.handle("VI_1", Shutdown(), 9.0)
    assert _group_notifies(last) == ["STOP"]  # keepalived vrrp_notify.c notify_shutdown
    assert last[-1] == ("G", NotifyGroup("STOP"))


def test_a_rebuilt_group_does_not_notify_an_unchanged_state_again() -> None:
    g, (a, b) = _group()
    g.start(0.0)
    g.tick(MDI_100)
    assert g.notified == State.MASTER
    # reload: the runner rebuilds the group around the same machines, carrying ``notified``
    g2 = SyncGroup("G", [a, b], notified=g.notified)
    out = g2.handle("VI_0", Reconfigure(replace(a.params, priority=120)), 10.0)
    assert _group_notifies(out) == []
    # a step down notifies BACKUP (the first change it sees); without ``notified`` a rebuilt
    # group would also notify the state it kept once something moves
    out = g2.handle("VI_0", AdvertReceived(Advert(2, 50, 250, 1.0, (VIP,)), HIGHER), 12.0)
    assert _group_notifies(out) == ["BACKUP"]
    g3 = SyncGroup("G", [a, b])
    assert g3.notified is None and _group_notifies(g3.start(13.0)) == ["BACKUP"]
