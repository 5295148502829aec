"""What a VRRP instance reports about itself: frozen, typed status records.

Theory of operation
-------------------
The machine (:meth:`lvsd.vrrp.machine.VrrpMachine.status`) and the runner
(:meth:`lvsd.vrrp.runner.VrrpRunner.status`) hand their state to the layers above as values of
this module, not as dictionaries read back by key: the daemon's status snapshot
(:func:`lvsd.daemon.snapshot.instances_status`) reads attributes, so mypy checks every field it
uses, and a record taken at one moment does not change when the machine moves on.

* :class:`InstanceCounters` -- a copy of the machine's live ``Counters`` (adverts, priority-0
  adverts, invalid packets by the codec's reason, the bounded transition log).
* :class:`InstanceReport` -- one machine: identity, state, priorities, the master as last seen,
  fault reasons, tracked processes, timers and the counters. Times are on the machine's clock.
* :class:`MemberReport` -- one instance as its runner runs it: the machine's report plus the host
  side (interface, :class:`TransportReport`, :class:`VmacReport`, gratuitous ARPs sent, VIP
  errors, whether the VIPs are really on the interface, tracked process counts).

``as_dict()`` gives the plain, JSON-ready layout these records replace (the debug dump of
``tests/support/vrrp_standalone.py`` writes it); nothing in the daemon reads it back by key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lvsd.vrrp.machine import State, Transition

__all__ = ["InstanceCounters", "InstanceReport", "MemberReport", "TransportReport",
           "VmacReport"]


@dataclass(frozen=True, slots=True)
class InstanceCounters:
    """The machine's counters at one moment (see ``machine.Counters``)."""

    adverts_sent: int
    adverts_received: int
    adverts_ignored: int  # valid adverts received in INIT/FAULT (keepalived ignores them)
    priority_zero_sent: int
    priority_zero_received: int
    lower_priority_discarded: int  # backup, preempting: advert not accepted
    addr_list_mismatch: int  # keepalived's warning-only VIP list check
    became_master: int
    released_master: int
    invalid: Mapping[str, int]  # by the codec's InvalidReason value, sorted by reason
    transitions: tuple[Transition, ...]  # oldest first, bounded by the machine
    vip_add_failed: int = 0  # MASTER whose VIPs could not be added (went FAULT, retried)

    def as_dict(self) -> dict[str, Any]:
        return {
            "adverts_sent": self.adverts_sent,
            "adverts_received": self.adverts_received,
            "adverts_ignored": self.adverts_ignored,
            "priority_zero_sent": self.priority_zero_sent,
            "priority_zero_received": self.priority_zero_received,
            "lower_priority_discarded": self.lower_priority_discarded,
            "addr_list_mismatch": self.addr_list_mismatch,
            "became_master": self.became_master,
            "released_master": self.released_master,
            "vip_add_failed": self.vip_add_failed,
            "invalid": dict(self.invalid),
            "transitions": [
                {"at": t.at, "from": t.old.value, "to": t.new.value, "reason": t.reason}
                for t in self.transitions
            ],
        }


