"""The pool planner: config + health states -> the table IPVS must hold, and what to run.

Theory of operation
-------------------
The planner is a plain object, fed the configuration once (and again on reload) and then, on
every health change, the current ``Mapping[RealServerId, RealServerHealth]`` plus ``now``. Each
:meth:`Planner.plan` call returns a :class:`Plan`: the complete desired :data:`Table`, a
:class:`VsState` per virtual server (quorum up/down, sorry server active, live weight) and the
:class:`Action` values to run (quorum_up / quorum_down scripts, notify_up / notify_down of real
servers) and the transitions since the previous plan (:class:`QuorumChange`,
:class:`DrainStart`, :class:`DrainEnd`). It never touches a data plane, a clock or a process:
the reconciler programs the table, the pool service (:mod:`lvsd.pool.service`) runs the actions
and reports the transitions. It keeps just enough state between calls to reproduce
keepalived's edge-triggered behaviour (quorum hysteresis, notifies on transitions only).
:meth:`Planner.shutdown` gives the scripts keepalived's ``omega`` runs on stop.

Services (keepalived ``check/ipwrapper.c`` / ``ipvswrapper.c``)
  * ``virtual_server IP PORT`` -> one address service; ``virtual_server fwmark N`` -> one fwmark
    service of the virtual server's family; ``virtual_server group NAME`` -> one service per
    address of every ``A-B PORT`` range and one per fwmark of the group (expanded here).
  * Scheduler, scheduler flags, persistence timeout/granularity come from the virtual server.
  * A destination's port is the real server's port for NAT; for DR and TUN it is the service's
    port (the group entry's port for a group range, 0 for fwmark services), as keepalived does.
    A NAT real server without a port uses the service's port.
  * TUN options map to the kernel's tunnel type (ipip 0, gue 1, gre 2), port and csum flags
    (nocsum 0, csum 1, remcsum 2).

Real servers
  * A server missing from the health mapping has not been checked yet. keepalived adds every
    such server to the pool before its first check, at its configured weight, *unless* ``alpha``
    is set (on the real server or one of its checkers): then it stays out until a check passes
    (with ``inhibit_on_failure`` it is present at weight 0). A server with no checker is always
    alive. lvsd keeps this rule, so a restart of a non-alpha config re-programs (adopts) the
    same table it left behind.
  * A failed server goes to weight 0 when ``inhibit_on_failure`` is set, and leaves the table
    otherwise. A recovered one returns at its *effective weight*.
  * Effective weight (keepalived ``check_misc.c`` / ``check_file.c``): configured weight plus
    ``RealServerHealth.dynamic_weight``, the checks layer's sum of keepalived ``cur_weight``
    (MISC_CHECK ``misc_dynamic``: exit status - 2 - configured; FILE_CHECK: file value x
    weight; see :mod:`lvsd.checks.tracker`), clamped to 0..2**31-1 (``real_weight()``).
  * A server whose verdict disappears from the mapping after one was seen keeps its last
    state (a checker being restarted must not flap a failed server back in).
  * notify_up / notify_down run on each transition of a server's alive state. Being added before
    the first check runs nothing; an ``alpha`` server whose first check fails runs notify_down
    (keepalived ``update_svr_checker_state``).

Quorum (keepalived ``update_quorum_state``)
  * live weight = sum of effective weights of alive real servers (sorry server excluded).
  * A new virtual server starts "down" with the servers just added, then is evaluated once:
    live >= quorum + hysteresis -> "Gained quorum", quorum_up runs; otherwise, only if it has a
    sorry server, "Starting with quorum down": quorum_down runs and the sorry server enters.
  * While up: live == 0 or live < quorum - hysteresis -> down, quorum_down runs.
    While down: live >= quorum + hysteresis -> up, quorum_up runs.
  * With a sorry server, quorum down means: every real server leaves the table (those with
    ``inhibit_on_failure`` stay at weight 0) and the sorry server enters at weight 1; quorum up
    reverses that. ``sorry_server_inhibit`` keeps the sorry server in the table at weight 0
    while it is not needed instead of removing it. Without a sorry server, losing quorum only
    runs quorum_down; the servers stay as their health says.
  * The state is evaluated once per :meth:`Planner.plan` call (the daemon calls it on every
    health event, matching keepalived's per-event evaluation). Only the virtual servers whose
    inputs changed are evaluated again: a health entry of one of their servers (health values
    are immutable and replaced when they change, so identity is the test), or their config.
    An evaluation is a fixed point (fed the same inputs again it changes no state, runs no
    action and gives the same entries: the quorum thresholds never undo a transition they just
    made), so skipping the others changes nothing but the cost.
  * On reload, a virtual server with the same :attr:`VirtualServer.ident` keeps its quorum
    state and its servers keep their alive state.
  * Order of the actions, as keepalived's ``perform_svr_state`` (check/ipwrapper.c): per
    virtual server in config order, the real servers' notify_up / notify_down
    (``do_rs_notifies``), then its quorum_up / quorum_down (``update_quorum_state`` ->
    ``do_vs_notifies``).
  * :attr:`Plan.quorum_changes` lists each virtual server whose (quorum up, sorry server
    active) pair differs from the one last reported, ``initial`` for one the planner had not
    reported yet (first plan, added by a reload): the caller's "quorum" event and log line.

Stop (keepalived ``omega``, check/ipwrapper.c ``clear_services``)
  * :meth:`Planner.shutdown` returns, for each virtual server with ``omega``, in config order:
    with ``lvs_flush_on_stop`` off, a notify_down per real server that is in the pool and
    alive (``clear_service_rs``: ``rs->set`` and alive; a server an active sorry server pushed
    out is not set, one kept at weight 0 by ``inhibit_on_failure`` is), then, whatever
    ``lvs_flush_on_stop`` says, quorum_down (``update_vs_notifies`` with ``stopping`` sets the
    quorum down and notifies even if it was down already). Without ``omega``: nothing.

Drain on removal (lvsd extension ``lvs_drain_on_remove SECONDS``, global_defs or per
virtual_server, the virtual server's value winning)
  * keepalived deletes a real server removed by a reload at once (``clear_diff_rs``); with the
    kernel default ``net.ipv4.vs.expire_nodest_conn=0`` IPVS then silently drops the packets
    of that server's established connections until they time out. With a drain of N > 0
    seconds, a real server that was in the last plan's table *and alive* when
    :meth:`Planner.reload` removed it stays in the desired table at weight 0 (IPVS sends it no
    new connection, its established ones keep flowing) and is dropped at the first plan with
    ``now >= start + N``, ``start`` being the ``now`` of the first plan after the reload. A
    failed server (dead, or at weight 0 through ``inhibit_on_failure``) is not drained.
  * Early end: when :meth:`Planner.plan` is given the data plane's per-destination counters
    (``stats``) read at ``stats_at > start`` (so after the weight 0 was programmed), a server
    whose every destination shows 0 active connections (and 0 inactive ones unless the
    service is TCP: IPVS counts UDP/SCTP/fwmark flows as inactive) is dropped at once.
  * A virtual server removed by a reload drains its real servers the same way (its own
    ``lvs_drain_on_remove``, else the new config's global one); its services stay in the
    table with only the draining destinations and leave with the last of them.
  * A server re-added by a reload during its drain returns to normal at once, with the alive
    state it had (no notify, no alpha wait). The same destination claimed by the new config
    (e.g. a DR server whose configured port changed) is the new config's.
  * :attr:`Plan.next_deadline` is the earliest drain end: the caller must plan again then.
  * :attr:`Plan.drains_started` / :attr:`Plan.drains_ended` report each drain at the plan that
    starts it and at the one that ends it (time ran out, no connection left, or a reload put
    the server back: then reported by the next plan).
"""

