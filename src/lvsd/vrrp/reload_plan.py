"""What a reload of one VRRP runner changes, decided without I/O (keepalived vrrp.c
``clear_diff_vrrp`` / vrrp_daemon.c ``reload_vrrp_thread``).

Theory of operation
-------------------
``plan_reload(running, specs)`` takes the runner's current members (``Running``: name, spec,
whether its transport is pending because its interface does not exist) and the new file's
``InstanceSpec`` list, and returns a ``ReloadPlan``; the runner (``runner.VrrpRunner.update``)
only carries it out.

* Identity matching: each new spec, in file order, takes the first running member with the
  same ``spec.identity`` (interface, virtual_router_id, version, family, vmac) not already
  taken. keepalived's ``vrrp_exist`` matches vrid, family and interface; lvsd adds the version
  (its advert format differs) and a changed ``use_vmac`` (keepalived recreates the vmac). The
  name does not count: a renamed instance keeps its state.
* ``Slot.old`` is the matched member (None: the spec is started as a new member);
  ``Slot.new_transport`` is set when the transport's settings (``spec.transport_key``: kind,
  peers, source, group, port, AH key) changed and the member's transport is open: the new one
  is opened first and swapped in. A pending member opens its new transport at its next link
  event instead.
* ``ReloadPlan.stop``: running members nothing matched (removed, or their identity changed: a
  stop here and a start in ``slots``), stopped as on shutdown (priority 0 from a master, VIPs
  removed, notify STOP).
* ``ReloadPlan.tracked``: the interfaces to read before the change and to watch after it.

The VIP edit of a kept member (``reconfigure_actions``): ``VrrpMachine.update`` speaks in
addresses, but a VIP is a whole ``Vip`` entry (prefix, device, broadcast, scope, label), so a
master's address-level ``AddVips``/``RemoveVips`` are replaced by ``ChangeVips`` of whole
entries: a master deletes the entries it no longer has (also when the reload takes it out of
MASTER, e.g. into FAULT, whose own ``RemoveVips`` then removes the rest), and one that stays
master adds the new entries; a backup only remembers them. The edits come before the
machine's other actions (its gratuitous ARPs for the new addresses must follow the addresses).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from lvsd.vrrp.machine import Action, AddVips, RemoveVips
from lvsd.vrrp.spec import InstanceSpec, identity, tracked_interfaces, transport_key
from lvsd.vrrp.vips import Vip

__all__ = ["ChangeVips", "ReloadPlan", "Running", "Slot", "plan_reload",
           "reconfigure_actions", "vip_diff"]


@dataclass(frozen=True, slots=True)
class Running:
    """A running member as the planner sees it."""

    name: str
    spec: InstanceSpec
    pending: bool = False  # dynamic_interfaces: no transport open (its interface is missing)


@dataclass(frozen=True, slots=True)
class Slot:
    """One member after the reload, in the new file's order."""

    spec: InstanceSpec
    old: str | None = None  # the running member it continues (None: a new member)
    new_transport: bool = False  # open the spec's transport and swap it in

    @property
    def name(self) -> str:
        return self.spec.params.name


@dataclass(frozen=True, slots=True)
class ReloadPlan:
    slots: tuple[Slot, ...]
    stop: tuple[str, ...]
    tracked: frozenset[str]

    @property
    def start(self) -> tuple[str, ...]:
        """Names of the members to start."""
        return tuple(s.name for s in self.slots if s.old is None)

    @property
    def kept(self) -> tuple[Slot, ...]:
        return tuple(s for s in self.slots if s.old is not None)


def plan_reload(running: Sequence[Running], specs: Sequence[InstanceSpec]) -> ReloadPlan:
    """See the module docstring. Raises ``ValueError`` for no spec or duplicate names."""
    if not specs:
        raise ValueError("a VRRP runner needs at least one instance")
    names = [s.params.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate vrrp_instance names: {names}")
    free = list(running)
    slots: list[Slot] = []
    for spec in specs:
        ident = identity(spec)
        old = next((r for r in free if identity(r.spec) == ident), None)
        if old is None:
            slots.append(Slot(spec))
            continue
        free.remove(old)
        swap = not old.pending and transport_key(spec) != transport_key(old.spec)
        slots.append(Slot(spec, old.name, swap))
    return ReloadPlan(tuple(slots), tuple(r.name for r in free),
                      frozenset(tracked_interfaces(specs)))


@dataclass(frozen=True, slots=True)
class ChangeVips:
    """Delete ``remove`` then add ``add`` (whole ``Vip`` entries) on a master."""

    remove: tuple[Vip, ...] = ()
    add: tuple[Vip, ...] = ()


def vip_diff(old: Iterable[Vip], new: Iterable[Vip]) -> ChangeVips:
    """The entries of ``old`` not in ``new`` (remove) and of ``new`` not in ``old`` (add)."""
    old, new = tuple(old), tuple(new)
    return ChangeVips(tuple(v for v in old if v not in new), tuple(v for v in new if v not in old))


def reconfigure_actions(name: str, pairs: Sequence[tuple[str, Action]], old_vips: Iterable[Vip],
                        new_vips: Iterable[Vip], *, was_master: bool, still_master: bool,
                        ) -> list[tuple[str, Action | ChangeVips]]:
    """The actions for member ``name`` reconfigured by a reload: ``pairs`` (what the machine,
    or its sync group, returned for the update) with the VIP edit of the module docstring."""
    diff = vip_diff(old_vips, new_vips)
    out: list[tuple[str, Action | ChangeVips]] = []
    if was_master and diff.remove:
        out.append((name, ChangeVips(remove=diff.remove)))
    if was_master and still_master:
        pairs = [(n, a) for n, a in pairs
                 if n != name or not isinstance(a, AddVips | RemoveVips)]
        if diff.add:
            out.append((name, ChangeVips(add=diff.add)))
    out.extend(pairs)
    return out
