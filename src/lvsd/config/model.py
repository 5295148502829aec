"""The typed, immutable model of a keepalived.conf (the parts lvsd implements).

Theory of operation
-------------------
The loader (grammar -> keyword handlers) turns a file into these frozen dataclasses, with every
default and every inheritance (virtual_server -> real_server -> checker, global_defs ->
vrrp_instance) already resolved, exactly as keepalived 2.x resolves them. Later layers never
look at raw text: they read the model, and every object carries ``pos`` (file, line) so any
later error can name ``file:line``. A ``pos`` (and ``interface_pos``) never takes part in
equality or hashing: two objects that differ only in where they were written are equal, which
is what reload change detection (VRRP runners, checkers, the pool) compares. A
:class:`Diagnostic` is the exception: its position is part of the message.

Secret values (``auth_pass``, the SSL ``password``; the list is :mod:`lvsd.config.secrets`)
are left out of ``repr``.

Durations are float seconds; addresses are normalised strings; ``None`` means "not set" where
keepalived distinguishes that from a default.

This module is a shared contract: extend it additively (new fields with defaults only).
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Any, TypeVar

_C = TypeVar("_C", bound=type)


def _fast_init(cls: _C) -> _C:
    """Give a frozen slots dataclass an ``__init__`` that stores each field through its slot's
    descriptor: the same parameters, defaults and resulting object as the generated one (which
    goes through ``object.__setattr__`` per field), in about half the time. For the classes a
    large load builds per line or per real server (a 37,000 server file: 310,000 ``Pos``,
    37,000 ``Checker`` of 41 fields)."""
    fields = dataclasses.fields(cls)
    assert cls.__dataclass_params__.frozen and "__slots__" in cls.__dict__  # type: ignore[attr-defined]
    assert not hasattr(cls, "__post_init__")
    ns: dict[str, object] = {}
    params: list[str] = []
    body: list[str] = []
    for i, f in enumerate(fields):
        assert f.init and f.default_factory is dataclasses.MISSING and not f.kw_only
        ns[f"_set{i}"] = cls.__dict__[f.name].__set__
        if f.default is dataclasses.MISSING:
            params.append(f.name)
        else:
            ns[f"_dflt{i}"] = f.default
            params.append(f"{f.name}=_dflt{i}")
        body.append(f"    _set{i}(self, {f.name})")
    exec(f"def __init__(self, {', '.join(params)}):\n" + "\n".join(body), ns)
    init: Any = ns["__init__"]
    generated: Any = cls.__dict__["__init__"]
    init.__qualname__ = generated.__qualname__
    init.__annotations__ = dict(generated.__annotations__)
    type.__setattr__(cls, "__init__", init)
    return cls


@_fast_init
@dataclass(frozen=True, order=True, slots=True)
class Pos:
    """A source position. ``str(pos)`` is ``file:line``."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


NOPOS = Pos("<default>", 0)


class Severity(enum.Enum):
    WARNING = "warning"
    ERROR = "error"  # keepalived logs it and runs: something was skipped, defaulted or reset
    FATAL = "fatal"  # keepalived would not run it (missing file, bad interface, ...)


