"""VRRP status crosses layers as frozen records (``vrrp.report``): the machine's and the runner's
reports hold every field the dictionaries they replace held (``as_dict`` gives that layout,
golden values below taken from the dictionary code), and the daemon's ``/status`` instances
(``daemon.snapshot.instances_status``) come out exactly as before.

The runner runs over the in-memory stand-ins of ``test_vrrp_runner_order`` (transport, VIP set,
GARP sender, notifiers) on an injected clock: nothing here touches the host.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
from test_vrrp_runner_order import Runner, owner_spec, until

from lvsd.config.loader import load
from lvsd.daemon.snapshot import instances_status, mono_to_wall
from lvsd.status.model import InstanceStatus, Transition, to_dict
from lvsd.vrrp.codec import Advert, Invalid, InvalidReason
from lvsd.vrrp.machine import State, VrrpMachine
from lvsd.vrrp.params import TrackedInterface, TrackedProcess, VrrpParams
from lvsd.vrrp.report import InstanceCounters, InstanceReport, MemberReport

pytestmark = pytest.mark.unit

ME = IPv4Address("192.0.2.1")
HIGHER = IPv4Address("192.0.2.2")
VIP = IPv4Address("192.0.2.100")

# ---- golden: what the dictionary-returning status() gave for the scenarios below

BACKUP_GOLDEN = {
    "name": "VI_1", "vrid": 51, "version": 2, "state": "BACKUP", "wantstate": "BACKUP",
    "base_priority": 100, "effective_priority": 90, "advert_int": 1.0, "master_adver_int": 1.0,
    "master_address": "192.0.2.2", "master_priority": 200, "primary_address": "192.0.2.1",
    "family": 4, "addresses": ["192.0.2.100"], "vips_held": False, "sync_group": None,
    "fault_reasons": [], "tracked_processes": {}, "startup_delay_until": None,
    "next_deadline": 4.6484375,
    "counters": {
        "adverts_sent": 0, "adverts_received": 1, "adverts_ignored": 0, "priority_zero_sent": 0,
        "priority_zero_received": 0, "lower_priority_discarded": 0, "addr_list_mismatch": 0,
        "became_master": 0, "released_master": 0, "invalid": {"auth_mismatch": 1, "checksum": 2},
        "transitions": [{"at": 0.0, "from": "INIT", "to": "BACKUP", "reason": "startup"}],
        "vip_add_failed": 0},
    "vip_retry_at": None}

FAULT_GOLDEN = {
    "name": "VI_2", "vrid": 52, "version": 2, "state": "FAULT", "wantstate": "FAULT",
    "base_priority": 100, "effective_priority": 105, "advert_int": 1.0, "master_adver_int": 1.0,
    "master_address": None, "master_priority": None, "primary_address": "192.0.2.1",
    "family": 4, "addresses": ["192.0.2.100"], "vips_held": False, "sync_group": None,
    "fault_reasons": ["interface eth2 down"], "tracked_processes": {"P": True},
    "startup_delay_until": None, "next_deadline": None,
    "counters": {
        "adverts_sent": 0, "adverts_received": 0, "adverts_ignored": 0, "priority_zero_sent": 0,
        "priority_zero_received": 0, "lower_priority_discarded": 0, "addr_list_mismatch": 0,
        "became_master": 0, "released_master": 0, "invalid": {},
        "transitions": [{"at": 0.0, "from": "INIT", "to": "FAULT",
                         "reason": "startup: interface eth2 down"}], "vip_add_failed": 0},
    "vip_retry_at": None}

OWNER = "startup as address owner (priority 255)"


def runner_golden(name: str, vrid: int, *, stopped: bool) -> dict[str, object]:
    trans = [{"at": 100.0, "from": "INIT", "to": "MASTER", "reason": OWNER}]
    if stopped:
        trans.append({"at": 100.0, "from": "MASTER", "to": "STOPPED", "reason": "shutdown"})
    return {
        "name": name, "vrid": vrid, "version": 2, "state": "STOPPED" if stopped else "MASTER",
        "wantstate": "MASTER", "base_priority": 255, "effective_priority": 255,
        "advert_int": 1.0, "master_adver_int": 1.0, "master_address": "192.0.2.1",
        "master_priority": 255, "primary_address": "192.0.2.1", "family": 4,
        "addresses": ["192.0.2.100"], "vips_held": not stopped, "sync_group": "G",
        "fault_reasons": [], "tracked_processes": {}, "startup_delay_until": None,
        "next_deadline": None if stopped else 101.0,
        "counters": {
            "adverts_sent": 2 if stopped else 1, "adverts_received": 0, "adverts_ignored": 0,
            "priority_zero_sent": 1 if stopped else 0, "priority_zero_received": 0,
            "lower_priority_discarded": 0, "addr_list_mismatch": 0, "became_master": 1,
            "released_master": 0, "invalid": {}, "transitions": trans, "vip_add_failed": 0},
        "vip_retry_at": None,
        "interface": "eth0",
        "transport": {"kind": "custom", "source": "192.0.2.1", "destinations": ["224.0.0.18"],
                      "send_errors": 0, "filtered": 0},
        "other_vrid": 0, "interface_pending": None, "garp_sent": 0, "vip_errors": {},
        "discarded": {}, "invalid_packets": {}}


CONF = """vrrp_instance VI_1 {
  interface eth0
  virtual_router_id 51
  priority 255
  virtual_ipaddress {
    192.0.2.100/24
  }
}
"""


def status_golden(name: str, vrid: int, vips: tuple[str, ...], *,
                  stopped: bool) -> InstanceStatus:
    trans = [Transition(1100.0, "INIT", "MASTER", OWNER)]
    if stopped:
        trans.append(Transition(1100.0, "MASTER", "STOPPED", "shutdown"))
    return InstanceStatus(
        name=name, vrid=vrid, interface="eth0", version=2, family=4,
        state="STOPPED" if stopped else "MASTER", base_priority=255, effective_priority=255,
        master="192.0.2.1", master_priority=255, advert_int=1.0, vips=vips,
        vips_held=not stopped, sync_group="G", transitions=tuple(trans),
        adverts_sent=2 if stopped else 1, adverts_received=0, became_master=1,
        released_master=0, priority_zero_sent=1 if stopped else 0, priority_zero_received=0,
        invalid_packets={}, fault_reasons=())


# ---- scenarios


def backup_machine() -> VrrpMachine:
    m = VrrpMachine(VrrpParams("VI_1", 51, addresses=(VIP,), primary_address=ME,
                               track_interfaces=(TrackedInterface("eth1", weight=-10),)))
    m.start(0.0)
    m.receive(Invalid(InvalidReason.CHECKSUM, "x"), HIGHER, 0.5)
    m.receive(Invalid(InvalidReason.CHECKSUM, "x"), HIGHER, 0.6)
    m.receive(Invalid(InvalidReason.AUTH_MISMATCH), HIGHER, 0.7)
    m.receive(Advert(2, 51, 200, 1.0, (VIP,)), HIGHER, 1.0)
    m.interface("eth1", False, 2.0)
    return m


def fault_machine() -> VrrpMachine:
    m = VrrpMachine(VrrpParams("VI_2", 52, addresses=(VIP,), primary_address=ME,
                               track_interfaces=(TrackedInterface("eth2"),),
                               track_processes=(TrackedProcess("P", weight=5),)))
    m.interface("eth2", False, 0.0)
    m.process("P", True, 0.0)
    m.start(0.0)
    return m


def frozen_all_the_way(obj: object) -> Iterator[Any]:
    """Every dataclass reachable from ``obj`` (to check each is frozen)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        yield obj
        for f in dataclasses.fields(obj):
            yield from frozen_all_the_way(getattr(obj, f.name))
    elif isinstance(obj, tuple):
        for x in obj:
            yield from frozen_all_the_way(x)