from __future__ import annotations

import functools
import ipaddress
import itertools
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from lvsd.checks.health import RealServerHealth, RealServerId
from lvsd.config.model import (
    Config,
    LbKind,
    Protocol,
    RealServer,
    Script,
    TunnelOptions,
    VirtualServer,
)
from lvsd.pool.table import (
    DestKey,
    DestSpec,
    DestStats,
    Fwd,
    Proto,
    ServiceEntry,
    ServiceKey,
    ServiceSpec,
    canonical_granularity,
    norm_addr,
)

WEIGHT_MAX = 2**31 - 1
SORRY_WEIGHT = 1  # keepalived: the sorry server is a real server with the default weight 1

_FWD = {LbKind.NAT: Fwd.MASQ, LbKind.DR: Fwd.DROUTE, LbKind.TUN: Fwd.TUNNEL}
_PROTO = {Protocol.TCP: Proto.TCP, Protocol.UDP: Proto.UDP, Protocol.SCTP: Proto.SCTP}
_TUN_TYPE = {"ipip": 0, "gue": 1, "gre": 2}
_TUN_CSUM = {None: 0, "nocsum": 0, "csum": 1, "remcsum": 2}
# A virtual_server_group range larger than this is refused (it would be a typo, e.g. a /8).
MAX_RANGE = 65536

ActionKind = Literal["quorum_up", "quorum_down", "notify_up", "notify_down"]


class PlanError(ValueError):
    """A configuration the planner cannot turn into a table (names where and why)."""


@dataclass(frozen=True, slots=True)
class Action:
    """Something the daemon must do because of this plan.

    ``script`` is None when the event has no script configured: the action is still returned so
    the daemon can write notify FIFOs / status events.
    """

    kind: ActionKind
    vs: str
    script: Script | None
    rs: RealServerId | None = None
    message: str = ""


@dataclass(frozen=True, slots=True)
class VsState:
    """Per-virtual-server state, for status and logs."""

    ident: str
    services: tuple[ServiceKey, ...]
    quorum: int
    hysteresis: int
    quorum_up: bool
    sorry_active: bool
    live_weight: int
    alive: int
    total: int
    since: float  # `now` of the last quorum transition (or of the first plan)


