"""The VRRP state machine of one virtual router instance, sans-IO (RFC 5798 §6.4 + keepalived).

API summary
-----------
``m = VrrpMachine(params)``; every call takes ``now`` (float seconds, any monotonic origin) and
returns ``list[Action]`` to execute in order:

* ``m.start(now)``                              Initialize -> Backup/Master/Fault
* ``m.receive(decoded, src, now)``              ``decoded`` is ``codec.decode``'s result
* ``m.tick(now)``                               fire every timer due at ``now``
* ``m.interface(name, up, now)``                tracked interface state (send before start too)
* ``m.script(name, ok, now)``                   one raw vrrp_script result (rise/fall applied here)
* ``m.process(name, up, now)``                  a vrrp_track_process quorum gained/lost
* ``m.unavailable(reason, now)``                the shell cannot run the instance (reason) or can
                                                again (None), e.g. its interface does not exist
* ``m.vips_added(error, now)``                  the outcome of ``AddVips`` (None: all on the
                                                interface); a failure while MASTER is a fault
* ``m.delayed_start = T``                       vrrp_startup_delay: set before ``start``
* ``m.shutdown(now)``                           priority-0 advert if master, then STOPPED
* ``m.update(params, now)``                     new parameters in place (reload), same state
* ``m.handle(event, now)``                      the same, with the ``Event`` dataclasses
* ``m.next_deadline``                           when to call ``tick`` next (None: nothing pending)
* ``m.state``, ``m.effective_priority``, ``m.counters``, ``m.status()`` (a frozen
  ``vrrp.report.InstanceReport``)

Actions (frozen dataclasses): ``SendAdvert(advert)``, ``BecomeMaster/BecomeBackup/BecomeFault
(reason, previous)``, ``AddVips(addresses)``, ``RemoveVips(addresses)``,
``SendGratuitous(addresses, count, reason)`` (GARP for IPv4, unsolicited NA for IPv6; the shell
spaces the ``count`` packets by ``vrrp_garp_interval``), ``RunNotify(state, priority)`` with
state one of MASTER, BACKUP, FAULT, STOP, MASTER_RX_LOWER_PRI, or MASTER_PRIORITY /
BACKUP_PRIORITY (``notify_priority_changes``), ``PriorityChanged(old, new)`` (for the log).

``SyncGroup(name, machines)``: keepalived's vrrp_sync_group; route member events through it
(``group.handle(member_name, event, now)`` -> ``[(member_name, action), ...]``); the group's
own notify is a ``(group_name, NotifyGroup(state))`` pair after its members' actions.

Theory of operation
-------------------
States are RFC 5798 §6.4's Initialize/Backup/Master plus keepalived's Fault, and STOPPED after
``shutdown`` (RFC 5798 returns to Initialize; keepalived calls it STOP).

``now`` is whatever monotonic clock the shell uses; ``Transition.at`` is in that clock too (the
status page converts to wall time).

Timers (see ``params``): Backup runs ``Master_Down_Timer`` (``down_timer_adverts ×
Master_Adver_Interval + Skew_Time``, RFC 5798 §6.1); Master runs ``Adver_Timer`` at its own
``advert_int``. v3 backups adopt the master's advertised interval (RFC 5798 §6.4.2); v2 adverts
with a different interval are dropped (RFC 3768 §7.1, keepalived; the codec drops them and the
machine does too, counted as ``advert_int``).

Startup (keepalived ``vrrp_init_state``): an address owner (priority 255) whose configured state
is not BACKUP becomes master at once (RFC 5798 §6.4.1). Everyone else — including ``state
MASTER`` with priority < 255 — enters BACKUP and waits a full Master_Down_Interval, so a
running master is never pre-empted blindly at boot; keepalived also force-removes the VIPs at
startup (stale addresses from a crash), hence a ``RemoveVips`` on entering BACKUP/FAULT at start.
A weight-0 tracked script that has not reported yet holds the instance in INIT (keepalived's
``num_script_init``); a tracked fault at startup enters FAULT.

Backup receiving an advert (RFC 5798 §6.4.2, keepalived ``vrrp_state_backup``):
priority 0 -> Master_Down_Timer := Skew_Time. Otherwise, if nopreempt, or the advert's priority
>= ours, or a preempt_delay is still running: accept it (adopt v3 interval, reset the timer to
Master_Down_Interval). Otherwise (preempt, lower priority) discard it: the timer keeps running
and we take over when it fires. ``preempt_delay`` (keepalived): the first lower-priority advert
starts a delay during which lower adverts are still accepted.

Master receiving an advert (RFC 5798 §6.4.3, keepalived ``vrrp_state_master_rx``): priority 0
-> send an advert at once and restart Adver_Timer. Higher priority, or equal priority from a
higher primary address -> Backup (keepalived's ``higher_prio_send_advert`` sends one advert
first). Lower priority (or equal from a lower address): keepalived deviates from the RFC's
"discard": unless ``lower_prio_no_advert`` it sends an advert at once ("forcing new election"),
sends ``garp_lower_prio_repeat`` gratuitous ARPs (and again after ``garp_lower_prio_delay``)
and runs notify MASTER_RX_LOWER_PRI. An equal-priority advert from our own address is ignored.

Becoming master: send an advert first (so the old master drops the VIPs before our GARPs,
keepalived ``vrrp_state_master_tx``), add the VIPs, a burst of ``garp_master_repeat`` GARPs,
another burst after ``garp_master_delay``, then every ``garp_master_refresh`` (if set) a burst of
``garp_master_refresh_repeat``; notify MASTER. Leaving master: remove VIPs, cancel GARPs.

Tracking changes the effective priority (see ``params``); in Backup the running down timer is
moved by the change in Skew_Time (keepalived ``vrrp_set_effective_priority``). A weight-0
tracker going down enters FAULT: a master first sends priority 0 (RFC 5798 §6.4.3 shutdown
rule, keepalived ``down_instance``). Leaving FAULT enters Backup (an address owner: Master).
Adverts received in INIT/FAULT are ignored (keepalived). Shutdown: a master sends priority 0
and removes its VIPs; notify STOP -- not for a machine that was never started (shut down
before ``start``: no state was ever announced, so no end of one is).

An ``Invalid`` only increments ``counters.invalid[reason]``; it never changes state or timers.

Deliberate difference: keepalived restarts a master's advert timer after every packet it reads
(even one it discards), so a flood of bad packets delays its adverts; here Adver_Timer restarts
only when an advert is actually sent.

Reload (``update``, keepalived ``clear_diff_vrrp``/``restore_vrrp_state``): new parameters with
the same identity keep the state, counters, learned master and tracker results. Identity is
(virtual_router_id, version, family) here plus the interface, which the shell checks
(keepalived's ``vrrp_exist`` matches vrid, family, interface and unicast source; lvsd also
restarts on a version change because the advert format changes); ``update`` refuses another
identity with ``ValueError`` (the shell restarts the instance). A master keeps MASTER whatever
its new priority (if a peer now wins, it takes over by the normal RFC 5798 §6.4.3 rules), sends
an advert at once when the advert's content changed (keepalived ``reload_master`` sends at
once) and restarts Adver_Timer at the new ``advert_int``; it removes dropped VIPs, adds new
ones and sends ``garp_master_repeat`` GARPs (+ the delayed burst) for the new ones only;
``garp_master_refresh`` is re-armed if it changed. A backup only remembers the VIPs; its
running Master_Down_Timer keeps the time already elapsed and moves by the change of
Master_Down_Interval (or of Skew_Time after a priority-0 advert), like a tracking change;
a running preempt_delay moves by the change of ``preempt_delay`` (cleared by 0 or nopreempt).
A backup whose new priority beats the master does not jump: with preemption it discards the
master's next (now lower) advert and takes over when its down timer fires (RFC 5798 §6.4.2).
v2 uses the new ``advert_int`` as Master_Adver_Interval at once (RFC 3768 §7.1: peers must
agree); a v3 backup keeps the interval it learned from the master (RFC 5798 §6.4.2). Tracked
objects keep their last known state by name (new ones start up/unknown, the shell feeds real
states); the new effective priority may enter or leave FAULT exactly as a tracking change does.

Startup delay (``vrrp_startup_delay``, keepalived vrrp_daemon.c / vrrp_scheduler.c
``vrrp_init_instance_sands``): the shell sets ``delayed_start`` (an absolute time) before
``start``. The instance starts as usual (BACKUP, notify BACKUP) and processes adverts as usual,
but until ``delayed_start`` every (re)arming of the Master_Down_Timer counts from
``delayed_start`` instead of ``now``: no takeover before ``delayed_start + Master_Down_Interval``
(or ``+ Skew_Time`` after a priority-0 advert). An address owner, which keepalived puts in BACKUP
with a 1 µs down timer (no notify), becomes master at ``delayed_start``.

Priority changes (keepalived vrrp_track.c ``vrrp_set_effective_priority``): every change of the
effective priority returns ``PriorityChanged(old, new)`` ("Changing effective priority from %d
to %d"), and with ``notify_priority_changes`` a ``RunNotify`` of MASTER_PRIORITY (in MASTER) or
BACKUP_PRIORITY (any other state): keepalived writes it to the notify FIFOs only
(vrrp_notify.c ``send_instance_priority_notifies``).

Tracked processes (``vrrp_track_process``): the shell reports quorum gained/lost
(``process_track``); weights and FAULT exactly as for scripts (keepalived vrrp_track.c
``process_update_track_process_status``); unknown until the first report (counts nothing).

Unavailable (lvsd, for ``dynamic_interfaces``): while the shell reports a reason the instance
cannot run (its interface does not exist), that reason is a fault like a tracked object down.

VIPs that cannot be added (``VipsAdded(error)``, the shell's outcome of ``AddVips``: a netlink
error such as ENOBUFS/EMFILE, or the VIP's interface gone). keepalived 2.2.7 ignores the outcome
(vrrp_ipaddress.c ``netlink_iplist`` only clears the address's ``set`` flag and vrrp.c
``vrrp_state_become_master`` goes on) and so stays MASTER without the address, sending adverts
that keep every backup from taking over: no node holds the VIP. What keepalived does when a
master's VIP disappears is the model here (keepalived_netlink.c ``netlink_if_address_filter`` ->
``set_vrrp_backup``: it leaves MASTER with a priority-0 advert so a peer takes over, and comes
back on its own). lvsd makes the failure a fault: a MASTER whose add failed enters FAULT with
the reason (``VIPs not held: ...``; priority 0, the partial VIPs removed, notify FAULT) and
leaves it after a back-off -- 1 s, doubled after every consecutive failure, at most
``VIP_RETRY_MAX`` (reset by an add that succeeds) -- into BACKUP, so the add is retried by the
next election: after Master_Down_Interval if no peer is master, never while a peer holds the
VIPs. Status shows the fault reason and the time of the next attempt.

Not implemented (documented keepalived features): the "rogue address owner" back-off when two
routers both claim priority 255 (here the RFC tie-break by address applies). IPsec-AH
authentication lives below the machine, in the transport (:mod:`lvsd.vrrp.ah`).
"""