class DiagKind(enum.Enum):
    """keepalived's ``config_err_t`` (lib/parser.h): what kind of problem a diagnostic is.

    keepalived cannot run a config with FILE_NOT_FOUND, BAD_IF or FATAL; with the others it logs
    and runs (skipping, defaulting or resetting what the message says). SECURITY is script
    security (``keepalived -t`` exit 6). LVSD marks lvsd-only notices (keepalived is silent).
    """

    FILE_NOT_FOUND = "file_not_found"
    BAD_IF = "bad_if"
    FATAL = "fatal"
    MULTIPLE_FILES = "multiple_files"
    UNKNOWN_KEYWORD = "unknown_keyword"
    UNEXPECTED_BOB = "unexpected_bob"
    MISSING_BOB = "missing_bob"
    UNEXPECTED_EOB = "unexpected_eob"
    MISSING_EOB = "missing_eob"
    UNMATCHED_QUOTE = "unmatched_quote"
    MISSING_PARAMETER = "missing_parameter"
    INVALID_NUMBER = "invalid_number"
    GENERAL = "general"
    WARNING = "warning"
    DEPRECATED = "deprecated"
    SECURITY = "security"
    LVSD = "lvsd"
    # keepalived only logs it when it runs (log_message, no config_err_t: `keepalived -t` is
    # silent), e.g. a notify script that is missing and so dropped (config/hostcheck.py)
    LOG = "log"


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One message about the config. ``severity`` says what lvsd does (WARNING: a notice;
    ERROR: keepalived logs it and runs, so does lvsd unless ``--strict``; FATAL: keepalived
    would not run the config, neither does lvsd); ``kind`` is keepalived's class of it.
    Unlike the model objects' ``pos``, a diagnostic's position is part of its identity."""

    pos: Pos | None
    severity: Severity
    message: str
    kind: DiagKind = DiagKind.GENERAL

    def __str__(self) -> str:
        # keepalived's format: "(FILE: Line N) message"
        if self.pos is None or self.pos.line == 0:
            return self.message
        return f"({self.pos.file}: Line {self.pos.line}) {self.message}"


@dataclass(frozen=True, slots=True)
class Unsupported:
    """A keyword keepalived knows but lvsd does not implement (kept, warned once)."""

    keyword: str
    pos: Pos = field(compare=False)
    context: str  # e.g. "vrrp_instance VI_1" or "global_defs"
    args: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Script:
    """A command line as written (notify_*, misc_path, quorum_up, vrrp_script script)."""

    command: str
    pos: Pos = field(default=NOPOS, compare=False)
    user: str | None = None  # "user group" after the command in keepalived syntax
    group: str | None = None


# --------------------------------------------------------------------------------- globals


@dataclass(frozen=True, slots=True)
class LvsSyncDaemon:
    interface: str
    instance: str | None = None  # VRRP instance name that drives master/backup
    id: int | None = None
    maxlen: int | None = None
    port: int | None = None
    ttl: int | None = None
    group: str | None = None
    pos: Pos = field(default=NOPOS, compare=False)


@dataclass(frozen=True, slots=True)
class LvsTimeouts:
    """``lvs_timeouts [tcp N] [tcpfin N] [udp N]``: IPVS connection timeouts in seconds
    (``ipvsadm --set``). None: not configured, the kernel's value is left (keepalived stores 0
    for that, global_parser.c lvs_timeouts)."""

    tcp: int | None = None
    tcp_fin: int | None = None
    udp: int | None = None
    pos: Pos = field(default=NOPOS, compare=False)


@dataclass(frozen=True, slots=True)
class SslGlobal:
    """The top-level ``SSL { ca certificate key password }`` block (SSL_GET client certs)."""

    ca: str | None = None
    certificate: str | None = None
    key: str | None = None
    password: str | None = field(default=None, repr=False)  # secret (lvsd.config.secrets)
    pos: Pos = field(default=NOPOS, compare=False)


@dataclass(frozen=True, slots=True)
class GlobalDefs:
    router_id: str | None = None
    script_user: str | None = None
    script_group: str | None = None
    enable_script_security: bool = False
    vrrp_version: int = 2
    vrrp_mcast_group4: str = "224.0.0.18"
    vrrp_mcast_group6: str = "ff02::12"
    vrrp_garp_master_delay: float = 5.0
    vrrp_garp_master_repeat: int = 5
    vrrp_garp_master_refresh: float = 0.0  # 0 = off
    vrrp_garp_master_refresh_repeat: int = 1
    vrrp_garp_interval: float = 0.0
    vrrp_gna_interval: float = 0.0
    vrrp_garp_lower_prio_delay: float | None = None
    vrrp_garp_lower_prio_repeat: int | None = None
    vrrp_lower_prio_no_advert: bool = False
    vrrp_higher_prio_send_advert: bool = False
    vrrp_strict: bool = False
    vrrp_check_unicast_src: bool = False
    vrrp_skip_check_adv_addr: bool = False
    vrrp_startup_delay: float = 0.0
    # the VRRP child process's scheduling (keepalived lib/process.c set_process_priorities)
    vrrp_priority: int | None = None  # nice value
    vrrp_rt_priority: int | None = None  # SCHED_RR priority (1-99)
    vrrp_rlimit_rttime: int | None = None  # RLIMIT_RTTIME, microseconds (with rt_priority)
    vrrp_no_swap: bool = False  # mlockall
    # FIFO lines on effective priority changes (instances/groups may override; vrrp.c)
    vrrp_notify_priority_changes: bool = False
    # instances may name interfaces that do not exist yet: FAULT until they appear
    dynamic_interfaces: bool = False
    dynamic_interfaces_allow_if_changes: bool = False
    lvs_flush: bool = False
    # "no" (default: leave the table), "all" (flush everything), "vs" (only our services)
    lvs_flush_on_stop: str = "no"
    lvs_sync_daemon: LvsSyncDaemon | None = None
    # lvsd extension: "both" (a backup sync daemon always, plus a master one on the VRRP
    # master) or "keepalived" (keepalived's switching: master or backup); lvsd.pool.syncd
    lvs_sync_daemon_mode: str = "both"
    notify_fifo: str | None = None
    notify_fifo_script: Script | None = None
    vrrp_notify_fifo: str | None = None
    vrrp_notify_fifo_script: Script | None = None
    lvs_notify_fifo: str | None = None
    lvs_notify_fifo_script: Script | None = None
    notification_email: tuple[str, ...] = ()
    notification_email_from: str | None = None
    smtp_server: str | None = None
    smtp_connect_timeout: float = 30.0
    ssl: SslGlobal | None = None
    pos: Pos = field(default=NOPOS, compare=False)
    checker_log_all_failures: bool = False  # log every failed check attempt while up
    # lvsd extension: seconds a real server removed by a reload stays at weight 0 before it is
    # deleted (0: keepalived, deleted at once); virtual_server may override it
    lvs_drain_on_remove: float = 0.0
    # lvs_timeouts: None (default) = leave the kernel's IPVS connection timeouts as they are
    lvs_timeouts: LvsTimeouts | None = None


# --------------------------------------------------------------------------------- VRRP


@dataclass(frozen=True, slots=True)
class VrrpScript:
    """``vrrp_script NAME { script interval timeout weight rise fall user init_fail }``."""

    name: str
    script: Script
    interval: float = 1.0
    timeout: float | None = None  # keepalived: unset -> interval (check vrrp_parser.c)
    weight: int = 0
    weight_reverse: bool = False
    rise: int = 1
    fall: int = 1
    init_fail: bool = False
    user: str | None = None
    pos: Pos = field(default=NOPOS, compare=False)


@dataclass(frozen=True, slots=True)
class VrrpTrackFile:
    """``vrrp_track_file NAME { file weight init_file }`` (a.k.a. track_file)."""

    name: str
    file: str
    weight: int = 1
    init_file: int | None = None
    pos: Pos = field(default=NOPOS, compare=False)
    weight_reverse: bool = False  # ``weight N reverse``: the value counts negatively


@dataclass(frozen=True, slots=True)
class VrrpTrackProcess:
    """``vrrp_track_process NAME { process PATH [PARAMS] param_match weight quorum quorum_max
    fork_delay terminate_delay delay full_command }`` (keepalived vrrp_parser.c)."""

    name: str
    process: str  # the process name (comm) or, with full_command, argv[0]
    params: tuple[str, ...] | None = None  # None: parameters not matched
    param_match: str = "none"  # none | exact | partial | initial
    full_command: bool = False  # match /proc/PID/cmdline instead of the comm name
    weight: int = 0  # keepalived: 0 unless set (FAULT while the quorum is not achieved)
    weight_reverse: bool = False
    quorum: int = 1
    quorum_max: int | None = None  # None: unbounded
    fork_delay: float = 0.0
    terminate_delay: float = 0.0
    pos: Pos = field(default=NOPOS, compare=False)


@dataclass(frozen=True, slots=True)
class TrackProcessRef:
    """A ``track_process`` entry, resolved against its ``vrrp_track_process`` definition."""

    name: str
    weight: int
    reverse: bool
    process: VrrpTrackProcess
    pos: Pos = field(default=NOPOS, compare=False)


@dataclass(frozen=True, slots=True)
class TrackRef:
    """A reference in track_interface / track_script / track_file: name plus optional weight."""

    name: str
    weight: int | None = None  # None: use the object's own weight
    reverse: bool = False
    pos: Pos = field(default=NOPOS, compare=False)


@dataclass(frozen=True, slots=True)
class VirtualIp:
    """One virtual_ipaddress entry: ``ADDR[/PREFIX] [brd X] [dev IF] [scope S] [label L] ...``."""

    address: str  # normalised, without prefix
    prefixlen: int  # 32/128 when not given
    dev: str | None = None
    brd: str | None = None
    scope: str | None = None
    label: str | None = None
    no_track: bool = False
    peer: str | None = None
    pos: Pos = field(default=NOPOS, compare=False)

    @property
    def family(self) -> int:
        return 6 if ":" in self.address else 4

    @property
    def cidr(self) -> str:
        return f"{self.address}/{self.prefixlen}"


@dataclass(frozen=True, slots=True)
class UnicastPeer:
    address: str
    min_ttl: int | None = None
    max_ttl: int | None = None
    pos: Pos = field(default=NOPOS, compare=False)


class VrrpState(enum.Enum):
    MASTER = "MASTER"
    BACKUP = "BACKUP"


@dataclass(frozen=True, slots=True)
class VrrpInstance:
    name: str
    interface: str | None
    virtual_router_id: int
    pos: Pos = field(default=NOPOS, compare=False)
    # initial state; resolved like keepalived: no `state` -> MASTER iff priority 255
    state: VrrpState | None = None
    priority: int = 100  # 255 when state MASTER without priority (keepalived)
    advert_int: float = 1.0
    version: int = 2  # resolved: instance's `version` or global vrrp_version
    family: int = 4  # resolved from the VIPs / native_ipv6
    native_ipv6: bool = False
    nopreempt: bool = False
    preempt_delay: float = 0.0
    down_timer_adverts: int = 3
    auth_type: str | None = None  # "PASS" | "AH" | None
    # secret (lvsd.config.secrets): never printed by status, --json or a repr
    auth_pass: str | None = field(default=None, repr=False)
    mcast_src_ip: str | None = None
    unicast_src_ip: str | None = None
    unicast_peers: tuple[UnicastPeer, ...] = ()
    check_unicast_src: bool = False
    virtual_ipaddresses: tuple[VirtualIp, ...] = ()
    virtual_ipaddresses_excluded: tuple[VirtualIp, ...] = ()
    track_interfaces: tuple[TrackRef, ...] = ()
    track_scripts: tuple[TrackRef, ...] = ()
    track_files: tuple[TrackRef, ...] = ()
    track_processes: tuple[TrackProcessRef, ...] = ()
    dont_track_primary: bool = False
    use_vmac: str | None = None  # the vmac interface's name when use_vmac is set
    vmac_mac: str | None = None  # use_vmac's MAC argument (default 00:00:5e:00:0F:VRID)
    vmac_xmit_base: bool = False  # adverts on the base interface, not the vmac
    accept: bool | None = None
    strict_mode: bool | None = None
    garp_master_delay: float = 5.0  # resolved from global vrrp_garp_master_delay
    garp_master_repeat: int = 5
    garp_master_refresh: float = 0.0
    garp_master_refresh_repeat: int = 1
    garp_lower_prio_delay: float | None = None
    garp_lower_prio_repeat: int | None = None
    lower_prio_no_advert: bool = False
    higher_prio_send_advert: bool = False
    notify_master: Script | None = None
    notify_backup: Script | None = None
    notify_fault: Script | None = None
    notify_stop: Script | None = None
    notify_deleted: Script | None = None
    notify: Script | None = None
    notify_master_rx_lower_pri: Script | None = None
    notify_priority_changes: bool | None = None  # None: the sync group's, else the global
    smtp_alert: bool = False
    unsupported: tuple[Unsupported, ...] = ()
    # resolved: mcast_dst_ip, else global vrrp_mcast_group4/6 for the instance's family
    mcast_group: str | None = None
    # the `interface` line (host checks name it)
    interface_pos: Pos | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class VrrpSyncGroup:
    name: str
    group: tuple[str, ...]
    pos: Pos = field(default=NOPOS, compare=False)
    notify_master: Script | None = None
    notify_backup: Script | None = None
    notify_fault: Script | None = None
    notify_stop: Script | None = None
    notify: Script | None = None
    track_interfaces: tuple[TrackRef, ...] = ()
    track_scripts: tuple[TrackRef, ...] = ()
    track_files: tuple[TrackRef, ...] = ()
    track_processes: tuple[TrackProcessRef, ...] = ()
    global_tracking: bool = False
    sync_group_tracking_weight: bool = False
    notify_priority_changes: bool | None = None
    smtp_alert: bool = False


# --------------------------------------------------------------------------------- checkers


class CheckKind(enum.Enum):
    TCP_CHECK = "TCP_CHECK"
    HTTP_GET = "HTTP_GET"
    SSL_GET = "SSL_GET"
    MISC_CHECK = "MISC_CHECK"
    DNS_CHECK = "DNS_CHECK"
    SMTP_CHECK = "SMTP_CHECK"
    UDP_CHECK = "UDP_CHECK"
    PING_CHECK = "PING_CHECK"
    FILE_CHECK = "FILE_CHECK"
    BFD_CHECK = "BFD_CHECK"


@dataclass(frozen=True, slots=True)
class StatusCodeRange:
    low: int
    high: int  # inclusive

    def __contains__(self, code: object) -> bool:
        return isinstance(code, int) and self.low <= code <= self.high


@dataclass(frozen=True, slots=True)
class HttpUrl:
    """One ``url { path digest status_code virtualhost regex ... }`` block."""

    path: str
    digest: str | None = None  # lowercase hex MD5 of the body
    # Empty tuple = keepalived's default: any 2xx.
    status_codes: tuple[StatusCodeRange, ...] = ()
    virtualhost: str | None = None
    regex: str | None = None
    regex_no_match: bool = False
    regex_min_offset: int | None = None
    regex_max_offset: int | None = None
    pos: Pos = field(default=NOPOS, compare=False)
    tls_compliant: bool = False  # SSL_GET: close with close_notify (keepalived tls_compliant)
    # keepalived (PCRE2) regex_options lvsd honours: caseless, dotall, extended, multiline
    regex_options: tuple[str, ...] = ()

    def status_ok(self, code: int) -> bool:
        if not self.status_codes:
            return 200 <= code <= 299
        return any(code in r for r in self.status_codes)


@_fast_init
@dataclass(frozen=True, slots=True)
class Checker:
    """One health checker with every timing and connection setting resolved.

    Type-specific settings live in the optional fields for that kind; fields not relevant to a
    kind keep their defaults. ``connect_ip``/``connect_port`` are already defaulted to the real
    server's address/port (or the checker's own).
    """

    kind: CheckKind
    pos: Pos = field(compare=False)
    connect_ip: str
    connect_port: int
    bindto: str | None = None
    bind_port: int | None = None
    bind_if: str | None = None
    fwmark: int | None = None  # SO_MARK
    connect_timeout: float = 5.0
    retry: int = 1
    delay_before_retry: float = 1.0
    delay_loop: float = 60.0
    warmup: float | None = None  # None: keepalived uses delay_loop as the random range
    alpha: bool = False
    log_all_failures: bool = False
    # HTTP_GET / SSL_GET
    urls: tuple[HttpUrl, ...] = ()
    http_protocol: str = "1.0"  # "1.0", "1.1", "1.0C" (1.0 with Connection: close)
    virtualhost: str | None = None
    enable_sni: bool = False  # keepalived: off unless enable_sni or sni_name is given
    sni_name: str | None = None  # SSL_GET: explicit SNI (else the virtual host rule)
    tls_compliant: bool = False  # SSL_GET: close with close_notify (keepalived tls_compliant)
    verify_cert: bool = False  # lvsd: SSL_GET verifies only when a CA is configured
    fast_recovery: bool = False
    # MISC_CHECK
    misc_path: Script | None = None
    misc_timeout: float | None = None  # None: delay_loop (keepalived)
    misc_dynamic: bool = False
    # DNS_CHECK
    dns_type: str = "SOA"
    dns_name: str = "."
    # SMTP_CHECK
    helo_name: str | None = None  # None: keepalived default (local host name)
    # UDP_CHECK
    payload: bytes | None = None
    # None: no reply needed; b"": any reply; else the reply must start with these bytes
    require_reply: bytes | None = None
    # wildcard nibbles of require_reply (hex ``x``): a set bit is not compared; None: none
    require_reply_mask: bytes | None = None
    min_reply_length: int | None = None
    max_reply_length: int | None = None
    # FILE_CHECK: resolved by the loader from the named track_file block
    track_file: str | None = None  # the file's path
    file_weight: int | None = None  # the checker's weight, else the track_file block's
    file_reverse: bool = False  # ``weight N reverse`` (checker's, else the block's)
    track_file_name: str | None = None  # the track_file block's name, for messages
    # BFD_CHECK
    bfd_name: str | None = None
    # lvsd extension: consecutive successes needed to come back up (keepalived: 1)
    rise: int = 1
    unsupported: tuple[Unsupported, ...] = ()

    @property
    def label(self) -> str:
        """Stable human-readable id, e.g. ``TCP_CHECK 192.0.2.1:80``."""
        host = f"[{self.connect_ip}]" if ":" in self.connect_ip else self.connect_ip
        base = f"{self.kind.value} {host}:{self.connect_port}"
        if self.urls:
            base += " " + ",".join(u.path for u in self.urls)
        if self.misc_path is not None:
            base += f" {self.misc_path.command}"
        if self.track_file is not None:
            base += f" {self.track_file}"
        return base


# --------------------------------------------------------------------------------- LVS


class LbKind(enum.Enum):
    NAT = "NAT"
    DR = "DR"
    TUN = "TUN"


class Protocol(enum.Enum):
    TCP = "TCP"
    UDP = "UDP"
    SCTP = "SCTP"


@dataclass(frozen=True, slots=True)
class TunnelOptions:
    """``lvs_method TUN type ipip|gue|gre [port N] [nocsum|csum|remcsum]``."""

    type: str = "ipip"
    port: int | None = None
    csum: str | None = None


@_fast_init
@dataclass(frozen=True, slots=True)
class RealServer:
    address: str
    port: int  # 0 when not given (fwmark services)
    pos: Pos = field(default=NOPOS, compare=False)
    weight: int = 1
    lb_kind: LbKind = LbKind.NAT  # resolved: real_server's lvs_method or the virtual_server's
    tunnel: TunnelOptions | None = None
    inhibit_on_failure: bool = False  # resolved with the virtual_server's
    uthreshold: int = 0
    lthreshold: int = 0
    alpha: bool = False  # resolved
    notify_up: Script | None = None
    notify_down: Script | None = None
    virtualhost: str | None = None
    checkers: tuple[Checker, ...] = ()
    smtp_alert: bool = False
    unsupported: tuple[Unsupported, ...] = ()

    @property
    def family(self) -> int:
        return 6 if ":" in self.address else 4


@dataclass(frozen=True, slots=True)
class SorryServer:
    address: str
    port: int
    lb_kind: LbKind | None = None  # None: the virtual_server's
    pos: Pos = field(default=NOPOS, compare=False)


@dataclass(frozen=True, slots=True)
class VsgAddressRange:
    """``A-B PORT`` / ``ADDR PORT`` entry: first..last (last == first for a single address)."""

    first: str
    last: str
    port: int
    pos: Pos = field(default=NOPOS, compare=False)


@dataclass(frozen=True, slots=True)
class VsgFwmark:
    fwmark: int
    pos: Pos = field(default=NOPOS, compare=False)


@dataclass(frozen=True, slots=True)
class VirtualServerGroup:
    name: str
    ranges: tuple[VsgAddressRange, ...] = ()
    fwmarks: tuple[VsgFwmark, ...] = ()
    pos: Pos = field(default=NOPOS, compare=False)


@dataclass(frozen=True, slots=True)
class VirtualServer:
    """``virtual_server IP PORT``, ``virtual_server fwmark N`` or ``virtual_server group NAME``."""

    pos: Pos = field(compare=False)
    address: str | None = None
    port: int = 0
    fwmark: int | None = None
    group: str | None = None
    # keepalived 2.x (check_data.c validate_check_config): an address service without
    # `protocol` is UDP ("no protocol set - defaulting to UDP"); ignored for fwmark services.
    protocol: Protocol = Protocol.UDP
    family: int = 4  # ip_family, or from address
    lb_algo: str = "wlc"
    lb_kind: LbKind = LbKind.NAT
    sched_flags: frozenset[str] = frozenset()  # sh-port, sh-fallback, mh-port, mh-fallback, ops
    persistence_timeout: int | None = None
    persistence_granularity: str | None = None
    delay_loop: float = 60.0
    ha_suspend: bool = False
    alpha: bool = False
    omega: bool = False
    quorum: int = 1
    hysteresis: int = 0
    quorum_up: Script | None = None
    quorum_down: Script | None = None
    sorry_server: SorryServer | None = None
    sorry_server_inhibit: bool = False
    inhibit_on_failure: bool = False
    virtualhost: str | None = None
    real_servers: tuple[RealServer, ...] = ()
    smtp_alert: bool = False
    unsupported: tuple[Unsupported, ...] = ()
    lvs_drain_on_remove: float | None = None  # lvsd extension; None: global_defs' value

    @property
    def ident(self) -> str:
        """Stable identity used across reloads and as RealServerId.vs."""
        if self.group is not None:
            return f"group {self.group}/{self.protocol.value}"
        if self.fwmark is not None:
            return f"fwmark {self.fwmark}/IPv{self.family}"
        host = f"[{self.address}]" if self.address and ":" in self.address else self.address
        return f"{host}:{self.port}/{self.protocol.value}"


# --------------------------------------------------------------------------------- BGP (lvsd)


@dataclass(frozen=True, slots=True)
class BgpNeighbor:
    """``neighbor ADDR { remote_as N source_address ADDR }`` in ``bgp_speaker`` (lvsd
    extension, docs/bgp.md)."""

    address: str
    remote_as: int
    source_address: str | None = None
    pos: Pos = field(default=NOPOS, compare=False)


@dataclass(frozen=True, slots=True)
class BgpSpeaker:
    """``bgp_speaker { ... }`` (lvsd extension): the BIRD 2 daemon lvsd runs and drives."""

    local_as: int
    router_id: str | None = None  # None: BIRD picks one of the host's IPv4 addresses
    bird_binary: str = "bird"  # a path, or a name looked up on PATH
    hold_time: int = 3  # BGP hold timer, s (keepalive: a third); BIRD's minimum is 3
    bfd: bool = False
    bfd_interval: int = 100  # ms, BFD tx and rx interval (multiplier 3)
    neighbors: tuple[BgpNeighbor, ...] = ()
    pos: Pos = field(default=NOPOS, compare=False)


@dataclass(frozen=True, slots=True)
class BgpAnnounce:
    """``bgp_announce NAME { ... }`` (lvsd extension): a host route announced while healthy."""

    name: str
    address: str  # normalised, without prefix
    prefixlen: int
    #: :attr:`VirtualServer.ident` of every virtual server the block names (resolved)
    virtual_servers: tuple[str, ...] = ()
    track_scripts: tuple[str, ...] = ()  # vrrp_script names (each defined)
    track_interfaces: tuple[str, ...] = ()
    rise_delay: float = 2.0  # s healthy before announcing
    fall_delay: float = 0.0  # s unhealthy before withdrawing
    pos: Pos = field(default=NOPOS, compare=False)

    @property
    def family(self) -> int:
        return 6 if ":" in self.address else 4

    @property
    def cidr(self) -> str:
        return f"{self.address}/{self.prefixlen}"


# --------------------------------------------------------------------------------- the whole


@dataclass(frozen=True, slots=True)
class Config:
    """A loaded configuration: always returned, even when diagnostics say parts were ignored."""

    source: str  # main file path
    config_id: str
    global_defs: GlobalDefs = field(default_factory=GlobalDefs)
    vrrp_scripts: tuple[VrrpScript, ...] = ()
    vrrp_track_files: tuple[VrrpTrackFile, ...] = ()
    vrrp_instances: tuple[VrrpInstance, ...] = ()
    vrrp_sync_groups: tuple[VrrpSyncGroup, ...] = ()
    virtual_server_groups: tuple[VirtualServerGroup, ...] = ()
    virtual_servers: tuple[VirtualServer, ...] = ()
    unsupported: tuple[Unsupported, ...] = ()
    diagnostics: tuple[Diagnostic, ...] = ()
    files: tuple[str, ...] = ()  # every file read (main + includes), for reload change detection
    bgp_speaker: BgpSpeaker | None = None  # lvsd extension (docs/bgp.md)
    bgp_announces: tuple[BgpAnnounce, ...] = ()  # lvsd extension (docs/bgp.md)

    @property
    def ok(self) -> bool:
        """No error or fatal diagnostic."""
        return not any(d.severity is not Severity.WARNING for d in self.diagnostics)

    @property
    def fatal(self) -> bool:
        return any(d.severity is Severity.FATAL for d in self.diagnostics)

    def vsg(self, name: str) -> VirtualServerGroup | None:
        for g in self.virtual_server_groups:
            if g.name == name:
                return g
        return None

    def vrrp_script(self, name: str) -> VrrpScript | None:
        for s in self.vrrp_scripts:
            if s.name == name:
                return s
        return None
