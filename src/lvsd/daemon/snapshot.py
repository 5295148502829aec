"""Status snapshot assembly: the running parts (VRRP runners, check scheduler, the pool
service's :class:`~lvsd.pool.service.PoolView`) turned into the frozen values of
:mod:`lvsd.status.model`.

Pure functions of what they are given (no clock, no I/O): monotonic times are turned into Unix
times by the ``conv`` the caller passes (one fixed offset, so repeated snapshots agree).
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING

from lvsd.status import model as m
from lvsd.status.model import hostport

if TYPE_CHECKING:
    from lvsd.checks.health import RealServerId
    from lvsd.checks.scheduler import CheckerStatus as SchedCheckerStatus
    from lvsd.config.model import Config
    from lvsd.config.verdict import Verdict
    from lvsd.pool.service import PoolView
    from lvsd.pool.table import DestKey, DestStats, ServiceEntry, ServiceKey, ServiceSpec
    from lvsd.vrrp.runner import VrrpRunner

Conv = Callable[[float | None], float | None]
Stats = Mapping[tuple["ServiceKey", "DestKey"], "DestStats"]

TRANSITIONS_KEPT = 20
DRAIN_REASON = "removed by reload: draining at weight 0"


@contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic GC off while a snapshot part is built: the values are acyclic (freed by
    reference counting) and the collector's passes meanwhile only rescan the growing heap, a
    quarter of the build at 12,000 checkers (config/loader.py does the same while loading).
    Left off if something else turned it off."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def mono_to_wall(off: float) -> Conv:
    """Monotonic -> Unix time with a fixed offset (so repeated snapshots agree exactly)."""

    def conv(t: float | None) -> float | None:
        return None if t is None else t + off

    return conv


def config_diagnostics(verdict: Verdict | None) -> tuple[m.ConfigDiagnostic, ...]:
    """The running config's diagnostics, positions kept (``/status`` ``config.diagnostics``)."""
    if verdict is None:
        return ()
    return tuple(m.ConfigDiagnostic(d.severity.value, d.kind.value, d.message,
                                    d.pos.file if d.pos is not None and d.pos.line else None,
                                    d.pos.line if d.pos is not None and d.pos.line else None)
                 for d in verdict.diagnostics)


def instances_status(runners: Iterable[VrrpRunner], cfg: Config | None,
                     conv: Conv) -> tuple[m.InstanceStatus, ...]:
    if cfg is None:
        return ()
    models = {i.name: i for i in cfg.vrrp_instances}
    out = []
    for runner in runners:
        group = runner.sync_group_name
        for name, member in runner.status().items():
            inst = models.get(name)
            r = member.machine
            c = r.counters
            state = r.state.value
            master = r.primary_address if state == "MASTER" else r.master_address
            mprio = r.effective_priority if state == "MASTER" else r.master_priority
            trans = tuple(m.Transition(conv(t.at) or 0.0, t.old.value, t.new.value, t.reason)
                          for t in c.transitions[-TRANSITIONS_KEPT:])
            out.append(m.InstanceStatus(
                name=name, vrid=r.vrid, interface=member.interface,
                version=r.version, family=inst.family if inst else 4, state=state,
                base_priority=r.base_priority, effective_priority=r.effective_priority,
                master=master, master_priority=mprio or None,
                advert_int=float(r.master_adver_int or r.advert_int),
                vips=tuple(v.cidr for v in inst.virtual_ipaddresses) if inst else r.addresses,
                # the host's truth (the runner's last add/remove), not "MASTER, so held"
                vips_held=member.vips_held, sync_group=group,
                transitions=trans, adverts_sent=c.adverts_sent,
                adverts_received=c.adverts_received, became_master=c.became_master,
                released_master=c.released_master,
                priority_zero_sent=c.priority_zero_sent,
                priority_zero_received=c.priority_zero_received,
                invalid_packets=member.invalid_packets,
                fault_reasons=r.fault_reasons,
                vip_add_failures=c.vip_add_failed, vip_retry_at=conv(r.vip_retry_at)))
    return tuple(out)


#: ipvsadm -Ln's "Forward" column (ipvsadm.c fwd_name): the kernel's IP_VS_CONN_F_* by name
FORWARD_NAMES = {"MASQ": "Masq", "LOCAL": "Local", "TUNNEL": "Tunnel", "DROUTE": "Route",
                 "BYPASS": "Bypass"}


