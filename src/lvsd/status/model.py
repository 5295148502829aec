"""The status snapshot: a read-only, JSON-ready picture of one running lvsd.

Theory of operation
-------------------
The daemon builds a :class:`Snapshot` on demand from the live objects it runs (VRRP runners,
check scheduler, reconciler, config) and hands it to the status app through a plain callable.
Everything here is a frozen value: the status side can serialise it, turn it into metrics or
render it, but it holds no reference back into the daemon, so status reads and never steers.

``GET /status`` returns :func:`to_json` of a snapshot; the field list below *is* the documented
schema (``docs/operations.md`` repeats it). Times are Unix seconds (float, wall clock) so that
other hosts can read them; ``None`` means "unknown / not yet".

Secrets (``auth_pass``) never enter a snapshot; :func:`redact` is a second fence that also
scrubs any known secret value from every string before it leaves the process.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# key names never output, wherever they appear, and what stands for a secret value
from lvsd.config.secrets import REDACTED, SECRET_KEYS

SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class Transition:
    """One state change: ``at`` (Unix s), ``old`` -> ``new`` and why."""

    at: float
    old: str
    new: str
    reason: str


@dataclass(frozen=True, slots=True)
class InstanceStatus:
    """One ``vrrp_instance``."""

    name: str
    vrid: int
    interface: str | None
    version: int
    family: int
    state: str  # INIT | BACKUP | MASTER | FAULT | STOPPED
    base_priority: int
    effective_priority: int
    master: str | None = None  # address of the current master (ourselves when MASTER)
    master_priority: int | None = None
    advert_int: float = 1.0
    vips: tuple[str, ...] = ()  # configured VIPs as CIDR
    vips_held: bool = False  # every VIP is on its interface (what netlink last did, not state)
    sync_group: str | None = None
    transitions: tuple[Transition, ...] = ()  # most recent last, bounded
    adverts_sent: int = 0
    adverts_received: int = 0
    became_master: int = 0
    released_master: int = 0
    priority_zero_sent: int = 0
    priority_zero_received: int = 0
    invalid_packets: Mapping[str, int] = field(default_factory=dict)  # by reason
    # why the instance is in FAULT (an interface down or missing with dynamic_interfaces, a
    # failed track_script / track_process, ...): empty when it is not
    fault_reasons: tuple[str, ...] = ()
    # a MASTER whose VIPs could not be added goes to FAULT ("VIPs not held: <error>") and
    # retries at vip_retry_at (Unix s; None: no such fault): how often that happened
    vip_add_failures: int = 0
    vip_retry_at: float | None = None


@dataclass(frozen=True, slots=True)
class CheckerStatus:
    """One health checker on one real server."""

    checker: str  # Checker.label, e.g. "HTTP_GET 192.0.2.1:80 /health"
    vs: str  # VirtualServer.ident
    real_server: str  # "addr:port"
    kind: str
    up: bool | None  # None: no verdict yet
    last_result: str | None = None  # "success" | "failure" | None before the first check
    latency_seconds: float | None = None
    error: str | None = None  # why the last check failed
    last_check_at: float | None = None
    next_check_at: float | None = None
    consecutive_failures: int = 0  # retries used in the current failure streak
    checks_total: int = 0  # probes run since this checker was created
    # failed probes since this checker was created, by reason class (timeout, refused, ...:
    # lvsd.checks.result.failure_class)
    failures: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TrafficStats:
    """Traffic counters as ``ipvsadm -Ln --stats`` shows them (connections, packets and bytes
    since the entry was created) and ``--rate`` (the kernel estimator's per-second rates).
    A service's are the sum of its destinations' as the data plane holds them now."""

    conns: int = 0
    inpkts: int = 0
    outpkts: int = 0
    inbytes: int = 0
    outbytes: int = 0
    cps: int = 0
    inpps: int = 0
    outpps: int = 0
    inbps: int = 0
    outbps: int = 0


@dataclass(frozen=True, slots=True)
class RealServerStatus:
    address: str
    port: int
    alive: bool | None  # None: not decided yet (before the first check)
    in_dataplane: bool  # present in the data plane's table right now
    dataplane_weight: int | None  # weight as the data plane holds it (None: absent)
    configured_weight: int
    dynamic_weight: int | None = None  # MISC_CHECK misc_dynamic / FILE_CHECK
    failed_checkers: tuple[str, ...] = ()
    since: float | None = None  # last transition (Unix s)
    reason: str = ""  # why the last transition happened
    active_conns: int | None = None
    inactive_conns: int | None = None
    # removed by a reload, kept at weight 0 until its connections end (lvs_drain_on_remove)
    draining: bool = False
    draining_until: float | None = None  # when the drain ends at the latest (Unix s)
    # forwarding method as the data plane holds it, in ipvsadm's words (Masq | Route | Tunnel
    # | Local | Bypass); None: not in the data plane
    forward: str | None = None
    # traffic counters (None: the data plane reports none for it)
    stats: TrafficStats | None = None


@dataclass(frozen=True, slots=True)
class VirtualServerStatus:
    ident: str  # VirtualServer.ident, e.g. "192.0.2.100:80/TCP"
    services: tuple[str, ...]  # data-plane services it maps to, e.g. ("TCP 192.0.2.100:80",)
    protocol: str
    scheduler: str
    lb_kind: str
    quorum: int
    quorum_up: bool
    alive: int  # real servers alive
    live_weight: int  # sum of weights in the data plane
    sorry_server: str | None = None
    sorry_active: bool = False
    real_servers: tuple[RealServerStatus, ...] = ()
    # as ``ipvsadm -Ln`` shows them, read from the data plane's table (the config's when the
    # service is not in it): scheduler flags (sh-fallback, sh-port, mh-fallback, mh-port,
    # ops, flag-N), persistence timeout in seconds (None: not persistent) and its granularity
    # (an IPv4 netmask or an IPv6 prefix length; None: a single address)
    flags: tuple[str, ...] = ()
    persistence_timeout: int | None = None
    persistence_granularity: str | None = None
    # connections and traffic of its services, the sum over their destinations
    active_conns: int | None = None
    inactive_conns: int | None = None
    stats: TrafficStats | None = None


@dataclass(frozen=True, slots=True)
class ReconcilerStatus:
    dataplane: str  # ipvs | nftables | memory | none
    last_run_at: float | None = None
    runs_total: int = 0
    ops_total: int = 0  # operations applied since start
    repairs_total: int = 0  # drift found in the data plane and put back
    errors_total: int = 0
    last_ops: tuple[str, ...] = ()  # ipvsadm-like descriptions of the last run's ops
    alarms: tuple[str, ...] = ()  # current alarms (e.g. a destination that cannot be set)
    last_error: str | None = None
    # IPVS connection timeouts (lvs_timeouts), ipvsadm's names -> seconds: what lvsd enforces
    # ({}: none) and what the kernel held at the last read ({}: never read)
    timeouts_desired: Mapping[str, int] = field(default_factory=dict)
    timeouts_kernel: Mapping[str, int] = field(default_factory=dict)
    # IPVS connection sync daemons (lvs_sync_daemon): the VRRP instance driving them and its
    # state as the pool knows it, and one entry per role wanted or running
    sync_instance: str | None = None
    sync_vrrp_state: str | None = None
    sync_daemons: tuple[SyncDaemonStatus, ...] = ()


@dataclass(frozen=True, slots=True)
class SyncDaemonStatus:
    """One kernel sync daemon role: wanted by lvsd and/or running in the kernel (last read)."""

    role: str  # master | backup
    interface: str
    sync_id: int
    desired: bool
    running: bool
    maxlen: int | None = None
    group: str | None = None
    port: int | None = None
    ttl: int | None = None


@dataclass(frozen=True, slots=True)
class ConfigDiagnostic:
    """One config diagnostic of the running config, with its position (keepalived's
    ``(FILE: Line N) message``): what was skipped, defaulted or reset, and lvsd's notices."""

    severity: str  # warning | error | fatal
    kind: str  # keepalived's class: unknown_keyword, invalid_number, general, security, lvsd...
    message: str
    file: str | None = None
    line: int | None = None

    @property
    def text(self) -> str:
        if self.file is None or not self.line:
            return self.message
        return f"({self.file}: Line {self.line}) {self.message}"


@dataclass(frozen=True, slots=True)
class ConfigStatus:
    file: str
    config_id: str
    loaded_at: float  # when the running config was loaded (Unix s)
    generation: int = 1  # 1 + number of successful reloads
    reloads_total: int = 0
    reload_failures_total: int = 0
    last_reload_at: float | None = None
    last_reload_ok: bool | None = None  # None: never reloaded
    last_reload_errors: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()  # diagnostics of the running config, as text
    # every diagnostic of the running config (sorted by position) and their count by severity
    diagnostics: tuple[ConfigDiagnostic, ...] = ()
    diagnostics_total: Mapping[str, int] = field(default_factory=dict)
    strict: bool = False  # --strict: any error refuses a config
    # global_defs router_id (None: not set; keepalived then uses the host name). ``config_id``
    # is ``-i``/``--config-id`` (default: the host name), which selects @conditional lines
    router_id: str | None = None


@dataclass(frozen=True, slots=True)
class ProcessStatus:
    pid: int
    version: str
    started_at: float
    mode: str  # full | vrrp-only | check-only
    ready: bool  # the first full reconcile has happened
    stopping: bool = False
    vrrp_pid: int | None = None  # the VRRP child process (modes that run VRRP)
    vrrp_respawns: int = 0  # times the VRRP child died and was started again
    # longest event-loop stall seen (seconds), per loop: "main" (checks, pool, status) and
    # "vrrp" (the VRRP child) - lvsd.daemon.loopwatch
    loop_max_stall: dict[str, float] = field(default_factory=dict)
    loop_stalls_over_threshold: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BgpAnnouncementStatus:
    """One ``bgp_announce`` (docs/bgp.md)."""

    name: str
    address: str  # the route, e.g. 10.0.0.100/32
    state: str  # announced | withdrawn
    reason: str  # why it is in that state
    since: float  # Unix s of the last transition
    healthy: bool | None  # the last health verdict (None: none yet)
    health_reason: str
    pending_until: float | None = None  # Unix s a pending transition happens if health holds


@dataclass(frozen=True, slots=True)
class BgpSessionStatus:
    neighbor: str
    state: str  # BIRD's: Idle, Connect, Active, OpenSent, OpenConfirm, Established, ...
    since: float  # Unix s (when lvsd saw it change)


@dataclass(frozen=True, slots=True)
class BgpStatus:
    """The BGP announcement mode: its announcements, its sessions, the BIRD process."""

    announcements: tuple[BgpAnnouncementStatus, ...] = ()
    sessions: tuple[BgpSessionStatus, ...] = ()
    bird_pid: int | None = None
    bird_running: bool = False
    bird_restarts: int = 0


@dataclass(frozen=True, slots=True)
class Snapshot:
    process: ProcessStatus
    config: ConfigStatus
    generated_at: float
    instances: tuple[InstanceStatus, ...] = ()
    virtual_servers: tuple[VirtualServerStatus, ...] = ()
    checkers: tuple[CheckerStatus, ...] = ()
    reconciler: ReconcilerStatus = field(default_factory=lambda: ReconcilerStatus("none"))
    schema: int = SCHEMA_VERSION
    bgp: BgpStatus | None = None  # None: the config has no BGP announcement mode


def hostport(addr: str, port: int) -> str:
    """``addr:port``, an IPv6 address in brackets (``[fd00::1]:80``)."""
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def redact(obj: Any, secrets: Iterable[str] = ()) -> Any:
    """A copy of a JSON-like value with secret keys dropped and secret values masked."""
    secret_values = tuple(s for s in secrets if s)
    return _redact(obj, secret_values)


def _redact(obj: Any, secrets: tuple[str, ...]) -> Any:
    if isinstance(obj, str):
        return scrub(obj, secrets)
    if isinstance(obj, Mapping):
        return {
            scrub(str(k), secrets): (REDACTED if str(k).lower() in SECRET_KEYS
                                     else _redact(v, secrets))
            for k, v in obj.items()
        }
    if isinstance(obj, list | tuple):
        return [_redact(v, secrets) for v in obj]
    return obj


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret replaced by ``<redacted>``."""
    for s in secrets:
        if s and s in text:
            text = text.replace(s, REDACTED)
    return text


#: exact types returned as they are by :func:`_plain`
_LEAVES = frozenset({type(None), bool, int, float})
#: per dataclass: its fields in order, each with "is a secret key"
_FIELDS: dict[type, tuple[tuple[str, bool], ...]] = {}


def _plain(obj: Any, secrets: tuple[str, ...]) -> Any:
    """One pass: dataclasses -> dicts, tuples -> lists, secret keys dropped, values scrubbed.

    (``dataclasses.asdict`` deep-copies everything first: 5x slower on a big pool.) The
    exact leaf types and the snapshot's dataclasses (fields looked up once per class) take a
    fast path: a big pool's snapshot is tens of thousands of them, rendered at every scrape.
    """
    t = type(obj)
    if t in _LEAVES:
        return obj
    fields = _FIELDS.get(t)
    if fields is None and dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        fields = _FIELDS[t] = tuple((f, f in SECRET_KEYS) for f in obj.__dataclass_fields__)
    if fields is not None:
        out: dict[str, Any] = {}
        for f, secret in fields:
            if secret:
                out[f] = REDACTED
                continue
            v = getattr(obj, f)
            tv = type(v)
            out[f] = v if tv in _LEAVES or (tv is str and not secrets) else _plain(v, secrets)
        return out
    if isinstance(obj, str):
        return scrub(obj, secrets) if secrets else obj
    if obj is None or isinstance(obj, bool | int | float):
        return obj
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f: (REDACTED if f in SECRET_KEYS else _plain(getattr(obj, f), secrets))
                for f in obj.__dataclass_fields__}
    if isinstance(obj, list | tuple):
        return [_plain(v, secrets) for v in obj]
    if isinstance(obj, Mapping):
        return {scrub(str(k), secrets): (REDACTED if str(k).lower() in SECRET_KEYS
                                         else _plain(v, secrets)) for k, v in obj.items()}
    return obj


def to_dict(snap: Snapshot, secrets: Iterable[str] = ()) -> dict[str, Any]:
    """The snapshot as the ``/status`` JSON object (redacted)."""
    out = _plain(snap, tuple(s for s in secrets if s))
    assert isinstance(out, dict)
    return out


def to_json(snap: Snapshot, secrets: Iterable[str] = (), *, indent: int | None = None) -> str:
    return json.dumps(to_dict(snap, secrets), indent=indent, sort_keys=False)