@dataclass(frozen=True, slots=True)
class QuorumChange:
    """A virtual server's (quorum up, sorry server active) pair differs from the last plan's.

    ``initial``: the virtual server is new to the planner (first plan, or added by a reload,
    or back after a plan that could not evaluate it): reported, but it is no transition."""

    vs: str
    quorum_up: bool
    sorry_active: bool
    live_weight: int
    alive: int
    initial: bool


@dataclass(frozen=True, slots=True)
class DrainStart:
    """A real server removed by a reload starts draining at weight 0 (until ``end``)."""

    rs: RealServerId
    start: float
    end: float


DrainEndReason = Literal["expired", "idle", "re-added"]


@dataclass(frozen=True, slots=True)
class DrainEnd:
    """A drain is over: its time ran out (``expired``), the data plane showed no connection
    left (``idle``), both leaving the table; or a reload put the server back (``re-added``)."""

    rs: RealServerId
    why: DrainEndReason


@dataclass(frozen=True, slots=True)
class Plan:
    table: dict[ServiceKey, ServiceEntry]
    states: dict[str, VsState]
    actions: tuple[Action, ...] = ()
    problems: tuple[str, ...] = ()  # e.g. two virtual servers claiming one service
    # lvsd drain on removal: the earliest drain end (plan again then), and every server still
    # draining -> its drain end
    next_deadline: float | None = None
    draining: Mapping[RealServerId, float] = field(default_factory=dict)
    # what changed since the previous plan, in config order (see the module docstring)
    quorum_changes: tuple[QuorumChange, ...] = ()
    drains_started: tuple[DrainStart, ...] = ()
    drains_ended: tuple[DrainEnd, ...] = ()

    @property
    def owned(self) -> frozenset[ServiceKey]:
        return frozenset(self.table)


def real_weight(weight: int) -> int:
    """keepalived ``real_weight()``: clamp to what IPVS accepts."""
    return max(0, min(WEIGHT_MAX, weight))


def effective_weight(rs: RealServer, health: RealServerHealth | None) -> int:
    """Configured weight plus the checks layer's Σ cur_weight (keepalived effective_weight)."""
    if health is None or health.dynamic_weight is None:
        return real_weight(rs.weight)
    return real_weight(rs.weight + health.dynamic_weight)


def tunnel_fields(opts: TunnelOptions | None) -> tuple[int, int, int]:
    if opts is None:
        return 0, 0, 0
    try:
        ttype = _TUN_TYPE[opts.type.lower()]
    except KeyError:
        raise PlanError(f"unknown tunnel type {opts.type!r} (ipip, gue or gre)") from None
    try:
        flags = _TUN_CSUM[opts.csum.lower() if opts.csum else None]
    except KeyError:
        raise PlanError(f"unknown tunnel checksum {opts.csum!r}") from None
    return ttype, opts.port or 0, flags


def _expand_range(first: str, last: str, where: str) -> Iterable[str]:
    a, b = ipaddress.ip_address(first), ipaddress.ip_address(last)
    if a.version != b.version:
        raise PlanError(f"{where}: range {first}-{last} mixes IPv4 and IPv6")
    lo, hi = int(a), int(b)
    if hi < lo:
        raise PlanError(f"{where}: range {first}-{last} ends before it starts")
    if hi - lo >= MAX_RANGE:
        raise PlanError(f"{where}: range {first}-{last} has more than {MAX_RANGE} addresses")
    for n in range(lo, hi + 1):
        yield str(ipaddress.ip_address(n) if a.version == 4 else ipaddress.IPv6Address(n))


def service_keys(vs: VirtualServer, config: Config) -> list[tuple[ServiceKey, int]]:
    """Every IPVS service a virtual server stands for, with the port DR/TUN dests use."""
    proto = int(_PROTO[vs.protocol])
    if vs.group is not None:
        group = config.vsg(vs.group)
        if group is None:
            raise PlanError(f"{vs.pos}: virtual_server group {vs.group} is not defined")
        out: list[tuple[ServiceKey, int]] = []
        for r in group.ranges:
            for addr in _expand_range(r.first, r.last, str(r.pos)):
                out.append((ServiceKey.for_addr(addr, r.port, proto), r.port))
        for fm in group.fwmarks:
            out.append((ServiceKey.for_fwmark(fm.fwmark, vs.family), 0))
        return out
    if vs.fwmark is not None:
        return [(ServiceKey.for_fwmark(vs.fwmark, vs.family), 0)]
    if vs.address is None:
        raise PlanError(f"{vs.pos}: virtual_server has neither address, fwmark nor group")
    return [(ServiceKey.for_addr(vs.address, vs.port, proto), vs.port)]