def test_machine_report_is_typed_frozen_and_holds_every_field() -> None:
    m = backup_machine()
    r = m.status()
    assert isinstance(r, InstanceReport) and isinstance(r.counters, InstanceCounters)
    assert r.state is State.BACKUP and r.master_address == "192.0.2.2"
    assert r.counters.invalid == {"auth_mismatch": 1, "checksum": 2}
    assert r.as_dict() == BACKUP_GOLDEN
    assert json.loads(json.dumps(r.as_dict())) == BACKUP_GOLDEN
    for rec in frozen_all_the_way(r):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(rec, dataclasses.fields(rec)[0].name, None)
    # a copy at one moment: the machine moves on, the report does not
    m.receive(Advert(2, 51, 200, 1.0, (VIP,)), HIGHER, 3.0)
    assert r.counters.adverts_received == 1 and m.status().counters.adverts_received == 2
    assert fault_machine().status().as_dict() == FAULT_GOLDEN


async def test_runner_report_and_status_instances_unchanged(tmp_path: Path) -> None:
    log: list[str] = []
    r = Runner([owner_spec(log), owner_spec(log, "VI_9", 59)], log, clock=lambda: 100.0,
               sync_group="G")
    r.gate.set()
    await r.start()
    await until(lambda: log.count("notify INSTANCE MASTER") == 2)
    f = tmp_path / "k.conf"
    f.write_text(CONF)
    cfg = load(str(f))
    conv = mono_to_wall(1000.0)
    try:
        st = r.status()
        assert list(st) == ["VI_1", "VI_9"]
        assert all(isinstance(x, MemberReport) and x.name == n for n, x in st.items())
        assert st["VI_1"].transport.destinations == ("224.0.0.18",)
        assert st["VI_1"].as_dict() == runner_golden("VI_1", 51, stopped=False)
        assert st["VI_9"].as_dict() == runner_golden("VI_9", 59, stopped=False)
        # VI_1 is configured (its VIP with the configured prefix), VI_9 is not
        got = instances_status([r], cfg, conv)
        assert got == (status_golden("VI_1", 51, ("192.0.2.100/24",), stopped=False),
                       status_golden("VI_9", 59, ("192.0.2.100",), stopped=False))
        assert all(type(i.state) is str for i in got)
        assert instances_status([r], None, conv) == ()
    finally:
        await r.stop()
    assert r.status()["VI_1"].as_dict() == runner_golden("VI_1", 51, stopped=True)
    got = instances_status([r], cfg, conv)
    assert got == (status_golden("VI_1", 51, ("192.0.2.100/24",), stopped=True),
                   status_golden("VI_9", 59, ("192.0.2.100",), stopped=True))
    # and the /status JSON of an instance, key for key and in order
    doc = to_dict(got[0])  # type: ignore[arg-type]  # to_dict's walk, on one instance
    assert list(doc) == [
        "name", "vrid", "interface", "version", "family", "state", "base_priority",
        "effective_priority", "master", "master_priority", "advert_int", "vips", "vips_held",
        "sync_group", "transitions", "adverts_sent", "adverts_received", "became_master",
        "released_master", "priority_zero_sent", "priority_zero_received", "invalid_packets",
        "fault_reasons", "vip_add_failures", "vip_retry_at"]
    assert doc["transitions"][-1] == {"at": 1100.0, "old": "MASTER", "new": "STOPPED",
                                      "reason": "shutdown"}


def test_runner_report_has_no_dict_interface() -> None:
    # what the daemon reads is attributes: a string key is a type error, not a lookup
    r = backup_machine().status()
    with pytest.raises(TypeError):
        r["state"]  # type: ignore[index]