from __future__ import annotations

import enum
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv6Address, ip_address

from lvsd.vrrp.codec import Advert, Invalid, InvalidReason, IPAddress, addresses_match
from lvsd.vrrp.params import PRIO_OWNER, VrrpParams
from lvsd.vrrp.report import InstanceCounters, InstanceReport

__all__ = [
    "Action",
    "AddVips",
    "AdvertReceived",
    "BecomeBackup",
    "BecomeFault",
    "BecomeMaster",
    "Counters",
    "Event",
    "InterfaceChanged",
    "NotifyGroup",
    "PriorityChanged",
    "ProcessResult",
    "Reconfigure",
    "RemoveVips",
    "RunNotify",
    "ScriptResult",
    "SendAdvert",
    "SendGratuitous",
    "Shutdown",
    "Start",
    "State",
    "SyncGroup",
    "Timer",
    "Transition",
    "Unavailable",
    "VipsAdded",
    "VrrpMachine",
]


_DOWN_REASON = "no advert received within master down interval"
VIP_RETRY_FIRST = 1.0  # s: FAULT after the first failed VIP add, doubled per failure
VIP_RETRY_MAX = 30.0  # s: the bound of that back-off


class State(enum.StrEnum):
    INIT = "INIT"  # RFC 5798 Initialize: created, not started (or waiting for scripts)
    BACKUP = "BACKUP"
    MASTER = "MASTER"
    FAULT = "FAULT"  # keepalived: a tracked object is down
    STOPPED = "STOPPED"  # after shutdown (RFC 5798: back to Initialize; keepalived: STOP)


# ------------------------------------------------------------------------------------ events


@dataclass(frozen=True, slots=True)
class Start:
    pass


