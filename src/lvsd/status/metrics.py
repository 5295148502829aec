"""Prometheus metrics computed from the status snapshot at scrape time.

Theory of operation
-------------------
No metric state is kept here: :class:`SnapshotCollector` is a custom prometheus-client
collector that takes a fresh :class:`~lvsd.status.model.Snapshot` on every scrape and turns it
into metric families. Counters are the daemon's own monotonically increasing counts (adverts,
checks, reconciler ops), so a restart resets them, which Prometheus' ``rate()`` handles.

Names follow the Prometheus conventions: ``lvsd_`` prefix, base units in the name
(``_seconds``), ``_total`` for counters (added by the client library), boolean states as 0/1
gauges, enumerations as one gauge per value (``lvsd_vrrp_state{state="MASTER"} 1``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from lvsd.status.model import Snapshot, hostport

VRRP_STATES = ("INIT", "BACKUP", "MASTER", "FAULT", "STOPPED")


def _b(v: bool | None) -> float:
    return 1.0 if v else 0.0


class SnapshotCollector:
    """A prometheus-client collector reading a snapshot provider."""

    def __init__(self, provider: Callable[[], Snapshot]) -> None:
        self._provider = provider

    def describe(self) -> Iterable[Metric]:
        return []  # unchecked collector: families depend on the snapshot

    def collect(self) -> Iterator[Metric]:
        s = self._provider()
        info = GaugeMetricFamily("lvsd_info", "lvsd build and config identity (always 1)",
                                 labels=["version", "config_id", "mode", "dataplane"])
        info.add_metric([s.process.version, s.config.config_id, s.process.mode,
                         s.reconciler.dataplane], 1.0)
        yield info
        g = GaugeMetricFamily("lvsd_ready", "1 once the first full reconcile has happened")
        g.add_metric([], _b(s.process.ready))
        yield g
        g = GaugeMetricFamily("lvsd_start_time_seconds", "Process start time (Unix seconds)")
        g.add_metric([], s.process.started_at)
        yield g

        # ---- config
        g = GaugeMetricFamily("lvsd_config_loaded_timestamp_seconds",
                              "When the running config was loaded (Unix seconds)")
        g.add_metric([], s.config.loaded_at)
        yield g
        g = GaugeMetricFamily("lvsd_config_last_reload_success",
                              "1 if the last reload was applied, 0 if rejected (1 if never)")
        g.add_metric([], 0.0 if s.config.last_reload_ok is False else 1.0)
        yield g
        c = CounterMetricFamily("lvsd_config_reloads", "Reload attempts (SIGHUP)")
        c.add_metric([], s.config.reloads_total)
        yield c
        c = CounterMetricFamily("lvsd_config_reload_failures", "Reloads rejected")
        c.add_metric([], s.config.reload_failures_total)
        yield c
        g = GaugeMetricFamily("lvsd_config_diagnostics",
                              "Diagnostics of the running config by severity (error: logged "
                              "and skipped as keepalived does; warning: lvsd notices)",
                              labels=["severity"])
        for sev in ("warning", "error", "fatal"):
            g.add_metric([sev], float(s.config.diagnostics_total.get(sev, 0)))
        yield g

        # ---- VRRP
        il = ["instance"]
        state = GaugeMetricFamily("lvsd_vrrp_state", "VRRP state, one series per state",
                                  labels=["instance", "state"])
        base = GaugeMetricFamily("lvsd_vrrp_base_priority", "Configured priority", labels=il)
        eff = GaugeMetricFamily("lvsd_vrrp_effective_priority",
                                "Priority after tracking adjustments", labels=il)
        mprio = GaugeMetricFamily("lvsd_vrrp_master_priority",
                                  "Priority of the current master as last seen", labels=il)
        vips = GaugeMetricFamily("lvsd_vrrp_vips_held", "1 while this node holds the VIPs",
                                 labels=il)
        adv_s = CounterMetricFamily("lvsd_vrrp_adverts_sent", "Adverts sent", labels=il)
        adv_r = CounterMetricFamily("lvsd_vrrp_adverts_received", "Valid adverts received",
                                    labels=il)
        became = CounterMetricFamily("lvsd_vrrp_became_master", "Transitions to MASTER",
                                     labels=il)
        released = CounterMetricFamily("lvsd_vrrp_released_master",
                                       "Transitions out of MASTER", labels=il)
        pz_s = CounterMetricFamily("lvsd_vrrp_priority_zero_sent",
                                   "Priority 0 adverts sent", labels=il)
        pz_r = CounterMetricFamily("lvsd_vrrp_priority_zero_received",
                                   "Priority 0 adverts received", labels=il)
        inval = CounterMetricFamily("lvsd_vrrp_invalid_packets",
                                    "Packets discarded, by reason", labels=["instance", "reason"])
        for i in s.instances:
            for st in VRRP_STATES:
                state.add_metric([i.name, st], _b(i.state == st))
            base.add_metric([i.name], i.base_priority)
            eff.add_metric([i.name], i.effective_priority)
            if i.master_priority is not None:
                mprio.add_metric([i.name], i.master_priority)
            vips.add_metric([i.name], _b(i.vips_held))
            adv_s.add_metric([i.name], i.adverts_sent)
            adv_r.add_metric([i.name], i.adverts_received)
            became.add_metric([i.name], i.became_master)
            released.add_metric([i.name], i.released_master)
            pz_s.add_metric([i.name], i.priority_zero_sent)
            pz_r.add_metric([i.name], i.priority_zero_received)
            for reason, n in sorted(i.invalid_packets.items()):
                inval.add_metric([i.name, reason], n)
        yield from (state, base, eff, mprio, vips, adv_s, adv_r, became, released, pz_s, pz_r,
                    inval)

        # ---- virtual / real servers
        vl = ["virtual_server"]
        q = GaugeMetricFamily("lvsd_virtual_server_quorum_up", "1 while quorum is met", labels=vl)
        sorry = GaugeMetricFamily("lvsd_virtual_server_sorry_server_active",
                                  "1 while the sorry server is in the pool", labels=vl)
        lw = GaugeMetricFamily("lvsd_virtual_server_live_weight",
                               "Sum of weights in the data plane", labels=vl)
        alive = GaugeMetricFamily("lvsd_virtual_server_real_servers_alive",
                                  "Real servers alive", labels=vl)
        rl = ["virtual_server", "real_server"]
        rup = GaugeMetricFamily("lvsd_real_server_up", "1 if alive (all checkers up)", labels=rl)
        rin = GaugeMetricFamily("lvsd_real_server_in_dataplane",
                                "1 if present in the data plane", labels=rl)
        rw = GaugeMetricFamily("lvsd_real_server_weight",
                               "Weight in the data plane (absent: 0)", labels=rl)
        rcw = GaugeMetricFamily("lvsd_real_server_configured_weight", "Configured weight",
                                labels=rl)
        rac = GaugeMetricFamily("lvsd_real_server_active_connections",
                                "Active connections (data plane)", labels=rl)
        rdr = GaugeMetricFamily("lvsd_real_server_draining_until_timestamp_seconds",
                                "Removed by a reload, draining at weight 0 until (Unix seconds)",
                                labels=rl)
        for vs in s.virtual_servers:
            q.add_metric([vs.ident], _b(vs.quorum_up))
            sorry.add_metric([vs.ident], _b(vs.sorry_active))
            lw.add_metric([vs.ident], vs.live_weight)
            alive.add_metric([vs.ident], vs.alive)
            for rs in vs.real_servers:
                lab = [vs.ident, hostport(rs.address, rs.port)]
                if rs.draining:  # no checker any more: no up/down verdict
                    rdr.add_metric(lab, rs.draining_until or 0.0)
                else:
                    rup.add_metric(lab, _b(rs.alive))
                rin.add_metric(lab, _b(rs.in_dataplane))
                rw.add_metric(lab, rs.dataplane_weight or 0)
                rcw.add_metric(lab, rs.configured_weight)
                if rs.active_conns is not None:
                    rac.add_metric(lab, rs.active_conns)
        yield from (q, sorry, lw, alive, rup, rin, rw, rcw, rac, rdr)

        # ---- checkers
        cl = ["virtual_server", "real_server", "checker"]
        cup = GaugeMetricFamily("lvsd_checker_up", "1 if the checker's verdict is up", labels=cl)
        clat = GaugeMetricFamily("lvsd_checker_latency_seconds", "Duration of the last check",
                                 labels=cl)
        cnext = GaugeMetricFamily("lvsd_checker_next_check_timestamp_seconds",
                                  "When the next check is due (Unix seconds)", labels=cl)
        ctot = CounterMetricFamily("lvsd_checker_checks", "Checks run", labels=cl)
        for ch in s.checkers:
            lab = [ch.vs, ch.real_server, ch.checker]
            cup.add_metric(lab, _b(ch.up))
            if ch.latency_seconds is not None:
                clat.add_metric(lab, ch.latency_seconds)
            if ch.next_check_at is not None:
                cnext.add_metric(lab, ch.next_check_at)
            ctot.add_metric(lab, ch.checks_total)
        yield from (cup, clat, cnext, ctot)

        # ---- reconciler
        r = s.reconciler
        c = CounterMetricFamily("lvsd_reconciler_runs", "Reconcile passes")
        c.add_metric([], r.runs_total)
        yield c
        c = CounterMetricFamily("lvsd_reconciler_operations", "Data plane operations applied")
        c.add_metric([], r.ops_total)
        yield c
        c = CounterMetricFamily("lvsd_reconciler_repairs",
                                "Data plane drift found and corrected")
        c.add_metric([], r.repairs_total)
        yield c
        c = CounterMetricFamily("lvsd_reconciler_errors", "Operations that failed")
        c.add_metric([], r.errors_total)
        yield c
        g = GaugeMetricFamily("lvsd_reconciler_alarms", "Current alarms")
        g.add_metric([], len(r.alarms))
        yield g
        if r.last_run_at is not None:
            g = GaugeMetricFamily("lvsd_reconciler_last_run_timestamp_seconds",
                                  "When the last reconcile ran (Unix seconds)")
            g.add_metric([], r.last_run_at)
            yield g


def make_registry(provider: Callable[[], Snapshot]) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(SnapshotCollector(provider))
    return reg


def render(registry: CollectorRegistry) -> bytes:
    out: bytes = generate_latest(registry)
    return out
