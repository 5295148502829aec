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

Besides lvsd's own families, the registry carries prometheus-client's standard process
collector (``process_resident_memory_bytes``, ``process_cpu_seconds_total``,
``process_open_fds``, ``process_start_time_seconds``, ...), read from ``/proc`` at scrape time.

Traffic: the data plane's counters (``ipvsadm -Ln --stats``) are exported as counters per
virtual and per real server; the rates (``--rate``) are not, ``rate()`` computes them.
Checkers are labelled by ``kind`` (``HTTP_GET``, ``TCP_CHECK``, ...) and ``target`` (what the
checker probes: ``addr:port`` and the URL paths or script), not by one composite string.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import cast

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString as _untyped_go

from lvsd.status.limits import REASONS, EndpointStats
from lvsd.status.model import Snapshot, TrafficStats, hostport

#: prometheus-client's number format (Go's), typed
floatToGoString = cast(Callable[[float], str], _untyped_go)

VRRP_STATES = ("INIT", "BACKUP", "MASTER", "FAULT", "STOPPED")


def _b(v: bool | None) -> float:
    return 1.0 if v else 0.0


def _i(v: bool | None) -> int:
    """:func:`_b` for a :class:`_Text` family (same text, its integer fast path)."""
    return 1 if v else 0


def _esc(value: str) -> str:
    """A label value escaped as the text format wants it (as prometheus-client does)."""
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r'\"')


class _Text(Metric):
    """A family written straight to exposition text, exactly as ``generate_latest`` writes it
    (HELP, TYPE, label names sorted, values escaped, ``floatToGoString``), without a ``Sample``
    and a labels dict per series. The per-server and per-checker families have tens of
    thousands of series on a big pool: the library's path for them took most of a scrape's CPU.
    ``add_metric`` takes label values already escaped (:func:`_esc`): a row's labels are shared
    by several families and escaped once. Only :func:`render` writes it (``samples`` stays
    empty)."""

    def __init__(self, name: str, doc: str, typ: str, labels: Sequence[str]) -> None:
        super().__init__(name, doc, typ)
        full = f"{name}_total" if typ == "counter" else name
        doc = doc.replace("\\", r"\\").replace("\n", r"\n")
        self.head = f"# HELP {full} {doc}\n# TYPE {full} {typ}\n"
        order = sorted(range(len(labels)), key=labels.__getitem__)
        self._tmpl = (full + "{{" + ",".join(f'{labels[i]}="{{{i}}}"' for i in order) + "}} "
                      if labels else full + " ")
        self.lines: list[str] = []

    def add_metric(self, values: Sequence[str], value: float) -> None:
        # most values are small counts, weights and 0/1: what floatToGoString writes for
        # them is the integer and ".0" (it switches to exponents from 1e6 on)
        txt = (f"{value}.0" if type(value) is int and 0 <= value < 1_000_000
               else floatToGoString(value))
        self.lines.append(f"{self._tmpl.format(*values)}{txt}\n")

    def text(self) -> str:
        return self.head + "".join(self.lines)


class _One(Collector):
    """One ordinary family, for ``generate_latest``."""

    def __init__(self, metric: Metric) -> None:
        self._metric = metric

    def collect(self) -> Iterable[Metric]:
        return (self._metric,)


class _Traffic:
    """The traffic families of one level (``virtual_server`` or ``real_server``): connections
    now (active, inactive) and the data plane's counters since the entry was created."""

    def __init__(self, level: str, labels: list[str]) -> None:
        p = f"lvsd_{level}"
        self.active = _Text(f"{p}_active_connections", "Active connections (data plane)",
                            "gauge", labels)
        self.inactive = _Text(f"{p}_inactive_connections", "Inactive connections (data plane)",
                              "gauge", labels)
        self.conns = _Text(f"{p}_connections", "Connections scheduled (ipvsadm --stats Conns)",
                           "counter", labels)
        dl = [*labels, "direction"]
        self.packets = _Text(f"{p}_packets", "Packets (ipvsadm --stats InPkts/OutPkts)",
                             "counter", dl)
        self.bytes = _Text(f"{p}_bytes", "Bytes (ipvsadm --stats InBytes/OutBytes)",
                           "counter", dl)

    def add(self, lab: list[str], active: int | None, inactive: int | None,
            st: TrafficStats | None) -> None:
        if active is not None:
            self.active.add_metric(lab, active)
        if inactive is not None:
            self.inactive.add_metric(lab, inactive)
        if st is not None:
            self.conns.add_metric(lab, st.conns)
            self.packets.add_metric([*lab, "in"], st.inpkts)
            self.packets.add_metric([*lab, "out"], st.outpkts)
            self.bytes.add_metric([*lab, "in"], st.inbytes)
            self.bytes.add_metric([*lab, "out"], st.outbytes)

    def families(self) -> tuple[Metric, ...]:
        return (self.active, self.inactive, self.conns, self.packets, self.bytes)