@dataclass(frozen=True, slots=True)
class AdvertReceived:
    result: Advert | Invalid
    src: IPAddress | None = None


@dataclass(frozen=True, slots=True)
class Timer:
    pass


@dataclass(frozen=True, slots=True)
class InterfaceChanged:
    name: str
    up: bool


@dataclass(frozen=True, slots=True)
class ScriptResult:
    name: str
    ok: bool


@dataclass(frozen=True, slots=True)
class ProcessResult:
    """A tracked process (vrrp_track_process) gained (``up``) or lost its quorum."""

    name: str
    up: bool


@dataclass(frozen=True, slots=True)
class Unavailable:
    """The shell cannot run the instance (``reason``), or can again (``reason`` None)."""

    reason: str | None


@dataclass(frozen=True, slots=True)
class VipsAdded:
    """The shell's outcome of ``AddVips`` (or of a reload's added VIPs): ``error`` None when
    every address is on its interface, else why not (the real error text)."""

    error: str | None


@dataclass(frozen=True, slots=True)
class Shutdown:
    pass


@dataclass(frozen=True, slots=True)
class Reconfigure:
    """Reload: new parameters for the same instance (``VrrpMachine.update``)."""

    params: VrrpParams


Event = (Start | AdvertReceived | Timer | InterfaceChanged | ScriptResult | ProcessResult
         | Unavailable | VipsAdded | Shutdown | Reconfigure)


# ----------------------------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class SendAdvert:
    """Encode ``advert`` (codec.encode with our source and the group/peer) and send it."""

    advert: Advert

    @property
    def priority(self) -> int:
        return self.advert.priority


@dataclass(frozen=True, slots=True)
class BecomeMaster:
    reason: str
    previous: State


@dataclass(frozen=True, slots=True)
class BecomeBackup:
    reason: str
    previous: State


@dataclass(frozen=True, slots=True)
class BecomeFault:
    reason: str
    previous: State


@dataclass(frozen=True, slots=True)
class AddVips:
    addresses: tuple[IPAddress, ...]


@dataclass(frozen=True, slots=True)
class RemoveVips:
    addresses: tuple[IPAddress, ...]


@dataclass(frozen=True, slots=True)
class SendGratuitous:
    """``count`` gratuitous ARPs (IPv4) / unsolicited NAs (IPv6) for each address."""

    addresses: tuple[IPAddress, ...]
    count: int
    reason: str


@dataclass(frozen=True, slots=True)
class RunNotify:
    """Run the notify script(s) for ``state`` (MASTER/BACKUP/FAULT/STOP/MASTER_RX_LOWER_PRI)."""

    state: str
    priority: int


@dataclass(frozen=True, slots=True)
class NotifyGroup:
    """A ``SyncGroup`` entered ``state`` (MASTER/BACKUP/FAULT/STOP): run the group's notify
    scripts / FIFO line (keepalived vrrp_notify.c ``send_group_notifies``). The pair's first
    element is the group's name, not a member's."""

    state: str


@dataclass(frozen=True, slots=True)
class PriorityChanged:
    """The effective priority changed (keepalived logs "Changing effective priority")."""

    old: int
    new: int


Action = (
    SendAdvert
    | BecomeMaster
    | BecomeBackup
    | BecomeFault
    | AddVips
    | RemoveVips
    | SendGratuitous
    | RunNotify
    | PriorityChanged
    | NotifyGroup
)


# ---------------------------------------------------------------------------------- counters


@dataclass(frozen=True, slots=True)
class Transition:
    at: float
    old: State
    new: State
    reason: str


@dataclass(slots=True)
class Counters:
    """What the status page shows. ``invalid`` is keyed by the codec's ``InvalidReason``."""

    adverts_sent: int = 0
    adverts_received: int = 0
    adverts_ignored: int = 0  # valid adverts received in INIT/FAULT (keepalived ignores them)
    priority_zero_sent: int = 0
    priority_zero_received: int = 0
    lower_priority_discarded: int = 0  # backup, preempting: advert not accepted
    addr_list_mismatch: int = 0  # keepalived's warning-only VIP list check
    became_master: int = 0
    released_master: int = 0
    vip_add_failed: int = 0  # MASTER whose VIPs could not be added (FAULT, retried)
    invalid: Counter[InvalidReason] = field(default_factory=Counter)
    transitions: deque[Transition] = field(default_factory=deque)

    def report(self) -> InstanceCounters:
        """A frozen copy (``invalid`` sorted by reason)."""
        return InstanceCounters(
            adverts_sent=self.adverts_sent,
            adverts_received=self.adverts_received,
            adverts_ignored=self.adverts_ignored,
            priority_zero_sent=self.priority_zero_sent,
            priority_zero_received=self.priority_zero_received,
            lower_priority_discarded=self.lower_priority_discarded,
            addr_list_mismatch=self.addr_list_mismatch,
            became_master=self.became_master,
            released_master=self.released_master,
            vip_add_failed=self.vip_add_failed,
            invalid={r.value: n for r, n in sorted(self.invalid.items())},
            transitions=tuple(self.transitions),
        )


# ---------------------------------------------------------------------------------- tracking


class _ScriptTrack:
    """keepalived's rise/fall counter (vrrp_scheduler.c ``vrrp_script_child_thread``).

    ``result`` runs 0..rise+fall-1; OK iff ``result >= rise``. Init: ``rise-1`` with ``known``
    False (one result decides), or 0 and known-KO with ``init_fail``.
    """

    __slots__ = ("fall", "known", "result", "rise")

    def __init__(self, rise: int, fall: int, init_fail: bool) -> None:
        self.rise, self.fall = rise, fall
        self.result = 0 if init_fail else rise - 1
        self.known = init_fail

    @property
    def ok(self) -> bool | None:
        return (self.result >= self.rise) if self.known else None

    def retune(self, rise: int, fall: int) -> None:
        """New rise/fall on reload: a known result keeps its OK/KO verdict (saturated)."""
        if (rise, fall) == (self.rise, self.fall):
            return
        ok = self.ok
        self.rise, self.fall = rise, fall
        if ok is None:
            self.result = min(self.result, rise - 1)
        else:
            self.result = rise + fall - 1 if ok else 0

    def feed(self, success: bool) -> None:
        top = self.rise + self.fall - 1
        if success:
            if self.result < self.rise - 1:
                self.result += 1
            else:
                self.result = top
                self.known = True
        else:
            if self.result > self.rise:
                self.result -= 1
            else:
                if self.result == self.rise or not self.known:
                    self.known = True
                self.result = 0


