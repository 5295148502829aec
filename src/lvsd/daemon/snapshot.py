"""Status snapshot assembly: the running parts (VRRP runners, check scheduler, the pool
service's :class:`~lvsd.pool.service.PoolView`) turned into the frozen values of
:mod:`lvsd.status.model`.

Pure functions of what they are given (no clock, no I/O): monotonic times are turned into Unix
times by the ``conv`` the caller passes (one fixed offset, so repeated snapshots agree).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from lvsd.status import model as m
from lvsd.status.model import hostport

if TYPE_CHECKING:
    from lvsd.checks.health import RealServerId
    from lvsd.checks.scheduler import CheckerStatus as SchedCheckerStatus
    from lvsd.config.model import Config
    from lvsd.config.verdict import Verdict
    from lvsd.pool.service import PoolView
    from lvsd.pool.table import DestKey, DestStats, ServiceEntry, ServiceKey
    from lvsd.vrrp.runner import VrrpRunner

Conv = Callable[[float | None], float | None]
Stats = Mapping[tuple["ServiceKey", "DestKey"], "DestStats"]

TRANSITIONS_KEPT = 20
DRAIN_REASON = "removed by reload: draining at weight 0"


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
                vips_held=state == "MASTER", sync_group=group,
                transitions=trans, adverts_sent=c.adverts_sent,
                adverts_received=c.adverts_received, became_master=c.became_master,
                released_master=c.released_master,
                priority_zero_sent=c.priority_zero_sent,
                priority_zero_received=c.priority_zero_received,
                invalid_packets=dict(c.invalid),
                fault_reasons=r.fault_reasons))
    return tuple(out)


def _in_dataplane(addr: str, ports: Iterable[int], services: Iterable[ServiceKey],
                  actual: Mapping[ServiceKey, ServiceEntry],
                  stats: Stats) -> tuple[int | None, int | None, int | None]:
    """(weight, active, inactive connections) of a real server as the data plane holds it."""
    from lvsd.pool.table import DestKey

    weight = ac = ic = None
    for skey in services:
        entry = actual.get(skey)
        if entry is None:
            continue
        # NAT: the real server's port; DR/TUN: the service's (planner rule)
        for port in {*ports, skey.port}:
            dkey = DestKey(addr, port)
            d = entry.dests.get(dkey)
            if d is None:
                continue
            weight = d.weight
            ds = stats.get((skey, dkey))
            if ds is not None:
                ac = (ac or 0) + ds.active_conns
                ic = (ic or 0) + ds.inactive_conns
    return weight, ac, ic


def vs_status(cfg: Config | None, pool: PoolView | None,
              conv: Conv) -> tuple[m.VirtualServerStatus, ...]:
    """One entry per configured virtual server, its configured real servers first, then those a
    reload removed that are still draining (``Plan.draining``); the data plane's side is the
    reconciler's view of the table and the last counters."""
    if cfg is None or pool is None or pool.plan is None:
        return ()
    from lvsd.pool.planner import Planner

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
            weight, ac, ic = _in_dataplane(rid.addr, (rs.port,), services, actual, stats)
            rss.append(m.RealServerStatus(
                address=rid.addr, port=rs.port, alive=alive, in_dataplane=weight is not None,
                dataplane_weight=weight, configured_weight=rs.weight,
                dynamic_weight=h.dynamic_weight if h else None,
                failed_checkers=h.failed_checkers if h else (),
                since=conv(h.since) if h and h.since else None,
                reason=h.reason if h else "", active_conns=ac, inactive_conns=ic))
        for rid, end in sorted(draining.get(vs.ident, ()), key=lambda x: (x[0].addr, x[0].port)):
            weight, ac, ic = _in_dataplane(rid.addr, (rid.port,), services, actual, stats)
            rss.append(m.RealServerStatus(
                address=rid.addr, port=rid.port, alive=None, in_dataplane=weight is not None,
                dataplane_weight=weight, configured_weight=0, reason=DRAIN_REASON,
                active_conns=ac, inactive_conns=ic, draining=True,
                draining_until=conv(end)))
        sorry = None
        if vs.sorry_server is not None:
            sorry = hostport(vs.sorry_server.address, vs.sorry_server.port)
        live = 0
        for skey in services:
            entry = actual.get(skey)
            if entry is not None:
                live += sum(d.weight for d in entry.dests.values())
        out.append(m.VirtualServerStatus(
            ident=vs.ident, services=tuple(str(k) for k in services),
            protocol=vs.protocol.value, scheduler=vs.lb_algo, lb_kind=vs.lb_kind.value,
            quorum=vs.quorum, quorum_up=st.quorum_up if st else False,
            alive=st.alive if st else 0, live_weight=live, sorry_server=sorry,
            sorry_active=st.sorry_active if st else False, real_servers=tuple(rss)))
    return tuple(out)


def checkers_status(checkers: Iterable[SchedCheckerStatus],
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
                consecutive_failures=c.retry_it, checks_total=c.attempts))
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
        timeouts_kernel=s.timeouts_kernel.named() if s.timeouts_kernel is not None else {})