class _InDataplane:
    """A real server (or a whole virtual server) as the data plane holds it: its weight and
    forwarding method, and the sum of its destinations' connections and counters (plain
    sums: a snapshot of a 37,000-server pool adds them all)."""

    __slots__ = ("active", "counts", "forward", "inactive", "weight")

    def __init__(self) -> None:
        self.weight: int | None = None
        self.forward: str | None = None
        self.active: int | None = None
        self.inactive: int | None = None
        self.counts: list[int] | None = None  # TrafficStats' fields, in order

    def add(self, ds: DestStats | None) -> None:
        """One more destination's counters (None: the data plane reports none for it)."""
        if ds is None:
            return
        self.active = (self.active or 0) + ds.active_conns
        self.inactive = (self.inactive or 0) + ds.inactive_conns
        if not ds.counters:  # connections only (nftables: conntrack)
            return
        vals = (ds.conns, ds.inpkts, ds.outpkts, ds.inbytes, ds.outbytes,
                ds.cps, ds.inpps, ds.outpps, ds.inbps, ds.outbps)
        if self.counts is None:
            self.counts = list(vals)
        else:
            self.counts = [a + b for a, b in zip(self.counts, vals, strict=True)]

    @property
    def stats(self) -> m.TrafficStats | None:
        return None if self.counts is None else m.TrafficStats(*self.counts)


def _in_dataplane(addr: str, ports: Iterable[int], services: Iterable[ServiceKey],
                  actual: Mapping[ServiceKey, ServiceEntry], stats: Stats,
                  dest_key: type[DestKey]) -> _InDataplane:
    """A real server's weight, forwarding method, connections and counters as the data plane
    holds them (summed over the services of its virtual server). ``dest_key`` is
    :class:`lvsd.pool.table.DestKey`, imported once per snapshot by the caller."""
    out = _InDataplane()
    for skey in services:
        entry = actual.get(skey)
        if entry is None:
            continue
        # NAT: the real server's port; DR/TUN: the service's (planner rule)
        for port in {*ports, skey.port}:
            dkey = dest_key(addr, port)
            d = entry.dests.get(dkey)
            if d is not None:
                out.weight, out.forward = d.weight, FORWARD_NAMES.get(d.fwd.name, d.fwd.name)
                out.add(stats.get((skey, dkey)))
    return out


def _service_totals(services: Iterable[ServiceKey], actual: Mapping[ServiceKey, ServiceEntry],
                    stats: Stats) -> _InDataplane:
    """A virtual server's connections and counters: the sum over every destination of its
    services (lvsd's and any added by hand) that the data plane reports counters for."""
    out = _InDataplane()
    for skey in services:
        entry = actual.get(skey)
        for dkey in entry.dests if entry is not None else ():
            out.add(stats.get((skey, dkey)))
    return out


def _service_spec(services: Iterable[ServiceKey], actual: Mapping[ServiceKey, ServiceEntry],
                  desired: Mapping[ServiceKey, ServiceEntry]) -> ServiceSpec | None:
    """The settings ``ipvsadm -Ln`` would show: the data plane's, else what lvsd wants."""
    for table in (actual, desired):
        for skey in services:
            entry = table.get(skey)
            if entry is not None:
                return entry.spec
    return None


def vs_status(cfg: Config | None, pool: PoolView | None,
              conv: Conv) -> tuple[m.VirtualServerStatus, ...]:
    """One entry per configured virtual server, its configured real servers first, then those a
    reload removed that are still draining (``Plan.draining``); the data plane's side is the
    reconciler's view of the table and the last counters."""
    if cfg is None or pool is None or pool.plan is None:
        return ()
    with _collector_paused():
        return _vs_status(cfg, pool, conv)