# ----------------------------------------------------------------------------------- machine


class VrrpMachine:
    """One VRRP instance. See the module docstring."""

    def __init__(self, params: VrrpParams) -> None:
        self.params = params
        self.state = State.INIT
        self.wantstate = State.BACKUP
        self.primary_address: IPAddress | None = params.primary_address
        self.master_adver_int = params.advert_int
        self.master_address: IPAddress | None = None
        self.master_priority: int | None = None
        self.counters = Counters(transitions=deque(maxlen=params.transitions_kept))
        self._iface_up: dict[str, bool] = {t.name: True for t in params.track_interfaces}
        self._scripts: dict[str, _ScriptTrack] = {
            t.name: _ScriptTrack(t.rise, t.fall, t.init_fail) for t in params.track_scripts
        }
        self._procs: dict[str, bool | None] = {t.name: None for t in params.track_processes}
        self._unavailable: str | None = None
        # VIPs that could not be added: the fault reason, when to leave FAULT and retry, and
        # the consecutive failures (the back-off's exponent)
        self._vip_error: str | None = None
        self._vip_retry_at: float | None = None
        self._vip_failures = 0
        # vrrp_startup_delay: no down timer counts from before this time (set by the shell)
        self.delayed_start: float | None = None
        self.effective_priority = self._compute_priority()
        self._started = False
        self._stopped = False
        self._adver_at: float | None = None
        self._down_at: float | None = None
        self._preempt_at: float | None = None
        self._down_reason = _DOWN_REASON
        self._garp: list[tuple[float, int, str]] = []  # (when, count, reason)
        # Sync group hooks (set by SyncGroup): may this member go master now? must it stay in
        # FAULT because another member is faulty?
        self.master_gate: Callable[[], bool] | None = None
        self.fault_hold: Callable[[], bool] | None = None
        self.group_name: str | None = None

    # ------------------------------------------------------------------ public interface
    @property
    def name(self) -> str:
        return self.params.name

    @property
    def next_deadline(self) -> float | None:
        times = [t for t in (self._adver_at, self._down_at, self._vip_retry_at) if t is not None]
        times.extend(g[0] for g in self._garp)
        return min(times) if times else None

    @property
    def own_fault(self) -> bool:
        """True while a tracked object of this instance itself is down (not sync-forced)."""
        return bool(self.fault_reasons())

    def fault_reasons(self) -> list[str]:
        reasons = [self._unavailable] if self._unavailable else []
        if self._vip_error:
            reasons.append(self._vip_error)
        for t in self.params.track_interfaces:
            if t.weight == 0 and self._iface_up[t.name] == t.reverse:
                reasons.append(f"interface {t.name} {'up (reverse)' if t.reverse else 'down'}")
        for s in self.params.track_scripts:
            ok = self._scripts[s.name].ok
            if s.weight == 0 and ok is not None and ok == s.reverse:
                reasons.append(f"script {s.name} {'ok (reverse)' if s.reverse else 'failed'}")
        for tp in self.params.track_processes:
            up = self._procs[tp.name]
            if tp.weight == 0 and up is not None and up == tp.reverse:
                # keepalived vrrp_track.c: "tracked process %s quorum not achieved"
                reasons.append(f"tracked process {tp.name} quorum "
                               f"{'achieved (reverse)' if tp.reverse else 'not achieved'}")
        return reasons

    def handle(self, event: Event, now: float) -> list[Action]:
        match event:
            case Start():
                return self.start(now)
            case AdvertReceived(result, src):
                return self.receive(result, src, now)
            case Timer():
                return self.tick(now)
            case InterfaceChanged(name, up):
                return self.interface(name, up, now)
            case ScriptResult(name, ok):
                return self.script(name, ok, now)
            case ProcessResult(name, up):
                return self.process(name, up, now)
            case Unavailable(reason):
                return self.unavailable(reason, now)
            case VipsAdded(error):
                return self.vips_added(error, now)
            case Shutdown():
                return self.shutdown(now)
            case Reconfigure(params):
                return self.update(params, now)
        raise TypeError(f"not a VRRP event: {event!r}")  # pragma: no cover

    def set_primary_address(self, address: IPAddress | str | None) -> None:
        """Our primary (source) address, once the transport knows it (tie-break input)."""
        if address is None or isinstance(address, IPv4Address | IPv6Address):
            self.primary_address = address
        else:
            self.primary_address = ip_address(address)

    def start(self, now: float) -> list[Action]:
        if self._started or self._stopped:
            return []
        self._started = True
        return self._leave_init(now)

    def shutdown(self, now: float) -> list[Action]:
        if self._stopped:
            return []
        self._stopped = True
        acts: list[Action] = []
        prio = self.effective_priority
        if self.state == State.MASTER:
            acts.append(self._advert(0))
            acts.append(RemoveVips(self.params.addresses))
        self._record(now, State.STOPPED, "shutdown")
        self._clear_timers()
        self._vip_retry_at = None
        if self._started:
            # an instance that never started (its runner failed or was stopped while
            # starting) has announced no state: nothing to announce the end of
            acts.append(RunNotify("STOP", prio))
        return acts

    def rename(self, name: str) -> None:
        """A reload matched this instance under another name (the shell re-keys it first)."""
        if name != self.params.name:
            self.params = replace(self.params, name=name)

    def update(self, params: VrrpParams, now: float) -> list[Action]:
        """Take new parameters in place (reload) without leaving the state; see the docstring.

        Raises ``ValueError`` if the identity (vrid, version, family) changed.
        """
        old = self.params
        if (params.vrid, params.version, params.family) != (old.vrid, old.version, old.family):
            raise ValueError(
                f"vrrp_instance {old.name}: identity changed (vrid {old.vrid}->{params.vrid}, "
                f"version {old.version}->{params.version}, family IPv{old.family}->"
                f"IPv{params.family}): restart the instance instead"
            )
        old_prio = self.effective_priority
        old_mdi = old.master_down_interval(old_prio, self.master_adver_int)
        old_skew = old.skew_time(old_prio, self.master_adver_int)
        self.params = params
        if params.primary_address is not None:
            self.primary_address = params.primary_address
        if params.transitions_kept != old.transitions_kept:
            self.counters.transitions = deque(
                self.counters.transitions, maxlen=params.transitions_kept)
        self._iface_up = {t.name: self._iface_up.get(t.name, True)
                          for t in params.track_interfaces}
        scripts: dict[str, _ScriptTrack] = {}
        for t in params.track_scripts:
            tr = self._scripts.get(t.name)
            if tr is None:
                tr = _ScriptTrack(t.rise, t.fall, t.init_fail)
            else:
                tr.retune(t.rise, t.fall)
            scripts[t.name] = tr
        self._scripts = scripts
        self._procs = {t.name: self._procs.get(t.name) for t in params.track_processes}
        self.effective_priority = self._compute_priority()
        if not self._started or self._stopped:
            self.master_adver_int = params.advert_int
            return []
        if params.version == 2 or self.state in (State.INIT, State.FAULT, State.MASTER):
            self.master_adver_int = params.advert_int
        if self.state == State.INIT:
            return self._leave_init(now)
        added = tuple(a for a in params.addresses if a not in old.addresses)
        dropped = tuple(a for a in old.addresses if a not in params.addresses)
        reasons = self.fault_reasons()
        if reasons and self.state != State.FAULT:
            held = self.state == State.MASTER
            self.wantstate = State.FAULT
            faulted = self._enter_fault(now, "reload: " + ", ".join(reasons))
            return [RemoveVips(dropped), *faulted] if held and dropped else faulted
        if self.state == State.FAULT:
            return [] if reasons else self._leave_fault(now, "reload")
        if self.state == State.BACKUP:
            if self._down_at is not None:
                if self._down_reason == _DOWN_REASON:
                    self._down_at += self._mdi() - old_mdi
                else:  # counting Skew_Time after a priority-0 advert
                    self._down_at += self._skew() - old_skew
            if not params.preempt or params.preempt_delay <= 0:
                self._preempt_at = None
            elif self._preempt_at is not None:
                self._preempt_at += params.preempt_delay - old.preempt_delay
            return []
        # MASTER: keep it; the peers decide by the RFC rules from our next advert.
        acts: list[Action] = []
        self.master_priority = self.effective_priority
        content = (self.effective_priority != old_prio or params.addresses != old.addresses
                   or params.advert_int != old.advert_int or params.auth_type != old.auth_type
                   or params.auth_pass != old.auth_pass)
        if content:
            acts.append(self._advert(self.effective_priority))
            self._adver_at = now + params.advert_int
        if dropped:
            acts.append(RemoveVips(dropped))
        if added:
            acts.append(AddVips(added))
        if not params.addresses:
            self._garp.clear()
        if added and params.garp_master_repeat > 0:
            acts.append(SendGratuitous(added, params.garp_master_repeat, "reload: new addresses"))
            if params.garp_master_delay > 0:
                self._garp.append((now + params.garp_master_delay, params.garp_master_repeat,
                                   "delayed"))
        refresh = (params.garp_master_refresh, params.garp_master_refresh_repeat)
        if refresh != (old.garp_master_refresh, old.garp_master_refresh_repeat):
            self._garp = [g for g in self._garp if g[2] != "refresh"]
            if params.garp_master_refresh > 0 and params.garp_master_refresh_repeat > 0 \
                    and params.addresses:
                self._garp.append((now + params.garp_master_refresh,
                                   params.garp_master_refresh_repeat, "refresh"))
        return acts

    def tick(self, now: float) -> list[Action]:
        acts: list[Action] = []
        if self._stopped:
            return acts
        # Fire timers in deadline order; each handler re-arms its own timer in the future.
        for _ in range(64):  # bounded: every handler moves its deadline past ``now``
            due = self.next_deadline
            if due is None or due > now:
                break
            if self._down_at is not None and self._down_at <= now and self._down_at == due:
                acts += self._down_timer_expired(now)
            elif self._vip_retry_at is not None and self._vip_retry_at == due:
                self._vip_retry_at = None
                self._vip_error = None
                acts += self._tracking_changed(now, "retrying the VIPs")
            elif self._adver_at is not None and self._adver_at <= now and self._adver_at == due:
                self._adver_at = now + self.params.advert_int
                acts.append(self._advert(self.effective_priority))
            else:
                _when, count, reason = self._garp.pop(self._garp.index(min(self._garp)))
                if reason == "refresh":
                    self._garp.append((now + self.params.garp_master_refresh, count, reason))
                acts.append(SendGratuitous(self.params.addresses, count, reason))
        return acts

    def receive(
        self, decoded: Advert | Invalid, src: IPAddress | str | None, now: float
    ) -> list[Action]:
        if isinstance(decoded, Invalid):
            self.counters.invalid[decoded.reason] += 1
            return []
        adv = decoded
        if adv.vrid != self.params.vrid:
            self.counters.invalid[InvalidReason.VRID] += 1
            return []
        if adv.version != self.params.version:
            self.counters.invalid[InvalidReason.VERSION] += 1
            return []
        if adv.version == 2 and adv.advert_int != self.params.advert_int:
            # RFC 3768 §7.1 / keepalived: drop (also when decoded without our expectations)
            self.counters.invalid[InvalidReason.ADVERT_INT] += 1
            return []
        try:
            source = (
                src if src is None or isinstance(src, IPv4Address | IPv6Address)
                else ip_address(src)
            )
        except ValueError:
            self.counters.invalid[InvalidReason.FAMILY] += 1
            return []
        if self._stopped or self.state in (State.INIT, State.FAULT, State.STOPPED):
            self.counters.adverts_ignored += 1
            return []
        self.counters.adverts_received += 1
        if adv.priority == 0:
            self.counters.priority_zero_received += 1
        if not addresses_match(adv, self.params.addresses):
            self.counters.addr_list_mismatch += 1
        if self.state == State.BACKUP:
            return self._backup_rx(adv, source, now)
        return self._master_rx(adv, source, now)

    def interface(self, name: str, up: bool, now: float) -> list[Action]:
        if name not in self._iface_up or self._iface_up[name] == up:
            return []
        self._iface_up[name] = up
        return self._tracking_changed(now, f"interface {name} {'up' if up else 'down'}")

    def script(self, name: str, ok: bool, now: float) -> list[Action]:
        tr = self._scripts.get(name)
        if tr is None:
            return []
        before = tr.ok
        tr.feed(ok)
        if tr.ok == before:
            return []
        return self._tracking_changed(now, f"script {name} {'ok' if tr.ok else 'failed'}")

    def process(self, name: str, up: bool, now: float) -> list[Action]:
        if name not in self._procs or self._procs[name] == up:
            return []
        self._procs[name] = up
        return self._tracking_changed(
            now, f"tracked process {name} quorum {'gained' if up else 'lost'}")

    def unavailable(self, reason: str | None, now: float) -> list[Action]:
        if reason == self._unavailable:
            return []
        self._unavailable = reason
        return self._tracking_changed(now, reason or "available again")

    def vips_added(self, error: str | None, now: float) -> list[Action]:
        """The outcome of ``AddVips``: see "VIPs that cannot be added" in the docstring."""
        if error is None:
            if self.state == State.MASTER:
                self._vip_failures = 0
            return []
        if self._stopped or self.state != State.MASTER:
            return []  # a late outcome: the VIPs are being removed anyway
        self.counters.vip_add_failed += 1
        delay = min(VIP_RETRY_MAX, VIP_RETRY_FIRST * 2.0 ** self._vip_failures)
        self._vip_failures += 1
        self._vip_error = f"VIPs not held: {error}"
        self._vip_retry_at = now + delay
        return self._tracking_changed(now, f"{self._vip_error} (retry in {delay:g} s)")

    @property
    def vip_retry_at(self) -> float | None:
        """When FAULT for VIPs not held ends and the add is retried (None: no such fault)."""
        return self._vip_retry_at

    def force(self, target: State, now: float, reason: str) -> list[Action]:
        """Move to ``target`` because a sync group says so (keepalived vrrp_sync_*)."""
        if self._stopped or not self._started or self.state in (target, State.INIT):
            return []
        if target == State.FAULT:
            self.wantstate = State.FAULT
            return self._enter_fault(now, reason)
        if target == State.BACKUP:
            self.wantstate = State.BACKUP
            if self.state == State.FAULT and self.own_fault:
                return []
            return self._enter_backup(now, reason)
        if target == State.MASTER and self.state == State.BACKUP:
            self.wantstate = State.MASTER
            return self._become_master(now, reason)
        return []

    def status(self) -> InstanceReport:
        """This machine at this moment, as a frozen record (times on the machine's clock)."""
        p = self.params
        return InstanceReport(
            name=p.name,
            vrid=p.vrid,
            version=p.version,
            state=self.state,
            wantstate=self.wantstate,
            base_priority=p.priority,
            effective_priority=self.effective_priority,
            advert_int=p.advert_int,
            master_adver_int=self.master_adver_int,
            master_address=str(self.master_address) if self.master_address else None,
            master_priority=self.master_priority,
            primary_address=str(self.primary_address) if self.primary_address else None,
            family=p.family,
            addresses=tuple(str(a) for a in p.addresses),
            vips_held=self.state == State.MASTER,  # as far as the machine knows
            sync_group=self.group_name,
            fault_reasons=tuple(self.fault_reasons()),
            tracked_processes=dict(self._procs),
            startup_delay_until=self.delayed_start,
            next_deadline=self.next_deadline,
            counters=self.counters.report(),
            vip_retry_at=self._vip_retry_at,
        )

    # ------------------------------------------------------------------ helpers
    def _compute_priority(self) -> int:
        p = self.params
        if p.priority == PRIO_OWNER:
            return PRIO_OWNER  # keepalived: never change an address owner's priority
        total = p.priority
        for t in p.track_interfaces:
            if t.weight:
                total += _contribution(t.weight, t.reverse, self._iface_up[t.name])
        for s in p.track_scripts:
            if s.weight:
                total += _contribution(s.weight, s.reverse, self._scripts[s.name].ok)
        for tp in p.track_processes:
            if tp.weight:
                total += _contribution(tp.weight, tp.reverse, self._procs[tp.name])
        return max(1, min(PRIO_OWNER - 1, total))

    def _down_base(self, now: float) -> float:
        """When a down timer armed at ``now`` starts counting (keepalived
        vrrp_init_instance_sands: from ``vrrp_delayed_start_time`` until it has passed)."""
        d = self.delayed_start
        return d if d is not None and d > now else now

    def _skew(self) -> float:
        return self.params.skew_time(self.effective_priority, self.master_adver_int)

    def _mdi(self) -> float:
        return self.params.master_down_interval(self.effective_priority, self.master_adver_int)

    def _advert(self, priority: int) -> SendAdvert:
        p = self.params
        self.counters.adverts_sent += 1
        if priority == 0:
            self.counters.priority_zero_sent += 1
        return SendAdvert(
            Advert(
                version=p.version,
                vrid=p.vrid,
                priority=priority,
                advert_int=p.advert_int,
                addresses=p.addresses,
                auth_type=p.auth_type,
                auth_data=p.auth_pass,
            )
        )

    def _record(self, now: float, new: State, reason: str) -> None:
        old = self.state
        self.state = new
        self.counters.transitions.append(Transition(now, old, new, reason))

    def _clear_timers(self) -> None:
        self._adver_at = self._down_at = self._preempt_at = None
        self._down_reason = _DOWN_REASON
        self._garp.clear()

    def _group_holds_fault(self) -> bool:
        """Another member of our sync group has its own fault (keepalived: group in FAULT)."""
        return self.fault_hold is not None and self.fault_hold()

    def _starts_as_owner(self) -> bool:
        """RFC 5798 §6.4.1: an address owner not configured BACKUP goes straight to Master."""
        return self.params.is_owner and self.params.initial_state != "BACKUP"

    def _scripts_pending(self) -> bool:
        return any(
            s.weight == 0 and self._scripts[s.name].ok is None for s in self.params.track_scripts
        )

    def _cmp_source(self, src: IPAddress | None) -> int:
        """>0 if ``src`` is a higher address than ours, <0 lower, 0 equal/unknown."""
        mine = self.primary_address
        if src is None or mine is None or src.version != mine.version:
            return 0
        a, b = int(src), int(mine)
        return (a > b) - (a < b)

    # ------------------------------------------------------------------ transitions
    def _leave_init(self, now: float) -> list[Action]:
        if self._scripts_pending():
            return []  # keepalived num_script_init: wait for the first script results
        reasons = self.fault_reasons()
        if reasons:
            self.wantstate = State.FAULT
            return [RemoveVips(self.params.addresses),
                    *self._enter_fault(now, "startup: " + ", ".join(reasons))]
        if self._group_holds_fault():
            # A sync group member is faulty: the whole group is in FAULT (keepalived).
            return [RemoveVips(self.params.addresses),
                    *self._enter_fault(now, "startup: sync group member in FAULT")]
        if self._starts_as_owner():
            self.wantstate = State.MASTER
            if self._down_base(now) > now:
                # keepalived vrrp_init_state: an owner enters BACKUP with a 1 us down timer
                # (no notify) -- which vrrp_startup_delay defers to the end of the delay
                acts = [RemoveVips(self.params.addresses),
                        *self._enter_backup(now, "startup as address owner: startup delay",
                                            notify=False)]
                self._down_at = self._down_base(now)
                self._down_reason = "startup as address owner (priority 255), after delay"
                self.wantstate = State.MASTER
                return acts
            return self._become_master(now, "startup as address owner (priority 255)")
        return [RemoveVips(self.params.addresses), *self._enter_backup(now, "startup")]

    def _become_master(self, now: float, reason: str) -> list[Action]:
        p = self.params
        prev = self.state
        # Send the advert first: the old master drops the VIPs before our GARPs land.
        acts: list[Action] = [self._advert(self.effective_priority)]
        self._record(now, State.MASTER, reason)
        self.wantstate = State.MASTER
        self.counters.became_master += 1
        self.master_adver_int = p.advert_int
        self.master_address = self.primary_address
        self.master_priority = self.effective_priority
        self._clear_timers()
        self._adver_at = now + p.advert_int
        acts.append(BecomeMaster(reason, prev))
        acts.append(AddVips(p.addresses))
        if p.garp_master_repeat > 0 and p.addresses:
            acts.append(SendGratuitous(p.addresses, p.garp_master_repeat, "master"))
            if p.garp_master_delay > 0:
                self._garp.append((now + p.garp_master_delay, p.garp_master_repeat, "delayed"))
        if p.garp_master_refresh > 0 and p.addresses and p.garp_master_refresh_repeat > 0:
            self._garp.append(
                (now + p.garp_master_delay + p.garp_master_refresh,
                 p.garp_master_refresh_repeat, "refresh")
            )
        acts.append(RunNotify("MASTER", self.effective_priority))
        return acts

    def _enter_backup(self, now: float, reason: str, *, notify: bool = True) -> list[Action]:
        prev = self.state
        acts: list[Action] = [BecomeBackup(reason, prev)]
        if prev == State.MASTER:
            acts.append(RemoveVips(self.params.addresses))
            self.counters.released_master += 1
        elif prev == State.FAULT:
            self.master_adver_int = self.params.advert_int
        self._record(now, State.BACKUP, reason)
        self.wantstate = State.BACKUP
        self._clear_timers()
        self._down_at = self._down_base(now) + self._mdi()
        if notify:
            acts.append(RunNotify("BACKUP", self.effective_priority))
        return acts

    def _enter_fault(self, now: float, reason: str) -> list[Action]:
        prev = self.state
        acts: list[Action] = []
        if prev == State.MASTER:
            acts.append(self._advert(0))  # RFC 5798 §6.4.3 / keepalived down_instance
        acts.append(BecomeFault(reason, prev))
        if prev == State.MASTER:
            acts.append(RemoveVips(self.params.addresses))
            self.counters.released_master += 1
        self._record(now, State.FAULT, reason)
        self._clear_timers()
        self.master_adver_int = self.params.advert_int
        acts.append(RunNotify("FAULT", self.effective_priority))
        return acts

    def _down_timer_expired(self, now: float) -> list[Action]:
        self._down_at = None
        self.wantstate = State.MASTER
        if self.master_gate is not None and not self.master_gate():
            # keepalived vrrp_sync_can_goto_master: wait for the rest of the group.
            self._down_at = self._down_base(now) + self._mdi()
            return []
        return self._become_master(now, self._down_reason)

    def _tracking_changed(self, now: float, what: str) -> list[Action]:
        old_prio = self.effective_priority
        old_skew = self._skew()
        self.effective_priority = self._compute_priority()
        if not self._started or self._stopped:
            return []
        acts: list[Action] = []
        if self.effective_priority != old_prio:
            acts.append(PriorityChanged(old_prio, self.effective_priority))
            if self.params.notify_priority_changes:
                # keepalived vrrp_notify.c send_instance_priority_notifies (FIFO only)
                st = "MASTER_PRIORITY" if self.state == State.MASTER else "BACKUP_PRIORITY"
                acts.append(RunNotify(st, self.effective_priority))
        if self.state == State.INIT:
            return acts + self._leave_init(now)
        reasons = self.fault_reasons()
        if reasons and self.state != State.FAULT:
            self.wantstate = State.FAULT
            return acts + self._enter_fault(now, what)
        if not reasons and self.state == State.FAULT:
            return acts + self._leave_fault(now, what)
        moved = self.effective_priority != old_prio and self.state == State.BACKUP
        if moved and self._down_at is not None:
            self._down_at += self._skew() - old_skew
        return acts

    def _leave_fault(self, now: float, what: str) -> list[Action]:
        """No own fault left: Backup (an address owner: Master), unless the sync group holds
        this member in FAULT."""
        if self._group_holds_fault():
            return []
        if self._starts_as_owner():
            return self._become_master(now, f"{what}: fault cleared, address owner")
        return self._enter_backup(now, f"{what}: fault cleared")

    # ------------------------------------------------------------------ receive paths
    def _backup_rx(self, adv: Advert, src: IPAddress | None, now: float) -> list[Action]:
        p = self.params
        if adv.priority == 0:
            # RFC 5798 §6.4.2: the master is going away; take over after Skew_Time.
            self._down_at = self._down_base(now) + self._skew()
            self._down_reason = f"priority 0 advert from {src}: took over after Skew_Time"
            return []
        delaying = p.preempt_delay > 0 and (self._preempt_at is None or self._preempt_at > now)
        if not p.preempt or adv.priority >= self.effective_priority or delaying:
            if p.version == 3:
                self.master_adver_int = adv.advert_int  # RFC 5798 §6.4.2
            self._down_at = self._down_base(now) + self._mdi()
            self._down_reason = _DOWN_REASON
            self.master_address = src
            self.master_priority = adv.priority
            self.wantstate = State.BACKUP
            if p.preempt_delay > 0:
                if adv.priority >= self.effective_priority:
                    self._preempt_at = None
                elif self._preempt_at is None:
                    self._preempt_at = now + p.preempt_delay
            return []
        # Preempting: discard the lower-priority advert; the down timer keeps running.
        self.counters.lower_priority_discarded += 1
        self.master_address = src
        return []

    def _master_rx(self, adv: Advert, src: IPAddress | None, now: float) -> list[Action]:
        p = self.params
        mine = self.effective_priority
        cmp = self._cmp_source(src)
        if adv.priority == 0:
            # RFC 5798 §6.4.3: send an advert at once and restart Adver_Timer.
            self._adver_at = now + p.advert_int
            return [self._advert(mine)]
        if adv.priority > mine or (adv.priority == mine and cmp > 0):
            acts: list[Action] = []
            if p.higher_prio_send_advert:
                acts.append(self._advert(mine))
            if p.version == 3:
                self.master_adver_int = adv.advert_int
            why = (
                f"higher priority {adv.priority} advert from {src}"
                if adv.priority > mine
                else f"equal priority {adv.priority} advert from higher address {src}"
            )
            acts += self._enter_backup(now, why)
            self.master_address = src
            self.master_priority = adv.priority
            return acts
        if adv.priority == mine and cmp == 0:
            # Our own advert looped back, or no way to order the addresses (own address not
            # known yet, or another family): ignore, as keepalived does (it only warns).
            return []
        # Lower priority (or equal from a lower address): keepalived "forcing new election".
        acts = []
        if not p.lower_prio_no_advert:
            self._adver_at = now + p.advert_int
            acts.append(self._advert(mine))
        rep = p.lower_prio_repeat
        if rep > 0 and p.addresses:
            acts.append(SendGratuitous(p.addresses, rep, "lower priority advert"))
            if p.lower_prio_delay > 0:
                self._garp.append((now + p.lower_prio_delay, rep, "lower priority delayed"))
        acts.append(RunNotify("MASTER_RX_LOWER_PRI", mine))
        return acts