def _dest(svc_port: int, addr: str, port: int, lb: LbKind,
          tunnel: TunnelOptions | None, weight: int, uth: int = 0, lth: int = 0) -> DestSpec:
    fwd = _FWD[lb]
    # keepalived: DR/TUN use the service's port (0 for fwmark services)
    dport = (port or svc_port) if fwd is Fwd.MASQ else svc_port
    ttype, tport, tflags = tunnel_fields(tunnel) if fwd is Fwd.TUNNEL else (0, 0, 0)
    return DestSpec(DestKey(_norm(addr), dport), weight, fwd, uth, lth, ttype, tport, tflags)


@dataclass(slots=True)
class _RsMemory:
    alive: bool
    decided: bool  # a health verdict has been seen


@dataclass(slots=True)
class _VsMemory:
    quorum_up: bool
    since: float
    rs: dict[RealServerId, _RsMemory] = field(default_factory=dict)


@dataclass(slots=True)
class _Drain:
    """A real server removed by a reload, kept at weight 0 until ``start + seconds``."""

    seconds: float
    dests: list[tuple[ServiceKey, ServiceSpec, DestSpec]]  # at weight 0
    memory: _RsMemory  # given back if a reload re-adds the server during the drain
    start: float | None = None  # `now` of the first plan after the reload


@dataclass(slots=True)
class _VsPlan:
    """The last evaluation of a virtual server: reused while its inputs stay the same."""

    comp: _Compiled
    signature: tuple[object, ...]  # sorry state + (alive, weight) per server: what entries hold
    entries: dict[ServiceKey, ServiceEntry]
    state: VsState


@dataclass(slots=True)
class _CompiledRs:
    rs: RealServer
    rid: RealServerId
    alpha: bool
    dests: list[DestSpec]  # one per service of the virtual server, at the configured weight


@dataclass(slots=True)
class _Compiled:
    """What only depends on the config: computed once per virtual server object."""

    vs: VirtualServer
    ident: str
    group: object  # the VirtualServerGroup object the keys came from (identity-checked)
    keys: list[tuple[ServiceKey, int]]
    specs: list[ServiceSpec]
    rs: list[_CompiledRs]
    sorry: list[DestSpec]  # per service, at weight 1


def service_spec(key: ServiceKey, vs: VirtualServer, *, granularity: bool = True) -> ServiceSpec:
    """The service settings of ``vs`` for one of its keys, granularity in canonical form (the
    form a data plane reads back, so a reconcile never sees a phantom difference).
    Raises ValueError for a granularity that is not a netmask / prefix length."""
    gran = (canonical_granularity(key.af, vs.persistence_granularity) if granularity
            else None)
    return ServiceSpec(key, vs.lb_algo, frozenset(vs.sched_flags), vs.persistence_timeout, gran)


def _compile(vs: VirtualServer, config: Config) -> _Compiled:
    keys = service_keys(vs, config)
    specs = []
    for k, _ in keys:
        try:
            specs.append(service_spec(k, vs))
        except ValueError:  # already reported by refusals() at load; plan the kernel default
            specs.append(service_spec(k, vs, granularity=False))
    crs = []
    ident = vs.ident
    for rs in vs.real_servers:
        alpha = bool(rs.checkers) and (rs.alpha or any(c.alpha for c in rs.checkers))
        dests = [_dest(port, rs.address, rs.port, rs.lb_kind, rs.tunnel, real_weight(rs.weight),
                       rs.uthreshold, rs.lthreshold) for _, port in keys]
        crs.append(_CompiledRs(rs, RealServerId(ident, _norm(rs.address), rs.port),
                               alpha, dests))
    sorry = []
    if vs.sorry_server is not None:
        ss = vs.sorry_server
        sorry = [_dest(port, ss.address, ss.port, ss.lb_kind or vs.lb_kind, None, SORRY_WEIGHT)
                 for _, port in keys]
    group = config.vsg(vs.group) if vs.group is not None else None
    return _Compiled(vs, ident, group, keys, specs, crs, sorry)


_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_CANON_V4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")


@functools.lru_cache(maxsize=131072)
def _norm(addr: str) -> str:
    """norm_addr with a fast path for already-canonical IPv4 (config addresses usually are)."""
    return addr if _CANON_V4.fullmatch(addr) else norm_addr(addr)


def _with_weight(d: DestSpec, weight: int) -> DestSpec:
    if d.weight == weight:
        return d
    return DestSpec(d.key, weight, d.fwd, d.u_threshold, d.l_threshold, d.tun_type, d.tun_port,
                    d.tun_flags)