@dataclass(frozen=True, slots=True)
class InstanceReport:
    """One VRRP machine at one moment (``VrrpMachine.status()``)."""

    name: str
    vrid: int
    version: int
    state: State
    wantstate: State
    base_priority: int  # configured
    effective_priority: int  # after tracking
    advert_int: float  # configured
    master_adver_int: float  # v3: the master's advertised interval once adopted
    master_address: str | None  # as last seen (ourselves while MASTER)
    master_priority: int | None
    primary_address: str | None  # our own source address
    family: int
    addresses: tuple[str, ...]  # the VIPs the adverts carry
    vips_held: bool  # as far as the machine knows (MASTER); the host's truth: MemberReport
    sync_group: str | None
    fault_reasons: tuple[str, ...]  # empty unless a tracked object of its own is down
    tracked_processes: Mapping[str, bool | None]  # track_process: quorum up, None: unknown
    startup_delay_until: float | None  # vrrp_startup_delay, machine clock
    next_deadline: float | None  # machine clock
    counters: InstanceCounters
    vip_retry_at: float | None = None  # FAULT for VIPs not held ends (machine clock)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "vrid": self.vrid,
            "version": self.version,
            "state": self.state.value,
            "wantstate": self.wantstate.value,
            "base_priority": self.base_priority,
            "effective_priority": self.effective_priority,
            "advert_int": self.advert_int,
            "master_adver_int": self.master_adver_int,
            "master_address": self.master_address,
            "master_priority": self.master_priority,
            "primary_address": self.primary_address,
            "family": self.family,
            "addresses": list(self.addresses),
            "vips_held": self.vips_held,
            "sync_group": self.sync_group,
            "fault_reasons": list(self.fault_reasons),
            "tracked_processes": dict(self.tracked_processes),
            "startup_delay_until": self.startup_delay_until,
            "next_deadline": self.next_deadline,
            "counters": self.counters.as_dict(),
            "vip_retry_at": self.vip_retry_at,
        }


@dataclass(frozen=True, slots=True)
class TransportReport:
    """How a member sends and receives adverts."""

    kind: str  # raw | udp | custom (a transport object handed in)
    source: str
    destinations: tuple[str, ...]
    send_errors: int
    filtered: int  # packets the transport dropped before decoding (not ours)

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "source": self.source,
                "destinations": list(self.destinations), "send_errors": self.send_errors,
                "filtered": self.filtered}


@dataclass(frozen=True, slots=True)
class VmacReport:
    """``use_vmac``: the macvlan the member runs on."""

    name: str
    mac: str
    xmit_base: bool
    io_interface: str

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "mac": self.mac, "xmit_base": self.xmit_base,
                "io_interface": self.io_interface}


@dataclass(frozen=True, slots=True)
class MemberReport:
    """One instance as its runner runs it (``VrrpRunner.status()``)."""

    machine: InstanceReport
    interface: str
    transport: TransportReport
    other_vrid: int  # adverts for another VRID seen on our socket (= discarded["vrid"])
    interface_pending: str | None  # dynamic_interfaces: why the transport is not open
    vmac: VmacReport | None
    process_counts: Mapping[str, int | None] | None  # None: no process tracking
    garp_sent: int
    vip_errors: Mapping[str, int]
    # every VIP (and excluded VIP) of the instance is on its interface, as the last netlink
    # add/remove left it (not the machine's belief: a MASTER whose add failed holds none)
    vips_held: bool = False
    # packets dropped before the machine saw them, by reason: the runner's ("vrid", and
    # "truncated" for a payload too short to carry one) and the transport's (transport.py
    # DISCARD_REASONS: "own_address", "destination", "interface", "unicast_src", "truncated")
    discarded: Mapping[str, int] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.machine.name

    @property
    def invalid_packets(self) -> dict[str, int]:
        """Every packet this instance discarded, by reason: the machine's (the codec's
        reasons) and those dropped before it (``discarded``), sorted by reason."""
        out = dict(self.machine.counters.invalid)
        for reason, n in self.discarded.items():
            out[reason] = out.get(reason, 0) + n
        return dict(sorted(out.items()))

    def as_dict(self) -> dict[str, Any]:
        out = self.machine.as_dict()
        out["interface"] = self.interface
        out["transport"] = self.transport.as_dict()
        out["other_vrid"] = self.other_vrid
        out["interface_pending"] = self.interface_pending
        if self.vmac is not None:
            out["vmac"] = self.vmac.as_dict()
        if self.process_counts is not None:
            out["process_counts"] = dict(self.process_counts)
        out["garp_sent"] = self.garp_sent
        out["vip_errors"] = dict(self.vip_errors)
        out["vips_held"] = self.vips_held
        out["discarded"] = dict(self.discarded)
        out["invalid_packets"] = self.invalid_packets
        return out