class SnapshotCollector:
    """A prometheus-client collector reading a snapshot provider."""

    def __init__(self, provider: Callable[[], Snapshot]) -> None:
        self._provider = provider

    def describe(self) -> Iterable[Metric]:
        return []  # unchecked collector: families depend on the snapshot

    def collect(self) -> Iterator[Metric]:
        s = self._provider()
        info = GaugeMetricFamily("lvsd_info", "lvsd build and config identity (always 1)",
                                 labels=["version", "config_id", "router_id", "mode",
                                         "dataplane"])
        info.add_metric([s.process.version, s.config.config_id, s.config.router_id or "",
                         s.process.mode, s.reconciler.dataplane], 1.0)
        yield info
        g = GaugeMetricFamily("lvsd_ready", "1 once the first full reconcile has happened")
        g.add_metric([], _b(s.process.ready))
        yield g
        g = GaugeMetricFamily("lvsd_start_time_seconds", "Process start time (Unix seconds)")
        g.add_metric([], s.process.started_at)
        yield g
        g = GaugeMetricFamily("lvsd_event_loop_max_stall_seconds",
                              "Longest event-loop stall seen since start (lvsd.daemon.loopwatch)",
                              labels=["loop"])
        for name, v in sorted(s.process.loop_max_stall.items()):
            g.add_metric([name], v)
        yield g
        c = CounterMetricFamily("lvsd_event_loop_stalls_over_threshold",
                                "Stalls longer than the loop's threshold (VRRP: a quarter of the "
                                "shortest master down interval)", labels=["loop"])
        for name, n in sorted(s.process.loop_stalls_over_threshold.items()):
            c.add_metric([name], n)
        yield c
        c = CounterMetricFamily("lvsd_vrrp_child_respawns", "Times the VRRP child process died "
                                "and was started again")
        c.add_metric([], s.process.vrrp_respawns)
        yield c

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
        vfail = CounterMetricFamily("lvsd_vrrp_vip_add_failures",
                                    "Times this node became MASTER but could not add its VIPs "
                                    "(it went to FAULT and retries)", labels=il)
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
            vfail.add_metric([i.name], i.vip_add_failures)
        yield from (state, base, eff, mprio, vips, adv_s, adv_r, became, released, pz_s, pz_r,
                    inval, vfail)

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
        rup = _Text("lvsd_real_server_up", "1 if alive (all checkers up)", "gauge", rl)
        rin = _Text("lvsd_real_server_in_dataplane", "1 if present in the data plane", "gauge",
                    rl)
        rw = _Text("lvsd_real_server_weight", "Weight in the data plane (absent: 0)", "gauge",
                   rl)
        rcw = _Text("lvsd_real_server_configured_weight", "Configured weight", "gauge", rl)
        vtraffic = _Traffic("virtual_server", vl)
        rtraffic = _Traffic("real_server", rl)
        rdr = _Text("lvsd_real_server_draining_until_timestamp_seconds",
                    "Removed by a reload, draining at weight 0 until (Unix seconds)", "gauge", rl)
        for vs in s.virtual_servers:
            q.add_metric([vs.ident], _b(vs.quorum_up))
            sorry.add_metric([vs.ident], _b(vs.sorry_active))
            lw.add_metric([vs.ident], vs.live_weight)
            alive.add_metric([vs.ident], vs.alive)
            vid = _esc(vs.ident)
            vtraffic.add([vid], vs.active_conns, vs.inactive_conns, vs.stats)
            for rs in vs.real_servers:
                lab = [vid, _esc(hostport(rs.address, rs.port))]
                if rs.draining:  # no checker any more: no up/down verdict
                    rdr.add_metric(lab, rs.draining_until or 0.0)
                else:
                    rup.add_metric(lab, _i(rs.alive))
                rin.add_metric(lab, _i(rs.in_dataplane))
                rw.add_metric(lab, rs.dataplane_weight or 0)
                rcw.add_metric(lab, rs.configured_weight)
                rtraffic.add(lab, rs.active_conns, rs.inactive_conns, rs.stats)
        yield from (q, sorry, lw, alive, *vtraffic.families(), rup, rin, rw, rcw,
                    *rtraffic.families(), rdr)

        # ---- checkers
        cl = ["virtual_server", "real_server", "kind", "target"]
        cup = _Text("lvsd_checker_up", "1 if the checker's verdict is up", "gauge", cl)
        clat = _Text("lvsd_checker_latency_seconds", "Duration of the last check", "gauge", cl)
        cnext = _Text("lvsd_checker_next_check_timestamp_seconds",
                      "When the next check is due (Unix seconds)", "gauge", cl)
        ctot = _Text("lvsd_checker_checks", "Checks run", "counter", cl)
        cfail = _Text("lvsd_checker_failures", "Failed checks by reason class (local, script, "
                      "timeout, refused, reset, unreachable, tls, http_status, content, other)",
                      "counter", [*cl, "reason"])
        for ch in s.checkers:
            # "HTTP_GET 192.0.2.1:80 /health" -> kind HTTP_GET, target "192.0.2.1:80 /health"
            lab = [_esc(ch.vs), _esc(ch.real_server), _esc(ch.kind),
                   _esc(ch.checker.split(" ", 1)[-1])]
            cup.add_metric(lab, _i(ch.up))
            if ch.latency_seconds is not None:
                clat.add_metric(lab, ch.latency_seconds)
            if ch.next_check_at is not None:
                cnext.add_metric(lab, ch.next_check_at)
            ctot.add_metric(lab, ch.checks_total)
            for reason, n in sorted(ch.failures.items()):
                cfail.add_metric([*lab, _esc(reason)], n)
        yield from (cup, clat, cnext, ctot, cfail)

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
        g = GaugeMetricFamily("lvsd_sync_daemon_running", "1 while the kernel runs this IPVS "
                              "connection sync daemon (last read), 0 if wanted but not running",
                              labels=["role", "interface", "sync_id", "desired"])
        for sd in r.sync_daemons:
            g.add_metric([sd.role, sd.interface, str(sd.sync_id), str(sd.desired).lower()],
                         _b(sd.running))
        yield g
        if r.last_run_at is not None:
            g = GaugeMetricFamily("lvsd_reconciler_last_run_timestamp_seconds",
                                  "When the last reconcile ran (Unix seconds)")
            g.add_metric([], r.last_run_at)
            yield g

        # ---- BGP announcement mode (docs/bgp.md)
        if s.bgp is not None:
            g = GaugeMetricFamily("lvsd_bgp_announced", "1 while lvsd announces this "
                                  "bgp_announce route, 0 while it is withdrawn",
                                  labels=["name", "address"])
            for an in s.bgp.announcements:
                g.add_metric([an.name, an.address], _b(an.state == "announced"))
            yield g
            g = GaugeMetricFamily("lvsd_bgp_session_up", "1 while the BGP session with this "
                                  "neighbor is Established", labels=["neighbor"])
            for se in s.bgp.sessions:
                g.add_metric([se.neighbor], _b(se.state == "Established"))
            yield g