def _contribution(weight: int, reverse: bool, up: bool | None) -> int:
    """keepalived: W>0 counts while up, W<0 while down; reverse negates; unknown counts 0."""
    if up is None:
        return 0
    mult = -1 if reverse else 1
    return (max(weight, 0) if up else min(weight, 0)) * mult


# ---------------------------------------------------------------------------------- sync group


class SyncGroup:
    """keepalived's ``vrrp_sync_group``: members change state together (vrrp_sync.c).

    * a member entering FAULT takes every other member to FAULT (a master first sends
      priority 0); the group leaves FAULT (to BACKUP) only when no member is faulty;
    * a member whose down timer fires becomes master only if every other member also wants
      master ("prefer backup state to avoid thrashing"); it then takes the others to MASTER;
    * a master stepping down to BACKUP takes the other masters to BACKUP.

    Route every member event through ``handle``/``tick``; results are ``(member, action)``.

    Group notify (the decision is here, the shell only runs it): whenever the group's state
    (``state``) differs from the last one notified, once every member's actions for the
    event are out, the group emits ``(name, NotifyGroup(state))`` -- keepalived vrrp_sync.c
    ``vrrp_sync_master``/``vrrp_sync_backup``/``vrrp_sync_fault`` move the members first, then
    ``send_group_notifies``. INIT is never notified; the first notify is the group's startup
    BACKUP or FAULT (vrrp_scheduler.c ``vrrp_init_state``); STOP once every member stopped
    (vrrp_notify.c ``notify_shutdown``). ``notified`` carries the last notified state over
    when a reload rebuilds the group, so an unchanged state is not notified again.
    """

    def __init__(self, name: str, members: Sequence[VrrpMachine], *,
                 notified: State | None = None) -> None:
        if len({m.name for m in members}) != len(members):
            raise ValueError(f"vrrp_sync_group {name}: duplicate member names")
        self.name = name
        self.notified = notified
        self.members = {m.name: m for m in members}
        for m in members:
            m.master_gate = self._gate_for(m)
            m.fault_hold = self._hold_for(m)
            m.group_name = name

    def _gate_for(self, m: VrrpMachine) -> Callable[[], bool]:
        def gate() -> bool:
            others = [o for o in self.members.values() if o is not m]
            if any(o.state == State.MASTER for o in others):
                return True
            return all(o.wantstate == State.MASTER for o in others)

        return gate

    def _hold_for(self, m: VrrpMachine) -> Callable[[], bool]:
        def hold() -> bool:
            return any(o.own_fault for o in self.members.values() if o is not m)

        return hold

    @property
    def next_deadline(self) -> float | None:
        times = [d for m in self.members.values() if (d := m.next_deadline) is not None]
        return min(times) if times else None

    @property
    def state(self) -> State:
        """FAULT if any member is, else MASTER if any is, else BACKUP if any is, else STOPPED
        if every member is, else INIT."""
        states = {m.state for m in self.members.values()}
        for s in (State.FAULT, State.MASTER, State.BACKUP):
            if s in states:
                return s
        return State.STOPPED if states == {State.STOPPED} else State.INIT

    def _notify(self) -> list[tuple[str, Action]]:
        """``NotifyGroup`` if the group's state changed since the last notify (class doc)."""
        st = self.state
        if st == State.INIT or st == self.notified:
            return []
        self.notified = st
        return [(self.name, NotifyGroup("STOP" if st == State.STOPPED else st.value))]

    def start(self, now: float) -> list[tuple[str, Action]]:
        out: list[tuple[str, Action]] = []
        for m in self.members.values():
            out += [(m.name, a) for a in m.start(now)]
        faulty = [m for m in self.members.values() if m.state == State.FAULT]
        if faulty:
            out += self._propagate(faulty[0], State.FAULT, now)
        return out + self._notify()

    def tick(self, now: float) -> list[tuple[str, Action]]:
        out: list[tuple[str, Action]] = []
        for m in self.members.values():
            d = m.next_deadline
            if d is not None and d <= now:
                out += self.handle(m.name, Timer(), now)
        return out

    def handle(self, member: str, event: Event, now: float) -> list[tuple[str, Action]]:
        m = self.members[member]
        old = m.state
        out = [(m.name, a) for a in m.handle(event, now)]
        new = m.state
        if new == old:
            return out  # no member moved (they only move with it): the group did not either
        out += self._propagate(m, new, now, old)
        return out + self._notify()

    def _propagate(
        self, m: VrrpMachine, new: State, now: float, old: State | None = None
    ) -> list[tuple[str, Action]]:
        out: list[tuple[str, Action]] = []
        why = f"sync group {self.name}: {m.name} {new.value}"
        for o in self.members.values():
            if o is m:
                continue
            if new in (State.FAULT, State.MASTER):
                out += [(o.name, a) for a in o.force(new, now, why)]
            elif new == State.BACKUP and old in (State.MASTER, State.FAULT) and (
                o.state == State.MASTER or (o.state == State.FAULT and not o.own_fault)
            ):
                out += [(o.name, a) for a in o.force(State.BACKUP, now, why)]
        return out