class Planner:
    """Stateful planner. ``plan()`` is cheap enough to call on every health change.

    Config-only work (address normalisation, service expansion) is done once per virtual
    server object; a virtual server whose health entries and config did not change since the
    last plan is not evaluated again, and one whose entries' inputs (alive/weight of each
    server, sorry state) did not change reuses its previous entries (same objects).
    """

    def __init__(self, config: Config) -> None:
        self._config = config
        self._vs: dict[str, _VsMemory] = {}
        self._compiled: dict[str, _Compiled] = {}
        self._cache: dict[str, _VsPlan] = {}
        self._draining: dict[RealServerId, _Drain] = {}
        # per virtual server of the config: its compiled form, or why it has none (None: to do)
        self._order: list[tuple[VirtualServer, _Compiled | str]] | None = None
        self._seen: dict[RealServerId, RealServerHealth] | None = None  # the last plan's health
        # (quorum_up, sorry_active) per virtual server as the last QuorumChange reported it
        self._reported: dict[str, tuple[bool, bool]] = {}
        self._ended: list[DrainEnd] = []  # drains a reload cancelled, reported by the next plan

    @property
    def config(self) -> Config:
        return self._config

    def reload(self, config: Config) -> None:
        """Take a new config; state of virtual/real servers with the same identity is kept.

        Real servers the new config removes start draining if ``lvs_drain_on_remove`` says so
        (see the module docstring); those it re-adds while draining come back at once."""
        by_ident: dict[str, list[VirtualServer]] = {}
        for vs in config.virtual_servers:
            by_ident.setdefault(vs.ident, []).append(vs)
        new_vs = {ident: vss[-1] for ident, vss in by_ident.items()}
        servers: dict[str, set[tuple[str, int]]] = {}

        def kept(rid: RealServerId) -> bool:
            """The new config has this real server (built per virtual server on demand: a
            reload that drains nothing does not pay for its 37,000 servers)."""
            got = servers.get(rid.vs)
            if got is None:
                got = servers[rid.vs] = {(_norm(rs.address), rs.port)
                                         for vs in by_ident.get(rid.vs, ())
                                         for rs in vs.real_servers}
            return (rid.addr, rid.port) in got

        for rid in [r for r in self._draining if kept(r)]:
            back = self._draining.pop(rid)
            if back.start is not None:  # a plan reported it started
                self._ended.append(DrainEnd(rid, "re-added"))
            vmem = self._vs.get(rid.vs)
            if vmem is not None and rid.vs in new_vs:
                vmem.rs[rid] = back.memory
                self._cache.pop(rid.vs, None)
        self._start_drains(config, new_vs, kept)
        self._config = config
        self._order = None
        idents = set(new_vs)
        for gone in set(self._vs) - idents:
            del self._vs[gone]
        for gone in set(self._compiled) - idents:
            del self._compiled[gone]
            self._cache.pop(gone, None)

    def _start_drains(self, config: Config, new_vs: Mapping[str, VirtualServer],
                      kept: Callable[[RealServerId], bool]) -> None:
        g_drain = config.global_defs.lvs_drain_on_remove
        for ident, comp in self._compiled.items():
            cached, vmem = self._cache.get(ident), self._vs.get(ident)
            if cached is None or vmem is None or cached.comp is not comp:
                continue  # never planned with this config: nothing of it is in the table
            src = new_vs.get(ident, comp.vs)
            seconds = (src.lvs_drain_on_remove if src.lvs_drain_on_remove is not None
                       else g_drain)
            if seconds <= 0:
                continue  # keepalived: removed at once
            entries = cached.entries
            for c in comp.rs:
                rmem = vmem.rs.get(c.rid)
                if rmem is None or not rmem.alive or c.rid in self._draining or kept(c.rid):
                    continue  # kept, failed (nothing to drain) or already draining
                dests = []
                for i, (key, _port) in enumerate(comp.keys):
                    entry = entries.get(key)
                    d = entry.dests.get(c.dests[i].key) if entry is not None else None
                    if entry is not None and d is not None:
                        dests.append((key, entry.spec, _with_weight(d, 0)))
                if dests:
                    self._draining[c.rid] = _Drain(seconds, dests, rmem)

    @staticmethod
    def _drained(d: _Drain, stats: Mapping[tuple[ServiceKey, DestKey], DestStats] | None,
                 stats_at: float | None) -> bool:
        """The data plane, read after the weight 0 was programmed, shows no connection left."""
        if stats is None or stats_at is None or d.start is None or stats_at <= d.start:
            return False
        for key, _spec, dest in d.dests:
            st = stats.get((key, dest.key))
            if st is None or st.active_conns:
                return False
            if key.protocol != int(Proto.TCP) and st.inactive_conns:
                return False
        return True

    def _apply_drains(self, table: dict[ServiceKey, ServiceEntry], now: float,
                      stats: Mapping[tuple[ServiceKey, DestKey], DestStats] | None,
                      stats_at: float | None, started: list[DrainStart],
                      ended: list[DrainEnd]) -> tuple[float | None, dict[RealServerId, float]]:
        deadline: float | None = None
        draining: dict[RealServerId, float] = {}
        for rid, d in list(self._draining.items()):
            if d.start is None:
                d.start = now
                started.append(DrainStart(rid, now, now + d.seconds))
            end = d.start + d.seconds
            if now >= end or self._drained(d, stats, stats_at):
                del self._draining[rid]
                ended.append(DrainEnd(rid, "expired" if now >= end else "idle"))
                continue
            draining[rid] = end
            deadline = end if deadline is None else min(deadline, end)
            for key, spec, dest in d.dests:
                entry = table.get(key)
                if entry is None:  # its virtual server is gone: the service stays for the drain
                    table[key] = ServiceEntry(spec, {dest.key: dest})
                elif dest.key not in entry.dests:  # copy: entries are cached between plans
                    table[key] = ServiceEntry(entry.spec, {**entry.dests, dest.key: dest})
        return deadline, draining

    @staticmethod
    def rs_id(vs: VirtualServer, rs: RealServer) -> RealServerId:
        return RealServerId(vs.ident, _norm(rs.address), rs.port)

    def _compiled_for(self, vs: VirtualServer) -> _Compiled:
        c = self._compiled.get(vs.ident)
        group = self._config.vsg(vs.group) if vs.group is not None else None
        if c is not None and c.vs is not vs and c.vs == vs and c.group == group:
            c.vs, c.group = vs, group  # a reload that left this virtual server as it was
        if c is None or c.vs is not vs or c.group is not group:
            c = _compile(vs, self._config)
            self._compiled[vs.ident] = c
        return c

    def _compile_order(self) -> list[tuple[VirtualServer, _Compiled | str]]:
        """Once per config: each virtual server's compiled form, or why it has none."""
        order: list[tuple[VirtualServer, _Compiled | str]] = []
        for vs in self._config.virtual_servers:
            try:
                order.append((vs, self._compiled_for(vs)))
            except (PlanError, ValueError) as exc:
                order.append((vs, f"{vs.pos}: {vs.ident}: {exc}"))
        return order

    @staticmethod
    def _changed_vs(seen: Mapping[RealServerId, RealServerHealth] | None,
                    health: Mapping[RealServerId, RealServerHealth]) -> set[str] | None:
        """Idents of the virtual servers with a health entry that is not the one ``seen`` held
        (None: everything, nothing was seen). The usual case, the same servers in the same
        order with a few values replaced, is compared by identity without hashing a key."""
        if seen is None:
            return None
        if len(seen) == len(health) and all(map(operator.is_, seen, health)):
            return {rid.vs for rid in itertools.compress(
                health, map(operator.is_not, seen.values(), health.values()))}
        changed = {rid.vs for rid, h in health.items() if seen.get(rid) is not h}
        changed.update(rid.vs for rid in seen if rid not in health)
        return changed

    def plan(self, health: Mapping[RealServerId, RealServerHealth], now: float,
             stats: Mapping[tuple[ServiceKey, DestKey], DestStats] | None = None,
             stats_at: float | None = None) -> Plan:
        """The desired table for ``health`` at ``now``. ``stats`` (the data plane's counters,
        read at ``stats_at`` on the same clock as ``now``) only let a drain end early."""
        table: dict[ServiceKey, ServiceEntry] = {}
        claimed: dict[ServiceKey, str] = {}
        states: dict[str, VsState] = {}
        actions: list[Action] = []
        problems: list[str] = []
        if self._order is None:
            self._order = self._compile_order()
        snapshot = dict(health)  # references only: what the next plan compares with
        changed = self._changed_vs(self._seen, snapshot)
        evaluated: list[str] = []
        for vs, comp in self._order:
            if isinstance(comp, str):
                problems.append(comp)
                continue
            ident = comp.ident
            cached = self._cache.get(ident)
            if (cached is not None and cached.comp is comp and changed is not None
                    and ident not in changed):
                state, entries = cached.state, cached.entries  # same inputs: a fixed point
            else:
                try:
                    state, entries = self._plan_vs(comp, snapshot, now, actions)
                except (PlanError, ValueError) as exc:
                    self._cache.pop(ident, None)
                    problems.append(f"{vs.pos}: {ident}: {exc}")
                    continue
                evaluated.append(ident)
            states[ident] = state
            for key, entry in entries.items():
                if key in claimed:
                    problems.append(
                        f"{vs.pos}: {ident}: service {key} already defined by {claimed[key]}"
                        " (ignored here)")
                    continue
                claimed[key] = ident
                table[key] = entry
        self._seen = snapshot
        started: list[DrainStart] = []
        ended, self._ended = self._ended, []
        deadline, draining = (self._apply_drains(table, now, stats, stats_at, started, ended)
                              if self._draining else (None, {}))
        return Plan(table, states, tuple(actions), tuple(problems), deadline, draining,
                    self._quorum_changes(states, evaluated), tuple(started), tuple(ended))

    def _quorum_changes(self, states: Mapping[str, VsState],
                        evaluated: list[str]) -> tuple[QuorumChange, ...]:
        """The (quorum up, sorry active) pairs that differ from the last reported ones. Only an
        evaluated virtual server can have changed (a skipped one is a fixed point); one that
        left ``states`` (removed by a reload, or failing) is forgotten, so it is ``initial``
        when it comes back."""
        out: list[QuorumChange] = []
        reported = self._reported

        def note(ident: str, st: VsState) -> None:
            cur = (st.quorum_up, st.sorry_active)
            prev = reported.get(ident)
            if prev != cur:
                out.append(QuorumChange(ident, st.quorum_up, st.sorry_active, st.live_weight,
                                        st.alive, prev is None))
                reported[ident] = cur

        for ident in evaluated:
            st = states.get(ident)
            if st is not None:
                note(ident, st)
        if len(reported) != len(states):
            for gone in [k for k in reported if k not in states]:
                del reported[gone]
            for ident, st in states.items():
                if ident not in reported:
                    note(ident, st)
        return tuple(out)

    def shutdown(self, flush_on_stop: str = "no") -> tuple[Action, ...]:
        """What keepalived runs when it stops (``omega``), as actions, in its order, from the
        last plan's state. Nothing changes: the planner is not used after this.

        keepalived (check/ipwrapper.c ``clear_services``): with ``lvs_flush_on_stop`` off,
        ``clear_service_vs`` -> ``clear_service_rs`` runs, per real server that is in the pool
        (``rs->set``: alive and not pushed out by an active sorry server, or kept at weight 0
        by ``inhibit_on_failure``) and alive, ``do_rs_notifies``: notify_down; then, with any
        ``lvs_flush_on_stop``, ``update_vs_notifies(vs, stopping)`` sets the quorum down
        whatever it was and ``do_vs_notifies``: quorum_down. Both only when ``omega`` is set
        ("Only send non SNMP notifies when stopping if omega set")."""
        actions: list[Action] = []
        done: set[str] = set()
        order = self._order if self._order is not None else self._compile_order()
        for vs, comp in order:
            if isinstance(comp, str) or not vs.omega or comp.ident in done:
                continue
            ident = comp.ident
            done.add(ident)
            mem, cached = self._vs.get(ident), self._cache.get(ident)
            if mem is None or cached is None or cached.comp is not comp:
                continue  # never planned: keepalived never set it up either
            if flush_on_stop == "no":
                sorry_active = cached.state.sorry_active
                for c in comp.rs:
                    r = mem.rs.get(c.rid)
                    if r is None or not r.alive or (sorry_active
                                                    and not c.rs.inhibit_on_failure):
                        continue
                    actions.append(Action("notify_down", ident, c.rs.notify_down, c.rid,
                                          f"Shutting down service {c.rid}"))
            actions.append(Action("quorum_down", ident, vs.quorum_down,
                                  message=f"=> Shutting down <= for VS {ident}"))
        return tuple(actions)

    # ------------------------------------------------------------------------------------

    def _rs_alive(self, vs: VirtualServer, c: _CompiledRs, h: RealServerHealth | None,
                  mem: _VsMemory, actions: list[Action]) -> bool:
        """The server's alive state given its health ``h`` (None: no verdict), with the
        notify actions its transition calls for."""
        rs, rid, alpha = c.rs, c.rid, c.alpha
        prev = mem.rs.get(rid)
        if prev is None:
            # First sight: keepalived adds it silently before the first check (unless alpha).
            prev = _RsMemory(alive=not alpha, decided=False)
            mem.rs[rid] = prev
        if h is not None:
            alive = h.alive
        elif not rs.checkers:
            alive = True
        elif prev.decided:
            alive = prev.alive  # verdict withdrawn (e.g. checker restarting): keep the last one
        else:
            alive = not alpha
        if prev.alive != alive:
            kind: ActionKind = "notify_up" if alive else "notify_down"
            why = h.reason if h is not None else "no health state"
            actions.append(Action(kind, vs.ident, rs.notify_up if alive else rs.notify_down,
                                  rid, f"{rid} {'up' if alive else 'down'}: {why}"))
        elif h is not None and not prev.decided and alpha and not alive:
            actions.append(Action("notify_down", vs.ident, rs.notify_down, rid,
                                  f"{rid} down: first check failed ({h.reason})"))
        prev.alive = alive
        prev.decided = prev.decided or h is not None
        return alive

    def _plan_vs(self, comp: _Compiled, health: Mapping[RealServerId, RealServerHealth],
                 now: float, actions: list[Action]) -> tuple[VsState, dict[ServiceKey,
                                                                           ServiceEntry]]:
        vs, ident = comp.vs, comp.ident
        mem = self._vs.get(ident)
        init = mem is None
        if mem is None:
            mem = _VsMemory(quorum_up=False, since=now)
        rs_actions: list[Action] = []
        alive_map: list[tuple[bool, int]] = []
        live = 0
        for c in comp.rs:
            h = health.get(c.rid)
            alive = self._rs_alive(vs, c, h, mem, rs_actions)
            weight = effective_weight(c.rs, h)
            if alive:
                live += weight
            alive_map.append((alive, weight))
        if len(mem.rs) != len(comp.rs):
            seen = {c.rid for c in comp.rs}
            for gone in set(mem.rs) - seen:
                del mem.rs[gone]

        quorum = max(1, vs.quorum)
        hyst = max(0, vs.hysteresis)
        q_actions: list[Action] = []
        if not mem.quorum_up:
            threshold = quorum + hyst
            if live >= threshold:
                mem.quorum_up = True
                mem.since = now
                q_actions.append(Action(
                    "quorum_up", ident, vs.quorum_up,
                    message=(f"{'Starting with quorum up' if init else 'Gained quorum'} "
                             f"{quorum}+{hyst}={threshold} <= {live} for VS {ident}")))
            elif init and vs.sorry_server is not None:
                q_actions.append(Action(
                    "quorum_down", ident, vs.quorum_down,
                    message=(f"Starting with quorum down {quorum}-{hyst}={threshold} > {live}"
                             f" for VS {ident}")))
        else:
            threshold = quorum - hyst
            if live == 0 or live < threshold:
                mem.quorum_up = False
                mem.since = now
                q_actions.append(Action(
                    "quorum_down", ident, vs.quorum_down,
                    message=f"Lost quorum {quorum}-{hyst}={threshold} > {live} for VS {ident}"))
        self._vs[ident] = mem
        actions.extend(rs_actions)
        actions.extend(q_actions)

        sorry_active = vs.sorry_server is not None and not mem.quorum_up
        signature = (sorry_active, *alive_map)
        cached = self._cache.get(ident)
        if cached is not None and cached.comp is comp and cached.signature == signature:
            entries = cached.entries
        else:
            entries = self._entries(comp, alive_map, sorry_active)
        state = VsState(
            ident=ident,
            services=tuple(k for k, _ in comp.keys),
            quorum=quorum,
            hysteresis=hyst,
            quorum_up=mem.quorum_up,
            sorry_active=sorry_active,
            live_weight=live,
            alive=sum(1 for a, _ in alive_map if a),
            total=len(alive_map),
            since=mem.since,
        )
        self._cache[ident] = _VsPlan(comp, signature, entries, state)
        return state, entries

    @staticmethod
    def _entries(comp: _Compiled, alive_map: list[tuple[bool, int]],
                 sorry_active: bool) -> dict[ServiceKey, ServiceEntry]:
        vs = comp.vs
        entries: dict[ServiceKey, ServiceEntry] = {}
        for i, (key, _port) in enumerate(comp.keys):
            dests: dict[DestKey, DestSpec] = {}
            for c, (alive, weight) in zip(comp.rs, alive_map, strict=True):
                if sorry_active:
                    w: int | None = 0 if c.rs.inhibit_on_failure else None
                elif alive:
                    w = weight
                else:
                    w = 0 if c.rs.inhibit_on_failure else None
                if w is None:
                    continue
                d = _with_weight(c.dests[i], w)
                dests[d.key] = d
            if comp.sorry and (sorry_active or vs.sorry_server_inhibit):
                d = _with_weight(comp.sorry[i], SORRY_WEIGHT if sorry_active else 0)
                if sorry_active or d.key not in dests:
                    dests[d.key] = d
            entries[key] = ServiceEntry(comp.specs[i], dests)
        return entries