class EndpointCollector:
    """The status endpoint's own limits (:mod:`lvsd.status.limits`): what it refused or closed
    and what is open, from an :class:`EndpointStats` taken with the snapshot."""

    def __init__(self, stats: EndpointStats) -> None:
        self._stats = stats

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        st = self._stats
        c = CounterMetricFamily("lvsd_status_rejected", "Status requests refused (429/503) and "
                                "connections closed by the endpoint's limits, by reason",
                                labels=["reason"])
        for reason in REASONS:
            c.add_metric([reason], st.rejected.get(reason, 0))
        yield c
        for name, v, doc in (
                ("connections_open", st.connections_open, "Open TCP connections"),
                ("requests_in_flight", st.requests_in_flight, "Requests being answered"),
                ("streams_open", st.streams_open, "Open /events streams"),
                ("max_connections", st.max_connections, "Cap on open TCP connections")):
            g = GaugeMetricFamily(f"lvsd_status_{name}", f"{doc} (status endpoint)")
            g.add_metric([], v)
            yield g


def make_registry(provider: Callable[[], Snapshot],
                  endpoint: EndpointStats | None = None) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(SnapshotCollector(provider))
    if endpoint is not None:
        reg.register(EndpointCollector(endpoint))
    ProcessCollector(registry=reg)  # process_*: RSS, CPU, fds, start time (from /proc)
    return reg


def render(registry: CollectorRegistry) -> bytes:
    """The text exposition of ``registry``: ``generate_latest``'s, with the big families
    (:class:`_Text`) written by themselves."""
    out: list[str] = []
    for metric in registry.collect():
        if isinstance(metric, _Text):
            out.append(metric.text())
        else:
            out.append(generate_latest(_One(metric)).decode())
    return "".join(out).encode()
