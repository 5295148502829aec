"""The events of ``GET /events``: one frozen record per kind of transition.

Theory of operation
-------------------
Whoever reports a transition (the daemon for VRRP and its lifecycle, the reload, the pool
service for real servers, quorum, actions, reconciles and alarms) builds one of these records
and hands it to :meth:`lvsd.status.events.EventBus.publish`; the bus rejects anything else. The
record's class names the event type (:attr:`EventPayload.TYPE`, the SSE ``event:`` line), its
fields are the JSON payload, in declaration order (:meth:`EventPayload.data`; tuples become
lists, mappings objects). ``dropped`` is the one type the bus makes itself, for a subscriber
too slow to keep up.

:data:`EVENT_TYPES` is the list ``docs/operations.md`` documents (a unit test holds them equal,
and holds every publish site to a record of this module).

A real server has one shape in every event, as in ``/status``'s checkers: ``vs`` the virtual
server's identity (``192.0.2.100:80/TCP``, ``fwmark 1/IPv4``, ``group WEB/TCP``) and ``rs``
its ``addr:port`` (an IPv6 address in brackets), never the two joined in one string.

=============  =====================================================================
type           record and fields
=============  =====================================================================
vrrp           :class:`VrrpStateChange` instance, old, new, reason
vrrp_error     :class:`VrrpError` instance, message
realserver     :class:`RealServerChange` vs, rs, alive, reason, failed_checkers
quorum         :class:`QuorumChange` vs, quorum_up, sorry_active, live_weight, alive
action         :class:`ActionTaken` kind, vs, rs, message
reconcile      :class:`Reconciled` reason, ops, repairs
alarm          :class:`Alarm` alarms
reload         :class:`ReloadRejected` ok (false), errors, generation;
               :class:`ReloadApplied` ok (true), generation, diagnostics, warnings,
               changes
lifecycle      :class:`Lifecycle` what, config_id, mode
bgp_announce   :class:`BgpAnnounceEvent` name, address, reason
bgp_withdraw   :class:`BgpWithdraw` name, address, reason
bgp_session    :class:`BgpSession` neighbor, previous, state
dropped        :class:`Dropped` count
=============  =====================================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

__all__ = ["EVENT_TYPES", "PAYLOADS", "ActionTaken", "Alarm", "BgpAnnounceEvent", "BgpSession",
           "BgpWithdraw", "Dropped", "EventPayload",
           "Lifecycle", "QuorumChange", "RealServerChange", "Reconciled", "ReloadApplied",
           "ReloadRejected", "VrrpError", "VrrpStateChange"]


def _plain(v: object) -> object:
    if isinstance(v, tuple | list):
        return [_plain(x) for x in v]
    if isinstance(v, Mapping):
        return {k: _plain(x) for k, x in v.items()}
    return v


@dataclass(frozen=True, slots=True)
class EventPayload:
    """Base of every event record: ``TYPE`` is the event type, the fields its payload."""

    TYPE: ClassVar[str] = ""

    def data(self) -> dict[str, Any]:
        """The JSON payload: the fields in declaration order, tuples as lists."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True, slots=True)
class VrrpStateChange(EventPayload):
    """A VRRP instance entered ``new`` (MASTER | BACKUP | FAULT) from ``old``."""

    TYPE: ClassVar[str] = "vrrp"
    instance: str
    old: str | None
    new: str | None
    reason: str | None


@dataclass(frozen=True, slots=True)
class VrrpError(EventPayload):
    """A VRRP instance's runtime error (e.g. a VIP that could not be added)."""

    TYPE: ClassVar[str] = "vrrp_error"
    instance: str
    message: str | None


@dataclass(frozen=True, slots=True)
class RealServerChange(EventPayload):
    """A real server's health changed; ``alive`` None: removed or undecided."""

    TYPE: ClassVar[str] = "realserver"
    vs: str
    rs: str  # "addr:port"
    alive: bool | None
    reason: str
    failed_checkers: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class QuorumChange(EventPayload):
    """A virtual server's quorum / sorry server state as the last plan has it."""

    TYPE: ClassVar[str] = "quorum"
    vs: str
    quorum_up: bool
    sorry_active: bool
    live_weight: int
    alive: int