def refusals(config: Config, refuse: Callable[[ServiceSpec | DestSpec], str | None]) -> list[str]:
    """What a data plane refuses in ``config`` (``DataPlane.refuse``), as ``file:line: why``.

    Every real server and sorry server is checked whatever its health, so a config the data
    plane cannot carry is refused at load, not when a server first fails or recovers.
    """
    out: list[str] = []
    seen: set[str] = set()

    def note(pos: object, why: str | None) -> None:
        if why is not None:
            line = f"{pos}: {why}"
            if line not in seen:
                seen.add(line)
                out.append(line)

    for vs in config.virtual_servers:
        try:
            keys = service_keys(vs, config)
        except (PlanError, ValueError) as exc:
            note(vs.pos, str(exc))
            continue
        for key, svc_port in keys:
            try:
                spec = service_spec(key, vs)
            except ValueError as exc:
                note(vs.pos, str(exc))
                spec = service_spec(key, vs, granularity=False)
            note(vs.pos, refuse(spec))
            for rs in vs.real_servers:
                try:
                    d = _dest(svc_port, rs.address, rs.port, rs.lb_kind, rs.tunnel, rs.weight,
                              rs.uthreshold, rs.lthreshold)
                except (PlanError, ValueError) as exc:
                    note(rs.pos, str(exc))
                    continue
                note(rs.pos, refuse(d))
            if vs.sorry_server is not None:
                s = vs.sorry_server
                note(s.pos, refuse(_dest(svc_port, s.address, s.port, s.lb_kind or vs.lb_kind,
                                         None, SORRY_WEIGHT)))
    return out
