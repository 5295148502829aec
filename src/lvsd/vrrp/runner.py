"""The async shell around ``VrrpMachine``: sockets, timers, VIPs, GARP, scripts, notify.

Theory of operation
-------------------
A ``VrrpRunner`` drives one VRRP instance, or the instances of one ``vrrp_sync_group`` (then
every event goes through ``machine.SyncGroup``). It only executes: the VRRP logic is the
machine's and the sync group's (including the group's notify), what a reload changes is
``reload_plan``'s, and what it runs comes from ``spec`` (``InstanceSpec``/``RunnerSpec``, the
one path from the config). It turns I/O into events and actions into I/O.

Events in:

* received packets (``transport``): a payload whose VRID is not ours is dropped (counted as
  ``vrid``: another router on the link; one too short to carry a VRID as ``truncated``),
  beside what the transport dropped (its ``discarded`` reasons); the rest is decoded with
  ``codec.decode`` (``params.expect()``) and fed to ``machine.receive`` even when invalid, so
  the machine counts it per reason and changes nothing;
* timers: one ``loop.call_at`` at the machine's ``next_deadline``, translated from the injected
  ``clock`` (monotonic seconds) to the loop's clock; re-armed after every event;
* link state of every tracked interface (the instance's own unless ``dont_track_primary``):
  read once before ``start``, then from netlink ``RTM_NEWLINK`` notifications; a link is up
  when it is ``IFF_UP`` and ``IFF_RUNNING`` (carrier), as keepalived judges it;
* ``vrrp_script`` results: each tracked script runs every ``interval`` with a ``timeout``
  (unset: the interval, keepalived); a timeout or a non-zero exit is a failure; the machine
  applies rise/fall.
* ``vrrp_track_process`` quorums: one ``process_track.ProcessTracker`` per runner over every
  process its members track; /proc is scanned once before ``start`` (the states are known
  at startup, as in keepalived) and then every ``process_poll_interval`` (0.5 s, in a worker
  thread: a scan must not delay adverts) and when a fork/terminate delay expires; each quorum
  change is logged ("Quorum gained/lost for tracked process X") and fed as ``ProcessResult``.
* ``dynamic_interfaces`` (keepalived global_defs): a member whose interface does not exist
  when its transport opens is *pending*: the machine gets ``Unavailable("interface X does not
  exist (dynamic_interfaces)")`` and so starts in (or enters) FAULT with that reason. The link
  watcher also watches such interfaces (and address events): on ``RTM_NEWLINK`` or
  ``RTM_NEWADDR`` a pending member opens a fresh transport and GARP socket (a re-created
  interface has a new ifindex) and, once open, gets ``Unavailable(None)``: FAULT -> BACKUP ->
  the usual election; on ``RTM_DELLINK`` it is pending again (FAULT, socket closed). Without
  ``dynamic_interfaces`` a missing interface makes ``start`` fail, as before.

``delayed_start`` (``vrrp_startup_delay``, keepalived vrrp_daemon.c: "Delaying startup for %g
seconds") is handed to every machine, also to members added by a reload during the delay
(keepalived's ``vrrp_delayed_start_time`` is global); see ``machine`` for its effect.
``PriorityChanged`` is logged as keepalived does ("(X) Changing effective priority from A to
B"); ``RunNotify`` MASTER_PRIORITY / BACKUP_PRIORITY becomes a FIFO line only (``notify``).

Actions out. ``SendAdvert`` goes out at once (encoded for each destination: v3 checksums
cover the destination address; keepalived sends the advert first too, so the old master drops
the VIPs before our gratuitous ARPs). Everything else that touches the host is executed
strictly in the machine's order by one worker task per runner, while the machine itself never
waits: ``AddVips``/``RemoveVips``/``reload_plan.ChangeVips`` (``vips.VipSet``: netlink,
idempotent, options per VIP, excluded VIPs too), ``SendGratuitous`` (``garp.Garp``; ``count``
per VIP: the first burst at once, the others spaced by ``garp_interval`` in the background,
dropped when the VIPs are removed, keepalived vrrp_remove_delayed_arp), ``RunNotify``
(``notify.Notifier``: scheduled, never awaited) and ``NotifyGroup`` (the group's notifier).
So a new master's notify starts only once its VIPs are on the interface and its first
gratuitous ARPs are out, and a backup's or a stopping master's once they are gone (keepalived
vrrp.c vrrp_state_become_master / vrrp_state_leave_master): a ``notify_master`` that binds to
the VIP or routes through it works. The ``Become*`` records are passed to ``on_event`` on the
next loop turn (after the VIP work started); ``PriorityChanged`` is logged at once.

The outcome of every VIP add goes back to the machine (``VipsAdded``: None, or the first real
error): a MASTER whose VIPs could not be added goes to FAULT and retries after a back-off (the
machine decides; see its docstring). The member's ``vips_held`` is the host's truth (every
VIP added by the last add, none since a remove), which status reports; gratuitous ARPs are
sent only while it holds, never for an address this node failed to add.

``use_vmac`` (``InstanceSpec.vmac``, ``lvsd.vrrp.vmac``): before its transport opens, a member
creates (or adopts) its macvlan, in any state; adverts go out and come in on
``io_interface`` (the vmac, or the base with ``vmac_xmit_base``), the VIPs of the instance's
family and the GARP/NA socket are on the vmac. The vmac is deleted after the VIPs when the
member stops or a reload removes it, unless a member still running uses the same one.

``update(specs)`` is the reload (keepalived ``clear_diff_vrrp``), carried out as
``reload_plan.plan_reload`` decides it: new specs are matched to the running members by
identity (interface, virtual_router_id, version, family, vmac), first match wins, so a renamed
instance keeps its state. A matched member keeps its machine (``VrrpMachine.update``: same
state, counters, learned master), its VIP set gets the new addresses (a master deletes the
dropped ones — whole ``Vip`` entries, options included — and adds the new ones; a backup only
remembers them: ``reload_plan.reconfigure_actions``), a changed transport (kind, peers, source,
group, port) is opened first and swapped in, the notify scripts / FIFOs, the ``vrrp_script``
loops and the link watcher follow the new config. Members without a match are stopped like
``stop()`` (priority 0 if master, VIPs removed, notify STOP) and new specs are started, so an
identity change is a stop + start of that member. The sync group is rebuilt around the members.
Every new socket is opened before anything changes: if one fails, ``update`` raises and the
old configuration keeps running untouched.

``stop()`` is the graceful shutdown (SIGTERM): the machine's ``shutdown`` sends priority 0 if
master (RFC 5798 §6.4.3: a backup then takes over after Skew_Time) and removes the VIPs;
notify STOP runs; then sockets close.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lvsd.scriptrun import ScriptRunner
from lvsd.vrrp import codec
from lvsd.vrrp.garp import Garp
from lvsd.vrrp.machine import (
    Action,
    AddVips,
    AdvertReceived,
    BecomeBackup,
    BecomeFault,
    BecomeMaster,
    Event,
    InterfaceChanged,
    NotifyGroup,
    PriorityChanged,
    ProcessResult,
    Reconfigure,
    RemoveVips,
    RunNotify,
    ScriptResult,
    SendAdvert,
    SendGratuitous,
    Shutdown,
    State,
    SyncGroup,
    Timer,
    Unavailable,
    VipsAdded,
    VrrpMachine,
)
from lvsd.vrrp.notify import Notifier
from lvsd.vrrp.process_track import ProcessSpec, ProcessTracker, read_procs
from lvsd.vrrp.reload_plan import ChangeVips, Running, plan_reload, reconfigure_actions
from lvsd.vrrp.report import MemberReport, TransportReport, VmacReport
from lvsd.vrrp.spec import (
    CheckScript,
    InstanceSpec,
    identity,
    notifier_from_config,
    tracked_interfaces,
    vips_of,
)
from lvsd.vrrp.transport import Packet, Transport, make_transport
from lvsd.vrrp.vips import VipResult, VipSet
from lvsd.vrrp.vmac import VmacLink

__all__ = ["CheckScript", "InstanceSpec", "VrrpRunner", "identity", "notifier_from_config"]

log = logging.getLogger(__name__)

IFF_UP = 0x1
IFF_RUNNING = 0x40


@dataclass(frozen=True, slots=True)
class _Close:
    """A member left on reload: close its netlink and GARP sockets after its VIP work."""


def _transport_of(spec: InstanceSpec, previous: Transport | None = None) -> Transport:
    """The spec's ready transport, or a new (unopened) one of the kind it names (``previous``:
    the one it replaces on reload; its IPsec-AH sequence counter carries over)."""
    tr = spec.transport
    if not isinstance(tr, str):
        return tr
    made = make_transport(tr, spec.io_interface, spec.params.family, peers=spec.peers,
                          src_ip=spec.src_ip, check_unicast_src=spec.check_unicast_src,
                          group=spec.mcast_group, port=spec.udp_port,
                          ah_key=spec.params.ah_key, vrid=spec.params.vrid, previous=previous)
    if spec.vmac is not None and hasattr(made, "source_ifname"):
        made.source_ifname = spec.interface  # adverts from the base's address (vmac.py)
    return made


def _close_quietly(tr: Transport) -> None:
    """Close ``tr``, which is being dropped: a failure is logged (debug), nothing more, since
    nothing that follows depends on it."""
    try:
        tr.close()
    except Exception as exc:
        log.debug("VRRP: closing a %s: %s", type(tr).__name__, exc)


def _close_all(*groups: Iterable[Transport]) -> None:
    """Close transports opened for a reload that is abandoned (errors logged, ignored)."""
    for group in groups:
        for tr in group:
            _close_quietly(tr)


def _keep_counts(m: _Member) -> None:
    """``m``'s transport is being replaced: keep what it discarded in the member's counts."""
    m.discarded.update(getattr(m.transport, "discarded", {}))


def _discards(m: _Member) -> dict[str, int]:
    """Everything dropped before the machine for ``m``, by reason (runner + transports)."""
    out = Counter(m.discarded)
    out.update(getattr(m.transport, "discarded", {}))
    return {str(k): n for k, n in sorted(out.items())}


def _if_exists(name: str) -> bool:
    try:
        socket.if_nametoindex(name)
    except OSError:
        return False
    return True


@dataclass
class _Member:
    spec: InstanceSpec
    machine: VrrpMachine
    transport: Transport
    vipset: VipSet
    garp: Garp
    expect: codec.Expect
    # packets dropped before the machine: by the runner ("vrid": another VRID, "truncated": no
    # VRID at all) and by transports this member no longer uses (the counts stay monotonic)
    discarded: Counter[str] = field(default_factory=Counter)
    vip_errors: Counter[str] = field(default_factory=Counter)
    script_tasks: list[asyncio.Task[None]] = field(default_factory=list)
    # dynamic_interfaces: why the transport is not open (the interface does not exist)
    pending: str | None = None
    reopening: bool = False
    vmac: VmacLink | None = None  # use_vmac: the macvlan this member created or adopted
    garp_tasks: set[asyncio.Task[None]] = field(default_factory=set)  # spaced GARP bursts
    vips_held: bool = False  # every VIP on its interface, as the last add/remove left them

    @property
    def name(self) -> str:
        return self.spec.params.name


class VrrpRunner:
    """Runs one instance or one sync group. ``await start()``, later ``await stop()``.

    ``on_event(instance, kind, info)`` is called for state changes (kind "state", info has
    "state", "previous", "reason") and errors (kind "error", info has "message").
    """

    def __init__(self, specs: InstanceSpec | Sequence[InstanceSpec], *,
                 sync_group: str | None = None, group_notifier: Notifier | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 on_event: Callable[[str, str, dict[str, Any]], None] | None = None,
                 delayed_start: float | None = None,
                 process_poll_interval: float = 0.5) -> None:
        self.specs = [specs] if isinstance(specs, InstanceSpec) else list(specs)
        # vrrp_startup_delay: the ``clock`` time before which no down timer counts
        self.delayed_start = delayed_start
        self.process_poll_interval = process_poll_interval
        self.processes: ProcessTracker | None = None
        self._proc_task: asyncio.Task[None] | None = None
        if not self.specs:
            raise ValueError("a VRRP runner needs at least one instance")
        self.sync_group_name = sync_group
        self.group_notifier = group_notifier
        self.clock = clock
        self.on_event = on_event
        self.members: dict[str, _Member] = {}
        self.group: SyncGroup | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        # the worker's queue; a None member: the sync group's own work (NotifyGroup)
        self._queue: asyncio.Queue[
            tuple[_Member | None, Action | ChangeVips | _Close] | None] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._link_task: asyncio.Task[None] | None = None
        self._tracked: set[str] = set()
        self._update_lock = asyncio.Lock()
        self.reloads = 0
        self._worker: asyncio.Task[None] | None = None
        self._due = 0.0
        self._started = False
        self._stopped = False
        self.stopped = asyncio.Event()

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        self._loop = asyncio.get_running_loop()
        for spec in self.specs:
            m = self._new_member(spec)
            self.members[m.name] = m
        for m in self.members.values():
            try:
                await self._open_member(m)
            except Exception:
                self._close_transports()
                await self._vmacs_down(self.members.values())
                raise
        if len(self.members) > 1 or self.sync_group_name:
            self.group = SyncGroup(self.sync_group_name or "group",
                                   [m.machine for m in self.members.values()])
        self._worker = self._loop.create_task(self._work())
        # Interface states before start, so a down link starts in FAULT.
        tracked = self._tracked_names()
        if tracked:
            states = await self._link_states(tracked)
            if self._stopped:  # stopped while starting: the machines never start
                return
            for name, up in states.items():
                for m in self.members.values():
                    self._feed(m, InterfaceChanged(name, up))
        self._watch(tracked)
        for m in self.members.values():
            self._start_scripts(m)
        await self._start_processes()
        if self._stopped:
            return
        now = self.clock()
        if self.group is not None:
            self._execute(self.group.start(now))
        else:
            for m in self.members.values():
                self._execute([(m.name, a) for a in m.machine.start(now)])
        self._rearm()

    async def stop(self, timeout: float = 5.0) -> None:
        """Graceful stop: priority 0 if master, VIPs removed, notify STOP, sockets closed."""
        if self._stopped:
            return
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
        for t in self._tasks:
            t.cancel()
        if self._link_task is not None:
            self._link_task.cancel()
        if self._proc_task is not None:
            self._proc_task.cancel()
        for m in self.members.values():
            for t in m.script_tasks:
                t.cancel()
            self._feed(m, Shutdown(), rearm=False)
        self._queue.put_nowait(None)
        if self._worker is not None:
            try:
                await asyncio.wait_for(self._worker, timeout)
            except TimeoutError:  # wait_for cancelled it: what it had not done is not done
                log.warning("VRRP %s: shutdown not finished after %g s",
                            self.sync_group_name or ", ".join(self.members), timeout)
            except Exception as exc:
                log.warning("VRRP %s: worker failed at shutdown: %s",
                            self.sync_group_name or ", ".join(self.members), exc)
        for m in self.members.values():
            if m.spec.notifier is not None:
                await m.spec.notifier.drain(timeout)
                m.spec.notifier.close()
        if self.group_notifier is not None:
            await self.group_notifier.drain(timeout)
            self.group_notifier.close()
        self._close_transports()
        for m in self.members.values():
            self._cancel_garps(m)
            m.garp.close()
            m.vipset.close()
        await self._vmacs_down(self.members.values())
        self.stopped.set()

    # ------------------------------------------------------------------ reload
    def _new_member(self, spec: InstanceSpec) -> _Member:
        p = spec.params
        m = _Member(spec, VrrpMachine(p), _transport_of(spec),
                    VipSet(spec.interface, vips_of(spec), spec.excluded),
                    Garp(spec.garp_interface), p.expect())
        m.machine.delayed_start = self.delayed_start
        return m

    async def _open_member(self, m: _Member) -> None:
        """Open ``m``'s transport; with ``dynamic_interfaces`` a missing interface leaves it
        pending (the instance in FAULT) instead of failing (keepalived vrrp_if.c
        if_get_by_ifname: "... doesn't currently exist - will use if created")."""
        try:
            if m.spec.vmac is not None:
                await self._vmac_up(m)
            await m.transport.open(functools.partial(self._on_packet, m))
        except Exception:
            if not m.spec.dynamic_interfaces or _if_exists(m.spec.interface):
                raise
            _close_quietly(m.transport)
            if m.pending is None:
                log.info("Configuration specifies interface %s which doesn't currently exist "
                         "- will use if created", m.spec.interface)
            m.pending = f"interface {m.spec.interface} does not exist (dynamic_interfaces)"
            self._feed(m, Unavailable(m.pending), rearm=False)
            return
        m.machine.set_primary_address(m.transport.source)
        try:  # now, not at the takeover (when descriptors may have run out)
            m.garp.open(m.spec.params.family)
        except OSError as exc:  # opened again at the first burst
            log.debug("(%s) gratuitous ARP socket: %s", m.name, exc)
        await m.vipset.open()  # likewise: the first VIP add must not pay for the set-up
        if m.pending is not None:
            m.pending = None
            self._feed(m, Unavailable(None), rearm=False)

    async def _vmac_up(self, m: _Member) -> None:
        """use_vmac: create or adopt the macvlan before the transport opens on it, in any
        state (keepalived vrrp.c vrrp_complete_instance -> netlink_link_add_vmac). A running
        member with the same vmac name shares its link (a reload), so its removal keeps it."""
        plan = m.spec.vmac
        assert plan is not None
        if m.vmac is None:
            m.vmac = next((o.vmac for o in self.members.values() if o is not m
                           and o.vmac is not None and o.vmac.plan.name == plan.name), None)
        if m.vmac is None:
            m.vmac = VmacLink(plan)
        m.vmac.plan = plan
        await m.vmac.up()

    async def _vmacs_down(self, gone: Iterable[_Member], keep: Iterable[_Member] = ()) -> None:
        """Delete the vmacs of ``gone`` that no member of ``keep`` uses (keepalived vrrp.c
        clear_diff_vrrp / shutdown_vrrp_instances), after their VIPs went."""
        links = {id(m.vmac): m.vmac for m in gone if m.vmac is not None}
        for m in keep:
            if m.vmac is not None:
                links.pop(id(m.vmac), None)
        for link in links.values():
            try:
                await link.down()
            except Exception as exc:  # netlink gone: report, go on with the others
                self._error(link.plan.instance, f"cannot remove VMAC {link.plan.name}: {exc}")

    async def _reopen(self, m: _Member) -> None:
        """The interface of a pending member (re)appeared: a fresh transport and GARP socket."""
        if m.reopening or self._stopped:
            return
        m.reopening = True
        try:
            _keep_counts(m)
            m.transport = _transport_of(m.spec, m.transport)  # keeps the AH sequence counter
            m.garp.close()
            m.garp = Garp(m.spec.garp_interface)
            try:
                await self._open_member(m)
            except Exception as exc:  # exists but not usable yet (no address): next event
                _close_quietly(m.transport)
                reason = f"interface {m.spec.interface}: {exc}"
                if reason != m.pending:
                    m.pending = reason
                    self._feed(m, Unavailable(reason), rearm=False)
            if m.pending is None:
                log.info("(%s) interface %s is back", m.name, m.spec.interface)
        finally:
            m.reopening = False
            if not self._stopped:
                self._rearm()

    def _link_gone(self, name: str) -> None:
        """RTM_DELLINK: dynamic members on ``name`` go to FAULT and close their transport."""
        for m in list(self.members.values()):
            if m.spec.dynamic_interfaces and m.spec.interface == name and m.pending is None:
                m.pending = f"interface {name} does not exist (dynamic_interfaces)"
                self._feed(m, Unavailable(m.pending))
                _close_quietly(m.transport)

    def _link_seen(self) -> None:
        """A link or address appeared: retry the pending members."""
        assert self._loop is not None
        for m in self.members.values():
            if m.pending is not None and not m.reopening:
                task = self._loop.create_task(self._reopen(m))
                self._tasks.append(task)
                task.add_done_callback(self._forget_task)

    def _forget_task(self, task: asyncio.Task[None]) -> None:
        with contextlib.suppress(ValueError):
            self._tasks.remove(task)

    def _tracked_names(self) -> set[str]:
        return tracked_interfaces(m.spec for m in self.members.values())

    # ------------------------------------------------------------------ track_process
    def _process_specs(self) -> list[ProcessSpec]:
        out: dict[str, ProcessSpec] = {}
        for m in self.members.values():
            for ps in m.spec.processes:
                out.setdefault(ps.name, ps)
        return list(out.values())

    async def _start_processes(self) -> None:
        """(Re)build the process tracker if the tracked processes changed, scan /proc once
        and feed the states before anything starts (keepalived init_track_processes)."""
        specs = self._process_specs()
        if self.processes is not None and self.processes.specs == specs:
            return
        if self._proc_task is not None:
            self._proc_task.cancel()
            self._proc_task = None
        if not specs:
            self.processes = None
            return
        tracker = ProcessTracker(specs)
        procs = await asyncio.to_thread(read_procs, tracker.need_cmdline)
        self.processes = tracker
        self._process_changes(tracker.observe(procs, self.clock()), initial=True)
        assert self._loop is not None
        self._proc_task = self._loop.create_task(self._poll_processes(tracker))

    def _process_changes(self, changes: list[tuple[str, bool]], initial: bool = False) -> None:
        for name, up in changes:
            if not initial:
                # keepalived vrrp_track.c process_update_track_process_status
                log.info("Quorum %s for tracked process %s", "gained" if up else "lost", name)
            for m in self.members.values():
                if any(t.name == name for t in m.spec.params.track_processes):
                    self._feed(m, ProcessResult(name, up), rearm=False)
        if changes and not self._stopped:
            self._rearm()

    async def _poll_processes(self, tracker: ProcessTracker) -> None:
        while not self._stopped:
            wait = self.process_poll_interval
            due = tracker.next_deadline
            if due is not None:
                wait = max(0.0, min(wait, due - self.clock()))
            await asyncio.sleep(wait)
            try:
                procs = await asyncio.to_thread(read_procs, tracker.need_cmdline)
            except Exception as exc:  # keep the last states
                self._error("*", f"process scan failed: {exc}")
                continue
            if self._stopped or self.processes is not tracker:
                return
            self._process_changes(tracker.observe(procs, self.clock()))

    def _watch(self, tracked: set[str]) -> None:
        assert self._loop is not None
        if self._link_task is not None:
            self._link_task.cancel()
            self._link_task = None
        self._tracked = tracked
        if tracked:
            self._link_task = self._loop.create_task(self._watch_links(tracked))

    def _start_scripts(self, m: _Member) -> None:
        assert self._loop is not None
        for t in m.script_tasks:
            t.cancel()
        m.script_tasks = [self._loop.create_task(self._run_script(m, cs))
                          for cs in m.spec.scripts]

    async def update(self, specs: Sequence[InstanceSpec], *,
                     group_notifier: Notifier | None = None) -> dict[str, list[str]]:
        """Reload to ``specs`` (see the module docstring). Returns the member names per
        outcome: {"updated": [...], "started": [...], "stopped": [...]} (an identity change
        shows as stopped + started). Raises (changing nothing) if a new socket cannot open.
        """
        async with self._update_lock:
            return await self._update(list(specs), group_notifier)

    async def _update(self, specs: list[InstanceSpec],
                      group_notifier: Notifier | None) -> dict[str, list[str]]:
        running = [Running(m.name, m.spec, m.pending is not None)
                   for m in self.members.values()]
        plan = plan_reload(running, specs)  # raises for no spec / duplicate names
        if not self._started or self._stopped:
            self.specs = specs
            if group_notifier is not None:
                self.group_notifier = group_notifier
            return {"updated": [], "started": [], "stopped": []}
        loop = self._loop
        assert loop is not None
        # 1. open every new socket first: a failure leaves the old config running
        fresh: dict[str, _Member] = {}
        swaps: dict[str, Transport] = {}
        try:
            for slot in plan.slots:
                if slot.old is None:
                    m = self._new_member(slot.spec)
                    fresh[slot.name] = m
                    await self._open_member(m)
                elif slot.new_transport:
                    old = self.members[slot.old]
                    tr = _transport_of(slot.spec, old.transport)
                    swaps[slot.name] = tr
                    await tr.open(functools.partial(self._on_packet, old))
            links = await self._link_states(set(plan.tracked)) if plan.tracked else {}
        except Exception:
            _close_all([m.transport for m in fresh.values()], swaps.values())
            await self._vmacs_down(fresh.values(), keep=self.members.values())
            raise
        if self._stopped:  # stopped while we were opening sockets
            _close_all([m.transport for m in fresh.values()], swaps.values())
            return {"updated": [], "started": [], "stopped": []}
        # 2. from here on: no await, the machines see one consistent change
        now = self.clock()
        self.reloads += 1
        outcome: dict[str, list[str]] = {"updated": [], "started": list(plan.start),
                                         "stopped": []}
        for name in plan.stop:  # gone, or identity changed: stop like stop() does
            m = self.members[name]
            for t in m.script_tasks:
                t.cancel()
            for act in m.machine.shutdown(now):
                self._do(m, act)
            _close_quietly(m.transport)
            self._queue.put_nowait((m, _Close()))  # also closes its notifier, after STOP
            outcome["stopped"].append(m.name)
            log.info("(%s) removed on reload", m.name)
        members: dict[str, _Member] = {}
        kept: list[tuple[_Member, InstanceSpec]] = []
        for slot in plan.slots:
            if slot.old is None:
                members[slot.name] = fresh[slot.name]
                continue
            old = self.members[slot.old]
            if slot.name in swaps:
                _close_quietly(old.transport)
                _keep_counts(old)
                old.transport = swaps[slot.name]
                old.machine.set_primary_address(old.transport.source)
            old.machine.rename(slot.name)
            members[slot.name] = old
            kept.append((old, slot.spec))
        self.members = members
        self.specs = specs
        notified = self.group.notified if self.group is not None else None
        self.group = (SyncGroup(self.sync_group_name or "group",
                                [m.machine for m in members.values()], notified=notified)
                      if len(members) > 1 or self.sync_group_name else None)
        if group_notifier is not None:
            if self.group_notifier is not None:
                self._retune_notifier(self.group_notifier, group_notifier)
            else:
                self.group_notifier = group_notifier
        for m, spec in kept:
            self._reconfigure(m, spec, now)
            outcome["updated"].append(m.name)
        for name, up in links.items():
            for m in self.members.values():
                self._feed(m, InterfaceChanged(name, up), rearm=False)
        if plan.tracked != self._tracked:
            self._watch(set(plan.tracked))
        for m in fresh.values():
            self._start_scripts(m)
            log.info("(%s) added on reload", m.name)
        if fresh and self.group is not None:
            self._execute(self.group.start(now))  # started members return nothing
        elif fresh:
            for m in fresh.values():
                self._execute([(m.name, a) for a in m.machine.start(now)])
        self._rearm()
        await self._start_processes()
        return outcome

    def _reconfigure(self, m: _Member, spec: InstanceSpec, now: float) -> None:
        old_spec = m.spec
        old_vips = m.vipset.all
        was_master = m.machine.state == State.MASTER
        m.spec = spec
        if old_spec.notifier is not None and spec.notifier is not None:
            self._retune_notifier(old_spec.notifier, spec.notifier)
            spec.notifier = old_spec.notifier  # keeps the order of scripts already queued
        elif old_spec.notifier is not None:
            old_spec.notifier.close()
        m.vipset.vips = vips_of(spec)
        m.vipset.excluded = spec.excluded
        m.expect = spec.params.expect()
        if spec.scripts != old_spec.scripts:
            self._start_scripts(m)
        if self.group is not None:
            pairs = self.group.handle(m.name, Reconfigure(spec.params), now)
        else:
            pairs = [(m.name, a) for a in m.machine.update(spec.params, now)]
        # the VIP edit in whole entries (reload_plan.reconfigure_actions decides it)
        self._execute(reconfigure_actions(
            m.name, pairs, old_vips, m.vipset.all, was_master=was_master,
            still_master=m.machine.state == State.MASTER))

    @staticmethod
    def _retune_notifier(old: Notifier, new: Notifier) -> None:
        old.scripts = new.scripts
        old.timeout = new.timeout
        old.default_user, old.default_group = new.default_user, new.default_group
        if old.fifos != new.fifos:
            old.close()
            old.fifos = new.fifos

    def _close_transports(self) -> None:
        for m in self.members.values():
            _close_quietly(m.transport)

    # ------------------------------------------------------------------ events in
    def _on_packet(self, m: _Member, pkt: Packet) -> None:
        if self._stopped or self.members.get(m.name) is not m:
            return  # a member being added or removed by ``update``
        vrid = codec.peek_vrid(pkt.payload)
        if vrid != m.spec.params.vrid:
            # another router's (or garbage): counted by the documented reason, not decoded
            m.discarded[codec.InvalidReason.VRID if vrid is not None
                        else codec.InvalidReason.TRUNCATED] += 1
            return
        if log.isEnabledFor(logging.DEBUG):  # the clock read is per packet: only when asked
            log.debug("packet at %.6f from %s", self.clock(), pkt.src)
        res = pkt.error or codec.decode(pkt.payload, src=pkt.src, dst=pkt.dst, ttl=pkt.ttl,
                                        expect=m.expect, ip_proto=pkt.ip_proto)
        self._feed(m, AdvertReceived(res, pkt.src))

    def _feed(self, m: _Member, event: Event, *, rearm: bool = True) -> None:
        now = self.clock()
        if self.group is not None:
            pairs = self.group.handle(m.name, event, now)
        else:
            pairs = [(m.name, a) for a in m.machine.handle(event, now)]
        self._execute(pairs)
        if rearm and not self._stopped:
            self._rearm()

    def _on_timer(self) -> None:
        self._timer = None
        if self._stopped:
            return
        now = self.clock()
        log.debug("timer at %.6f (due %.6f)", now, self._due)
        if self.group is not None:
            self._execute(self.group.tick(now))
        else:
            for m in self.members.values():
                d = m.machine.next_deadline
                if d is not None and d <= now:
                    self._execute([(m.name, a) for a in m.machine.handle(Timer(), now)])
        self._rearm()

    def _rearm(self) -> None:
        if self._loop is None:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        ds = [d for m in self.members.values() if (d := m.machine.next_deadline) is not None]
        if not ds:
            return
        self._due = min(ds)
        delay = max(0.0, self._due - self.clock())
        self._timer = self._loop.call_at(self._loop.time() + delay, self._on_timer)

    async def _link_states(self, names: set[str]) -> dict[str, bool]:
        from pyroute2 import AsyncIPRoute

        out = {n: False for n in names}
        async with AsyncIPRoute() as ipr:
            async for msg in await ipr.link("dump"):
                name = msg.get_attr("IFLA_IFNAME")
                if name in out:
                    out[name] = msg["flags"] & (IFF_UP | IFF_RUNNING) == IFF_UP | IFF_RUNNING
        return out

    async def _watch_links(self, names: set[str]) -> None:
        from pyroute2 import AsyncIPRoute
        from pyroute2.netlink.rtnl import RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR, RTMGRP_LINK

        ipr = AsyncIPRoute()
        try:
            await ipr.bind(groups=RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR)
            # a change between the first dump and bind() would be missed: read again
            for name, up in (await self._link_states(names)).items():
                for m in self.members.values():
                    self._feed(m, InterfaceChanged(name, up))
            self._link_seen()  # dynamic_interfaces: one may have appeared meanwhile
            while True:
                async for msg in ipr.get():
                    if msg["event"] == "RTM_NEWADDR":  # dynamic_interfaces: an address came
                        self._link_seen()
                        continue
                    name = msg.get_attr("IFLA_IFNAME")
                    if name not in names:
                        continue
                    if msg["event"] == "RTM_DELLINK":
                        up = False
                        self._link_gone(name)
                    elif msg["event"] == "RTM_NEWLINK":
                        up = msg["flags"] & (IFF_UP | IFF_RUNNING) == IFF_UP | IFF_RUNNING
                        self._link_seen()
                    else:
                        continue
                    for m in self.members.values():
                        self._feed(m, InterfaceChanged(name, up))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # netlink gone: report, keep the last known states
            self._error("*", f"link monitor stopped: {exc}")
        finally:
            ipr.close()

    async def _run_script(self, m: _Member, cs: CheckScript) -> None:
        """One vrrp_script through the one script runner (lvsd.scriptrun: no shell, the
        default-user rule, SIGTERM/SIGKILL of its process group at the timeout). keepalived
        vrrp_scheduler.c vrrp_script_thread / vrrp_script_child_thread: started every
        ``interval`` from the previous start, timeout default the interval, success is exit 0;
        a timeout or a signal is a failure; "Script `NAME` now returning N" on a change."""
        timeout = cs.timeout if cs.timeout else cs.interval
        # enable_script_security travels with the instance's notifier (config global_defs)
        security = m.spec.notifier.security if m.spec.notifier is not None else False
        runner = ScriptRunner(security=security)
        last: int | None = None
        while not self._stopped:
            t0 = time.monotonic()
            out = await runner.run(cs.script, timeout=timeout,
                                   log=functools.partial(self._error, m.name))
            if not out.ran:
                self._error(m.name, f"vrrp_script {cs.name}: cannot run: {out.error}")
            elif out.status is not None and out.status != last:
                log.info("Script `%s` now returning %d", cs.name, out.status)
                last = out.status
            if self._stopped:
                return
            self._feed(m, ScriptResult(cs.name, out.ok))
            await asyncio.sleep(max(0.0, t0 + cs.interval - time.monotonic()))

    # ------------------------------------------------------------------ actions out
    def _execute(self, pairs: Sequence[tuple[str, Action | ChangeVips]]) -> None:
        for name, act in pairs:
            if isinstance(act, NotifyGroup):  # the group's (machine.SyncGroup decides it)
                self._queue.put_nowait((None, act))
            else:
                self._do(self.members[name], act)

    def _do(self, m: _Member, act: Action | ChangeVips) -> None:
        if isinstance(act, SendAdvert):
            self._send(m, act)  # at once: adverts are timing-critical and never block
        elif isinstance(act, BecomeMaster | BecomeBackup | BecomeFault):
            self._state_event(m, act)
        elif isinstance(act, PriorityChanged):
            # keepalived vrrp_track.c vrrp_set_effective_priority
            log.info("(%s) Changing effective priority from %d to %d", m.name, act.old, act.new)
        else:
            self._queue.put_nowait((m, act))

    def _send(self, m: _Member, act: SendAdvert) -> None:
        if m.pending is not None:
            return  # dynamic_interfaces: the interface is gone, nothing to send on
        tr = m.transport
        p = m.spec.params
        for dst in tr.destinations:
            try:
                payload = codec.encode(
                    act.advert, tr.source, dst, v3_checksum_as_v2=p.v3_checksum_as_v2,
                    old_unicast_checksum=p.old_unicast_checksum and not dst.is_multicast)
            except ValueError as exc:
                self._error(m.name, f"cannot encode advert: {exc}")
                return
            tr.send(payload, dst)

    def _state_event(self, m: _Member, act: BecomeMaster | BecomeBackup | BecomeFault) -> None:
        # Reported on the next loop turn: the VIP work queued by the same actions starts first
        # (callbacks such as the daemon's status writer must not delay a takeover).
        # Two hops: the worker's wake-up, queued after this call, runs before the report.
        assert self._loop is not None
        self._loop.call_soon(self._loop.call_soon, self._report_state, m, act)

    def _report_state(self, m: _Member, act: BecomeMaster | BecomeBackup | BecomeFault) -> None:
        state = {BecomeMaster: "MASTER", BecomeBackup: "BACKUP", BecomeFault: "FAULT"}[type(act)]
        # keepalived vrrp.c: "(VI_1) Entering MASTER STATE", the line operators' tooling greps;
        # the reason (keepalived logs its own, e.g. "Receive advertisement timeout") first
        log.info("(%s) %s", m.name, act.reason)
        log.info("(%s) Entering %s STATE", m.name, state)
        if self.on_event is not None:
            self.on_event(m.name, "state", {"state": state, "previous": act.previous.value,
                                            "reason": act.reason})

    def _error(self, name: str, message: str) -> None:
        log.warning("(%s) %s", name, message)
        if self.on_event is not None:
            self.on_event(name, "error", {"message": message})

    async def _work(self) -> None:
        while True:
            item = await self._queue.get()
            if item is None:
                return
            m, act = item
            try:
                if m is None:
                    if isinstance(act, NotifyGroup) and self.group_notifier is not None:
                        self.group_notifier.notify(act.state, None)
                else:
                    await self._work_one(m, act)
            except Exception as exc:  # never let one failure stop the worker
                self._error(m.name if m is not None else self.sync_group_name or "group",
                            f"{type(act).__name__} failed: {exc}")

    async def _work_one(self, m: _Member, act: Action | ChangeVips | _Close) -> None:
        """One queued action of ``m``, in the machine's order: keepalived vrrp.c
        vrrp_state_become_master adds the VIPs (vrrp_handle_ipaddress), then sends the
        gratuitous ARPs/NAs (vrrp_send_link_update), then runs the notifies
        (send_instance_notifies); vrrp_state_leave_master removes them (vrrp_restore_interface)
        before its notifies. So a notify script always sees the addresses in place."""
        if isinstance(act, AddVips):
            log.debug("adding VIPs at %.6f", self.clock())
            res = await m.vipset.add_all()
            m.vips_held = not res.failed
            self._vip_failures(m, res)
            self._vips_added(m, res)
            log.debug("VIPs added at %.6f", self.clock())
        elif isinstance(act, RemoveVips):
            # keepalived vrrp.c vrrp_restore_interface -> vrrp_remove_delayed_arp
            self._cancel_garps(m)
            m.vips_held = False
            self._vip_failures(m, await m.vipset.remove_all())
        elif isinstance(act, SendGratuitous):
            if m.vips_held:  # never announce addresses this node does not hold
                self._garp(m, act)
        elif isinstance(act, RunNotify):
            if m.spec.notifier is not None:
                m.spec.notifier.notify(act.state, act.priority)
        elif isinstance(act, ChangeVips):
            if act.remove:
                self._vip_failures(m, await m.vipset.remove(act.remove))
            if act.add:
                res = await m.vipset.add(act.add)
                if res.failed:
                    m.vips_held = False
                self._vip_failures(m, res)
                self._vips_added(m, res)
        elif isinstance(act, _Close):
            self._cancel_garps(m)
            m.garp.close()
            m.vipset.close()
            if m.spec.notifier is not None:  # after its notify STOP, queued before
                m.spec.notifier.close()
            await self._vmacs_down([m], keep=self.members.values())

    def _vips_added(self, m: _Member, res: VipResult) -> None:
        """Hand the outcome of an add to the machine (``VipsAdded``): a MASTER without its
        VIPs goes to FAULT and retries after a back-off (machine docstring)."""
        if self._stopped or self.members.get(m.name) is not m:
            return
        error = None
        if res.failed:
            first = next(iter(res.failed.values()))
            more = len(res.failed) - 1
            error = first + (f" (and {more} more)" if more else "")
        self._feed(m, VipsAdded(error))

    def _vip_failures(self, m: _Member, res: VipResult) -> None:
        for cidr, why in res.failed.items():
            m.vip_errors[cidr] += 1
            self._error(m.name, why)

    def _garp(self, m: _Member, act: SendGratuitous) -> None:
        """The first burst now; with ``garp_interval`` the others spaced by it in the
        background (keepalived "Sending/queueing gratuitous ARPs": vrrp_arp.c queues them and
        vrrp_state_become_master goes on to the notifies), cancelled when the VIPs go."""
        addrs = [*act.addresses, *(v.address for v in m.vipset.excluded)]
        gap = m.spec.garp_interval
        if gap <= 0 or act.count <= 1:
            m.garp.burst(addrs, act.count)
            return
        m.garp.burst(addrs, 1)
        assert self._loop is not None
        task = self._loop.create_task(self._garp_rest(m.garp, addrs, act.count - 1, gap))
        m.garp_tasks.add(task)
        task.add_done_callback(m.garp_tasks.discard)

    @staticmethod
    async def _garp_rest(garp: Garp, addrs: list[Any], count: int, gap: float) -> None:
        for _ in range(count):
            await asyncio.sleep(gap)
            garp.burst(addrs, 1)

    @staticmethod
    def _cancel_garps(m: _Member) -> None:
        for t in list(m.garp_tasks):
            t.cancel()

    # ------------------------------------------------------------------ status
    def status(self) -> dict[str, MemberReport]:
        """Each member's frozen report (``vrrp.report``), by instance name."""
        out: dict[str, MemberReport] = {}
        counts = self.processes.counts() if self.processes is not None else None
        for m in self.members.values():
            v = m.spec.vmac
            out[m.name] = MemberReport(
                machine=m.machine.status(),
                interface=m.spec.interface,
                transport=TransportReport(
                    kind=m.spec.transport if isinstance(m.spec.transport, str) else "custom",
                    source=str(m.transport.source),
                    destinations=tuple(str(d) for d in m.transport.destinations),
                    send_errors=int(getattr(m.transport, "send_errors", 0)),
                    filtered=int(getattr(m.transport, "filtered", 0))),
                other_vrid=m.discarded[codec.InvalidReason.VRID],
                discarded=_discards(m),
                interface_pending=m.pending,
                vmac=None if v is None else VmacReport(v.name, v.mac, v.xmit_base,
                                                       v.io_interface),
                process_counts=None if counts is None else {
                    t.name: counts.get(t.name) for t in m.spec.params.track_processes},
                garp_sent=m.garp.sent,
                vip_errors=dict(m.vip_errors),
                vips_held=m.vips_held)
        return out

    def state(self, name: str | None = None) -> State:
        m = self.members[name] if name else next(iter(self.members.values()))
        return m.machine.state