def _vs_status(cfg: Config, pool: PoolView, conv: Conv) -> tuple[m.VirtualServerStatus, ...]:
    from lvsd.pool.planner import Planner
    from lvsd.pool.table import DestKey

    assert pool.plan is not None
    plan, health, actual, stats = pool.plan, pool.health, pool.reconciler.actual, pool.stats

    draining: dict[str, list[tuple[RealServerId, float]]] = {}
    for rid, end in plan.draining.items():
        draining.setdefault(rid.vs, []).append((rid, end))
    out = []
    for vs in cfg.virtual_servers:
        st = plan.states.get(vs.ident)
        services = tuple(st.services) if st else ()
        rss = []
        for rs in vs.real_servers:
            rid = Planner.rs_id(vs, rs)
            h = health.get(rid)
            alive = h.alive if h is not None else (None if rs.checkers else True)
            d = _in_dataplane(rid.addr, (rs.port,), services, actual, stats, DestKey)
            rss.append(m.RealServerStatus(
                address=rid.addr, port=rs.port, alive=alive, in_dataplane=d.weight is not None,
                dataplane_weight=d.weight, configured_weight=rs.weight,
                dynamic_weight=h.dynamic_weight if h else None,
                failed_checkers=h.failed_checkers if h else (),
                since=conv(h.since) if h and h.since else None,
                reason=h.reason if h else "", active_conns=d.active, inactive_conns=d.inactive,
                forward=d.forward, stats=d.stats))
        for rid, end in sorted(draining.get(vs.ident, ()), key=lambda x: (x[0].addr, x[0].port)):
            d = _in_dataplane(rid.addr, (rid.port,), services, actual, stats, DestKey)
            rss.append(m.RealServerStatus(
                address=rid.addr, port=rid.port, alive=None, in_dataplane=d.weight is not None,
                dataplane_weight=d.weight, configured_weight=0, reason=DRAIN_REASON,
                active_conns=d.active, inactive_conns=d.inactive, draining=True,
                draining_until=conv(end), forward=d.forward, stats=d.stats))
        sorry = None
        if vs.sorry_server is not None:
            sorry = hostport(vs.sorry_server.address, vs.sorry_server.port)
        live = 0
        for skey in services:
            entry = actual.get(skey)
            if entry is not None:
                live += sum(d.weight for d in entry.dests.values())
        spec = _service_spec(services, actual, plan.table)
        if spec is not None:  # a timeout means persistent (dataplane/ipvs.py canonical form)
            flags, ptime, gran = spec.flags - {"persistent"}, spec.persistence_timeout, \
                spec.persistence_granularity
        else:
            flags, ptime, gran = vs.sched_flags, vs.persistence_timeout, \
                vs.persistence_granularity
        tot = _service_totals(services, actual, stats)
        out.append(m.VirtualServerStatus(
            ident=vs.ident, services=tuple(str(k) for k in services),
            protocol=vs.protocol.value, scheduler=vs.lb_algo, lb_kind=vs.lb_kind.value,
            quorum=vs.quorum, quorum_up=st.quorum_up if st else False,
            alive=st.alive if st else 0, live_weight=live, sorry_server=sorry,
            sorry_active=st.sorry_active if st else False, real_servers=tuple(rss),
            flags=tuple(sorted(flags)), persistence_timeout=ptime,
            persistence_granularity=gran if ptime is not None else None,
            active_conns=tot.active, inactive_conns=tot.inactive, stats=tot.stats))
    return tuple(out)


def checkers_status(checkers: Iterable[SchedCheckerStatus],
                    conv: Conv) -> tuple[m.CheckerStatus, ...]:
    with _collector_paused():
        return _checkers_status(checkers, conv)


def _checkers_status(checkers: Iterable[SchedCheckerStatus],
                     conv: Conv) -> tuple[m.CheckerStatus, ...]:
    out = []
    for c in checkers:
        for rid in c.servers:
            out.append(m.CheckerStatus(
                checker=c.label, vs=rid.vs, real_server=hostport(rid.addr, rid.port),
                kind=c.label.split(" ", 1)[0], up=c.up,
                last_result=None if c.last_ok is None else (
                    "success" if c.last_ok else "failure"),
                latency_seconds=c.last_latency,
                error=None if c.last_ok in (True, None) else c.last_reason,
                last_check_at=conv(c.last_at), next_check_at=conv(c.next_check),
                consecutive_failures=c.retry_it, checks_total=c.attempts,
                failures=dict(c.failures)))
    return tuple(out)


def reconciler_status(pool: PoolView) -> m.ReconcilerStatus:
    s = pool.reconciler
    return m.ReconcilerStatus(
        dataplane=s.dataplane, last_run_at=s.last_reconcile, runs_total=s.reconciles,
        ops_total=s.ops_applied, repairs_total=s.repairs, errors_total=pool.errors_total,
        last_ops=pool.last_ops,
        alarms=tuple(f"{a.op}: {a.error} (x{a.count})" for a in s.alarms),
        last_error=pool.last_error,
        timeouts_desired=s.timeouts_desired.named() if s.timeouts_desired is not None else {},
        timeouts_kernel=s.timeouts_kernel.named() if s.timeouts_kernel is not None else {},
        sync_instance=pool.sync_instance, sync_vrrp_state=pool.sync_vrrp_state,
        sync_daemons=sync_daemon_status(pool))


def sync_daemon_status(pool: PoolView) -> tuple[m.SyncDaemonStatus, ...]:
    """Per role: the kernel's daemon where one runs (else the wanted one), wanted or not."""
    s = pool.reconciler
    want = {d.role: d for d in s.sync_desired}
    have = {d.role: d for d in s.sync_kernel or ()}
    out = []
    for role in sorted(want.keys() | have.keys()):
        d = have.get(role) or want[role]
        out.append(m.SyncDaemonStatus(role=role.value, interface=d.interface,
                                      sync_id=d.sync_id, desired=role in want,
                                      running=role in have, maxlen=d.maxlen, group=d.group,
                                      port=d.port, ttl=d.ttl))
    return tuple(out)