@dataclass(frozen=True, slots=True)
class ActionTaken(EventPayload):
    """A plan's action (its script, if any, started in the background)."""

    TYPE: ClassVar[str] = "action"
    kind: str  # quorum_up | quorum_down | notify_up | notify_down
    vs: str
    rs: str | None  # "addr:port" as in a realserver event; None: a virtual server's action
    message: str


@dataclass(frozen=True, slots=True)
class Reconciled(EventPayload):
    """A reconcile that wrote something to the data plane."""

    TYPE: ClassVar[str] = "reconcile"
    reason: str  # start | change | drain end | sweep
    ops: tuple[str, ...]  # ipvsadm-like lines
    repairs: int


@dataclass(frozen=True, slots=True)
class Alarm(EventPayload):
    """Operations the data plane refused."""

    TYPE: ClassVar[str] = "alarm"
    alarms: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ReloadRejected(EventPayload):
    """A reload that was refused or failed while applying: the old config still runs."""

    TYPE: ClassVar[str] = "reload"
    ok: bool = field(default=False, init=False)
    errors: tuple[str, ...]
    generation: int


@dataclass(frozen=True, slots=True)
class ReloadApplied(EventPayload):
    """A reload applied; ``diagnostics`` counts by severity, ``warnings`` the non-fatal ones,
    ``changes`` what it changed, one line per item (:func:`lvsd.config.changes.config_changes`:
    virtual and real servers, VRRP instances, sync groups, scripts, global_defs)."""

    TYPE: ClassVar[str] = "reload"
    ok: bool = field(default=True, init=False)
    generation: int
    diagnostics: Mapping[str, int]
    warnings: tuple[str, ...]
    changes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Lifecycle(EventPayload):
    """The daemon's own milestones (``ready``)."""

    TYPE: ClassVar[str] = "lifecycle"
    what: str
    config_id: str
    mode: str


@dataclass(frozen=True, slots=True)
class BgpAnnounceEvent(EventPayload):
    """A ``bgp_announce`` route announced (lvsd.bgp.announce: healthy for its rise_delay)."""

    TYPE: ClassVar[str] = "bgp_announce"
    name: str
    address: str  # the route, e.g. 10.0.0.100/32
    reason: str


@dataclass(frozen=True, slots=True)
class BgpWithdraw(EventPayload):
    """A ``bgp_announce`` route withdrawn: unhealthy for its fall_delay, removed, stopping."""

    TYPE: ClassVar[str] = "bgp_withdraw"
    name: str
    address: str
    reason: str


@dataclass(frozen=True, slots=True)
class BgpSession(EventPayload):
    """A BGP session's state changed (BIRD's words: Idle, Connect, Active, OpenSent,
    OpenConfirm, Established; ``previous`` None: first seen)."""

    TYPE: ClassVar[str] = "bgp_session"
    neighbor: str
    previous: str | None
    state: str


@dataclass(frozen=True, slots=True)
class Dropped(EventPayload):
    """Made by the bus for one subscriber: it was too slow and lost ``count`` events."""

    TYPE: ClassVar[str] = "dropped"
    count: int


#: every payload record
PAYLOADS: tuple[type[EventPayload], ...] = (
    VrrpStateChange, VrrpError, RealServerChange, QuorumChange, ActionTaken, Reconciled, Alarm,
    ReloadRejected, ReloadApplied, Lifecycle, BgpAnnounceEvent, BgpWithdraw, BgpSession,
    Dropped)
#: the event types, in the order ``docs/operations.md`` lists them
EVENT_TYPES: tuple[str, ...] = tuple(dict.fromkeys(p.TYPE for p in PAYLOADS))
