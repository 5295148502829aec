"""Keyword tables and handlers: keyword tree -> the typed model, defaults resolved.

Theory of operation
-------------------
``TABLES`` lists, per block, every keyword keepalived 2.x accepts there (global_parser.c,
vrrp_parser.c, check_parser.c, check_*.c, bfd_parser.c), each with its grammar
:class:`~lvsd.config.grammar.Kind` and whether lvsd implements it. The grammar uses
the tables to build a tree; :class:`Builder` walks the tree and produces the model.

A keyword keepalived knows but lvsd does not implement becomes an
:class:`~lvsd.config.model.Unsupported` in the model, with one warning per keyword and
position. Invalid values are reported in keepalived's words and the default is kept.

Defaults and inheritance follow keepalived 2.x (check_data.c ``alloc_vs``/``alloc_rs``,
``validate_check_config``; check_api.c ``queue_checker``; vrrp.c
``vrrp_complete_instance``):

* virtual_server: connect_timeout 5 s, delay_loop 60 s, weight 1, quorum 1,
  hysteresis 0, lb_algo ``wlc`` (with "no scheduler set" when absent), lb_kind NAT (with
  "no forwarding method set"), no ``protocol`` on an address service means **UDP**
  ("no protocol set - defaulting to UDP"; the kernel's default for protocol 0); a
  ``persistence_timeout`` without a value, a zero port on a non-persistent service and a
  ``persistence_granularity`` without timeout all mean 360 s; quorum is clipped to the
  sum of real-server weights and hysteresis to quorum - 1.
* real_server inherits weight, lvs_method (+ tunnel options), inhibit_on_failure, alpha,
  retry, connect_timeout, delay_loop, warmup and delay_before_retry from its virtual
  server; a NAT real server without a port takes the virtual server's; a DR/TUN one
  whose port differs is reset to it; fwmark services clear DR/TUN ports.
* checkers inherit from their real server; retry defaults per checker (1; DNS_CHECK 3;
  MISC_CHECK 0), delay_before_retry per checker (1 s; HTTP_GET/SSL_GET 3 s; DNS_CHECK
  the delay_loop), warmup defaults to the delay_loop; ``nb_get_retry`` is ``retry``.
* vrrp_instance: priority 100, or 255 when ``state MASTER`` has no priority; no state
  means MASTER when priority is 255 else BACKUP; version, garp settings and multicast
  group come from global_defs; an IPv6 instance uses VRRPv3.

Messages are keepalived 2.2.7's own text, with the :class:`~lvsd.config.model.DiagKind` of its
``report_config_error()`` class; a bad number gives keepalived's two lines (the number reader's,
INVALID_NUMBER, then the handler's). Severity (what lvsd does with the config):

============================================================  ==================================
condition (keyword layer; host checks live elsewhere)          why keepalived does not run it
============================================================  ==================================
a keyword's value missing (``priority`` alone)                 lib/parser.c null_strvec() exits
                                                               (kind MISSING_PARAMETER)
vrrp_instance without ``virtual_router_id``                    vrrp.c chk_min_cfg() fails
no ``interface``, unless unicast peers and unicast_src_ip     chk_min_cfg(): "Unknown interface!"
no VIP in a VRRPv3 / IPv6 / strict instance                    vrrp_complete_instance() false
two instances sharing a VRID on the wire (same interface,      vrrp.c check_vrid_conflicts()
family, group; or same source and a common unicast peer)
============================================================  ==================================

All FATAL: keepalived's VRRP process stops (KEEPALIVED_EXIT_CONFIG), so lvsd does not start.
Everything else keepalived reports is ERROR (it logs and runs: skip, default, reset, clamp as
the message says, and lvsd applies the same). validate_check_config() (check_data.c) never
returns false in 2.2.7, so no checker condition is fatal; a ``virtual_server group`` naming an
undefined group is only logged by link_vsg_to_vs() (ipwrapper.c; ``keepalived -t`` exits 0),
so it is a WARNING and the virtual server is dropped. lvsd-only notices are WARNING, kind LVSD
(e.g. ``nb_get_retry`` outside HTTP_GET/SSL_GET: keepalived says Unknown keyword, lvsd applies
it as ``retry`` and says so).
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import TypeVar

from lvsd.config.grammar import Kind, Node, Spec, Tables
from lvsd.config.lexer import Line, split_quoted
from lvsd.config.model import (
    Checker,
    CheckKind,
    DiagKind,
    Diagnostic,
    GlobalDefs,
    HttpUrl,
    LbKind,
    LvsSyncDaemon,
    LvsTimeouts,
    Pos,
    Protocol,
    RealServer,
    Script,
    Severity,
    SorryServer,
    SslGlobal,
    StatusCodeRange,
    TrackProcessRef,
    TrackRef,
    TunnelOptions,
    UnicastPeer,
    Unsupported,
    VirtualIp,
    VirtualServer,
    VirtualServerGroup,
    VrrpInstance,
    VrrpScript,
    VrrpState,
    VrrpSyncGroup,
    VrrpTrackFile,
    VrrpTrackProcess,
    VsgAddressRange,
    VsgFwmark,
)

# ------------------------------------------------------------------------------- tables

L = Spec(Kind.LEAF)
Q = Spec(Kind.QUOTED)
V = Spec(Kind.VALUES)
UL = Spec(Kind.LEAF, supported=False)
UQ = Spec(Kind.QUOTED, supported=False)
UV = Spec(Kind.VALUES, supported=False)
US = Spec(Kind.SKIP, supported=False)
EXT = Spec(Kind.LEAF, extension=True)  # lvsd-only keyword (keepalived would reject it)


def _b(table: str) -> Spec:
    return Spec(Kind.BLOCK, table)


def _words(s: str) -> list[str]:
    return s.split()


def _table(supported: dict[str, Spec], unsupported: str = "",
           unsupported_values: str = "", unsupported_blocks: str = "") -> dict[str, Spec]:
    t = dict(supported)
    for w in _words(unsupported):
        t.setdefault(w, UL)
    for w in _words(unsupported_values):
        t.setdefault(w, UV)
    for w in _words(unsupported_blocks):
        t.setdefault(w, US)
    return t


CHECKER_KINDS = {k.value: k for k in CheckKind}

_ROOT = _table(
    {
        "global_defs": _b("global_defs"),
        "vrrp_script": _b("vrrp_script"),
        "vrrp_track_file": _b("track_file"),
        "track_file": _b("track_file"),
        "vrrp_instance": _b("vrrp_instance"),
        "vrrp_sync_group": _b("vrrp_sync_group"),
        "vrrp_track_process": _b("vrrp_track_process"),
        "virtual_server_group": V,
        "virtual_server": _b("virtual_server"),
        "SSL": _b("SSL"),
    },
    unsupported="net_namespace net_namespace_ipvs namespace_with_ipsets use_pid_dir instance "
    "child_wait_time linkbeat_use_polling process_names process_name vrrp_process_name "
    "checker_process_name lvs_process_name bfd_process_name use_symlink_paths",
    unsupported_values="static_ipaddress static_routes static_rules linkbeat_interfaces "
    "interface_up_down_delays",
    unsupported_blocks="bfd_instance garp_group track_group",
)

_GLOBAL_SUPPORTED = {
    w: L for w in _words(
        "router_id script_user enable_script_security vrrp_version vrrp_mcast_group4 "
        "vrrp_mcast_group6 vrrp_garp_master_delay vrrp_garp_master_repeat "
        "vrrp_garp_master_refresh vrrp_garp_master_refresh_repeat vrrp_garp_interval "
        "vrrp_gna_interval vrrp_garp_lower_prio_delay vrrp_garp_lower_prio_repeat "
        "vrrp_lower_prio_no_advert vrrp_higher_prio_send_advert vrrp_strict "
        "vrrp_check_unicast_src vrrp_skip_check_adv_addr vrrp_startup_delay vrrp_priority "
        "lvs_flush lvs_flush_on_stop lvs_flush_onstop lvs_sync_daemon notify_fifo "
        "vrrp_notify_fifo lvs_notify_fifo notification_email_from smtp_server "
        "smtp_connect_timeout smtp_alert smtp_helo_name smtp_alert_vrrp smtp_alert_checker "
        "checker_log_all_failures")
}
_GLOBAL_SUPPORTED.update({"notification_email": V, "notify_fifo_script": Q,
                          "vrrp_notify_fifo_script": Q, "lvs_notify_fifo_script": Q})
# lvsd extension: `lvs_drain_on_remove SECONDS` keeps a real server removed by a reload at
# weight 0 for that long before deleting it (keepalived: 0, deleted at once)
_GLOBAL_SUPPORTED["lvs_drain_on_remove"] = EXT
# `lvs_timeouts [tcp N] [tcpfin N] [udp N]`: IPVS connection timeouts, set by the reconciler
_GLOBAL_SUPPORTED["lvs_timeouts"] = L
_GLOBAL_SUPPORTED.update({"dynamic_interfaces": L, "vrrp_notify_priority_changes": L})

_GLOBAL = _table(
    _GLOBAL_SUPPORTED,
    unsupported="linkbeat_use_polling net_namespace net_namespace_ipvs namespace_with_ipsets "
    "use_pid_dir instance child_wait_time process_names process_name vrrp_process_name "
    "checker_process_name lvs_process_name bfd_process_name use_symlink_paths "
    "set_supplementary_groups startup_script startup_script_timeout shutdown_script "
    "shutdown_script_timeout max_auto_priority min_auto_priority_delay "
    "no_email_faults default_interface "
    "disable_local_igmp v3_checksum_as_v2 vrrp_down_timer_adverts vrrp_min_garp "
    "vrrp_garp_extra_if vrrp_vmac_garp_intvl vrrp_iptables vrrp_ipsets nftables "
    "nftables_priority nftables_ifindex vrrp_no_swap vrrp_rt_priority vrrp_cpu_affinity "
    "vrrp_rlimit_rttime vrrp_rlimit_rtime nftables_ipvs nftables_ipvs_priority "
    "nftables_ipvs_start_fwmark nftables_counters "
    "fifo_write_vrrp_states_on_reload checker_priority checker_no_swap checker_rt_priority "
    "checker_cpu_affinity checker_rlimit_rttime checker_rlimit_rtime bfd_priority bfd_no_swap "
    "bfd_rt_priority bfd_cpu_affinity bfd_rlimit_rttime bfd_rlimit_rtime snmp_socket "
    "enable_traps enable_snmp_vrrp enable_snmp_keepalived enable_snmp_rfc enable_snmp_rfcv2 "
    "enable_snmp_rfcv3 enable_snmp_checker snmp_vs_stats_update_interval "
    "snmp_rs_stats_update_interval enable_dbus dbus_service_name dbus_no_interface_name "
    "vrrp_netlink_cmd_rcv_bufs vrrp_netlink_cmd_rcv_bufs_force vrrp_netlink_monitor_rcv_bufs "
    "vrrp_netlink_monitor_rcv_bufs_force process_monitor_rcv_bufs "
    "process_monitor_rcv_bufs_force lvs_netlink_cmd_rcv_bufs lvs_netlink_cmd_rcv_bufs_force "
    "lvs_netlink_monitor_rcv_bufs lvs_netlink_monitor_rcv_bufs_force rs_init_notifies "
    "no_checker_emails vrrp_rx_bufs_policy vrrp_rx_bufs_multiplier vrrp_delay_after_boot "
    "log_unknown_vrids vrrp_owner_ignore_adverts vmac_prefix vmac_addr_prefix umask "
    "random_seed reload_check_config reload_time_file reload_repeat reload_file include_check "
    "config_save_dir tmp_config_directory data_use_instance json_version iproute_usr_dir "
    "iproute_etc_dir state_dump_file stats_dump_file json_dump_file "
    "lvs_sync_daemon_interface",
)

_VRRP_SCRIPT = _table({"script": Q, **{w: L for w in _words(
    "interval timeout weight rise fall user init_fail")}})
_TRACK_FILE = _table({w: L for w in _words("file weight init_file")})
# keepalived vrrp_parser.c vrrp_tprocess_*_handler
_TRACK_PROCESS = _table({"process": Q, **{w: L for w in _words(
    "param_match weight quorum quorum_max delay terminate_delay fork_delay full_command")}})

_NOTIFY = {w: Q for w in _words(
    "notify_backup notify_master notify_fault notify_stop notify_deleted notify "
    "notify_master_rx_lower_pri")}

_VRRP_INSTANCE = _table(
    {
        **{w: L for w in _words(
            "state interface virtual_router_id priority advert_int version native_ipv6 "
            "nopreempt preempt preempt_delay down_timer_adverts mcast_src_ip unicast_src_ip "
            "mcast_dst_ip check_unicast_src dont_track_primary use_vmac vmac_xmit_base "
            "accept no_accept "
            "strict_mode garp_master_delay garp_master_repeat garp_master_refresh "
            "garp_master_refresh_repeat garp_lower_prio_delay garp_lower_prio_repeat "
            "lower_prio_no_advert higher_prio_send_advert smtp_alert notify_priority_changes")},
        **_NOTIFY,
        **{w: V for w in _words(
            "virtual_ipaddress virtual_ipaddress_excluded unicast_peer track_interface "
            "track_script track_file track_process")},
        "authentication": _b("authentication"),
        "lvs_sync_daemon_interface": L,  # deprecated: the global lvs_sync_daemon
    },
    unsupported="use_vmac_addr use_ipvlan unicast_fault_no_peer "
    "old_unicast_checksum vrf track_src_ip unicast_ttl no_virtual_ipaddress "
    "promote_secondaries linkbeat_use_polling v3_checksum_as_v2 skip_check_adv_addr debug "
    "timer_expired_backup "
    "thread_timer_expired garp_extra_if vmac_garp_intvl owner_ignore_adverts "
    "kernel_rx_buf_size",
    unsupported_values="track_bfd virtual_routes virtual_rules",
    unsupported_blocks="auth_hmac",
)
_AUTH = _table({"auth_type": L, "auth_pass": L})

_SYNC = _table(
    {
        "group": V,
        "track_interface": V,
        "track_script": V,
        "track_file": V,
        "track_process": V,
        **{w: Q for w in _words("notify_backup notify_master notify_fault notify_stop notify")},
        **{w: L for w in _words(
            "smtp_alert global_tracking sync_group_tracking_weight notify_priority_changes")},
    },
    unsupported_values="track_bfd",
)

_SSL = _table({w: L for w in _words("password ca certificate key")})

_VS = _table(
    {
        **{w: L for w in _words(
            "ip_family retry delay_before_retry warmup connect_timeout delay_loop "
            "inhibit_on_failure lb_algo lvs_sched ops sh-port sh-fallback mh-port mh-fallback "
            "lb_kind lvs_method persistence_timeout persistence_granularity protocol "
            "ha_suspend smtp_alert virtualhost alpha omega quorum hysteresis weight "
            "sorry_server sorry_server_inhibit sorry_server_lvs_method")},
        "quorum_up": Q,
        "quorum_down": Q,
        "real_server": _b("real_server"),
        "lvs_drain_on_remove": EXT,  # lvsd extension, overrides the global_defs value
    },
    unsupported="hashed flag-1 flag-2 flag-3 persistence_engine snmp_name",
)

_RS = _table(
    {
        **{w: L for w in _words(
            "weight lvs_method uthreshold lthreshold inhibit_on_failure alpha retry "
            "delay_before_retry warmup connect_timeout delay_loop smtp_alert virtualhost")},
        "notify_up": Q,
        "notify_down": Q,
        **{k: _b(k) for k in CHECKER_KINDS},
    },
    unsupported="snmp_name",
)

_CHECK_COMMON = {w: L for w in _words(
    "connect_ip connect_port bindto bind_port bind_if connect_timeout fwmark retry "
    "delay_before_retry warmup delay_loop alpha log_all_failures")}
# lvsd extension: `rise N` consecutive successes bring a down checker back up (keepalived: 1)
_CHECK_COMMON["rise"] = EXT
# keepalived's old name for `retry`, which tutorials teach for TCP_CHECK: keepalived 2.x knows
# it in HTTP_GET/SSL_GET only (their tables override this entry); lvsd applies it everywhere
_CHECK_COMMON["nb_get_retry"] = EXT

_TABLES: Tables = {
    "root": _ROOT,
    "global_defs": _GLOBAL,
    "vrrp_script": _VRRP_SCRIPT,
    "track_file": _TRACK_FILE,
    "vrrp_instance": _VRRP_INSTANCE,
    "authentication": _AUTH,
    "vrrp_sync_group": _SYNC,
    "vrrp_track_process": _TRACK_PROCESS,
    "SSL": _SSL,
    "virtual_server": _VS,
    "real_server": _RS,
    "TCP_CHECK": _table(dict(_CHECK_COMMON)),
    "PING_CHECK": _table(dict(_CHECK_COMMON)),
    "HTTP_GET": _table({**_CHECK_COMMON, "url": _b("url"), **{w: L for w in _words(
        "nb_get_retry virtualhost http_protocol enable_sni sni_name fast_recovery "
        "tls_compliant")}}),
    "url": _table({w: L for w in _words(
        "path digest status_code virtualhost regex regex_no_match regex_min_offset "
        "regex_max_offset tls_compliant regex_options")}, unsupported="regex_stack"),
    "MISC_CHECK": _table({**_CHECK_COMMON, "misc_path": Q, "misc_timeout": L,
                          "misc_dynamic": L, "user": L}),
    "DNS_CHECK": _table({**_CHECK_COMMON, "type": L, "name": L}),
    "SMTP_CHECK": _table({**_CHECK_COMMON, "helo_name": L}, unsupported_blocks="host"),
    "UDP_CHECK": _table({**_CHECK_COMMON, **{w: L for w in _words(
        "payload require_reply min_reply_length max_reply_length")}}),
    "FILE_CHECK": _table({"track_file": L, "weight": L}),
    "BFD_CHECK": _table({"name": L, "alpha": L}),
}
_TABLES["SSL_GET"] = _TABLES["HTTP_GET"]
TABLES: Tables = _TABLES

# ------------------------------------------------------------------------------ values

IPVS_SVC_PERSISTENT_TIMEOUT = 360  # libipvs.h: 6*60
LVS_MAX_TIMEOUT = 86400 * 31
IPVS_WEIGHT_LIMIT = 65535
IPVS_FWMARK_MAX = 0xFFFFFFFF
LVS_SCHEDULERS = frozenset(_words("rr wrr lc wlc lblc sh mh dh fo ovf lblcr sed nq twos"))
TIMER_MAX = 4294.967295 * 1000  # keepalived's TIMER_MAXIMUM, generous
DRAIN_MAX = 7 * 86400.0  # lvs_drain_on_remove: a week at most (a longer one is a typo)
_DECIMAL_RE = re.compile(r"^[0-9]+(\.[0-9]{0,6})?$|^\.[0-9]{1,6}$")


def norm_ip(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text.split("%", 1)[0]))
    except ValueError:
        return None


def stosockaddr(text: str) -> str | None:
    """keepalived ``inet_stosockaddr()`` (lib/utils.c): the address before any ``-`` (range) or
    else ``/`` (prefix length), which are dropped; None when it is not an address."""
    cut = text.find("-")
    if cut < 0:
        cut = text.find("/")
    addr = text if cut < 0 else text[:cut]
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return None
    if (ip.version == 6) != (":" in text):  # the family comes from the whole text
        return None
    return str(ip)


# vrrp_parser.c: the keywords that set VRRP_FLAG_UNICAST_CONFIGURED
_UNICAST_KEYWORDS = frozenset(_words(
    "unicast_src_ip unicast_peer check_unicast_src unicast_fault_no_peer old_unicast_checksum"))


def _hmsg(node: Node, template: str) -> str:
    """A keepalived handler's own message for a bad value (``{}``: the value as written), in
    the `` - TEXT`` form the number readers of :class:`Ctx` take."""
    return " - " + template.format(node.args[0] if node.args else "")


def _proto_str(protocol: Protocol | None) -> str:
    """lib/utils.c inet_sockaddrtotrio_r(): the protocol as keepalived prints it."""
    return protocol.value.lower() if protocol is not None else "none"


def true_false(text: str) -> bool | None:
    if text in ("true", "on", "yes"):
        return True
    if text in ("false", "off", "no"):
        return False
    return None


def _fmt6(v: float) -> str:
    """A timer bound as keepalived prints it (``%lu.%06lu``: 0.000001, 4294.967295)."""
    micro = round(v * 1_000_000)
    return f"{micro // 1_000_000}.{micro % 1_000_000:06d}"


# keepalived check_http.c regex_options (PCRE2 compile options) and how lvsd treats them
REGEX_OPTIONS = {"caseless": re.IGNORECASE, "dotall": re.DOTALL, "extended": re.VERBOSE,
                 "multiline": re.MULTILINE}
REGEX_OPTIONS_NOOP = frozenset(_words(
    "no_auto_possess no_start_optimize no_dotstar_anchor auto_callout no_auto_capture "
    "never_backslash_c"))
REGEX_OPTIONS_KEEPALIVED = frozenset(_words(
    "allow_empty_class alt_bsux dollar_endonly dupnames firstline match_unset_backref never_ucp "
    "never_utf ucp ungreedy utf alt_circumflex alt_verbnames use_offset_limit"))


def regex_flags(options: Iterable[str]) -> re.RegexFlag:
    """Python ``re`` flags for keepalived regex_options lvsd honours."""
    flags = re.RegexFlag(0)
    for o in options:
        flags |= REGEX_OPTIONS.get(o, re.RegexFlag(0))
    return flags


def read_hex(text: str, wildcards: bool) -> tuple[bytes, bytes | None] | None:
    """keepalived ``read_hex_str()`` (lib/parser.c): (data, mask) or None when invalid/empty.

    Hex digits, read two per octet; spaces and tabs separate groups, and a group with an odd
    number of digits ends with a one-digit octet (``1 23`` and ``0123`` are both 01 23).
    With ``wildcards``, an ``x``/``X`` nibble matches anything: its bits are set in the mask
    (None when there is no wildcard).
    """
    data = bytearray()
    mask = bytearray()
    i, n = 0, len(text)

    def nibble(ch: str) -> tuple[int, int] | None:
        if ch in "xX" and wildcards:
            return 0, 0x0F
        v = int(ch, 16) if ch in "0123456789abcdefABCDEF" else -1
        return (v, 0) if v >= 0 else None

    while True:
        while i < n and text[i] in " \t":
            i += 1
        if i >= n:
            break
        first = nibble(text[i])
        i += 1
        if first is None:
            return None
        val, m = first
        if i < n and text[i] != " ":
            second = nibble(text[i])
            i += 1
            if second is None:
                return None
            val, m = val << 4 | second[0], m << 4 | second[1]
        data.append(val)
        mask.append(m)
    if not data:
        return None
    return bytes(data), (bytes(mask) if any(mask) else None)


@dataclass
class Ctx:
    diagnostics: list[Diagnostic]
    unsupported: list[Unsupported] = field(default_factory=list)
    _seen_unsupported: set[tuple[str, Pos]] = field(default_factory=set)

    def err(self, pos: Pos | None, msg: str, kind: DiagKind = DiagKind.GENERAL) -> None:
        """keepalived logs it and runs (report_config_error of a non-fatal class)."""
        self.diagnostics.append(Diagnostic(pos, Severity.ERROR, msg, kind))

    def warn(self, pos: Pos | None, msg: str, kind: DiagKind = DiagKind.LVSD) -> None:
        """An lvsd-only notice (keepalived is silent, or only logs without a config error)."""
        self.diagnostics.append(Diagnostic(pos, Severity.WARNING, msg, kind))

    def fatal(self, pos: Pos | None, msg: str, kind: DiagKind = DiagKind.FATAL) -> None:
        """keepalived would not run this config (see the table in the module docstring)."""
        self.diagnostics.append(Diagnostic(pos, Severity.FATAL, msg, kind))

    def unsupported_kw(self, node: Node, context: str) -> Unsupported:
        u = Unsupported(node.keyword, node.pos, context, tuple(node.args))
        key = (node.keyword, node.pos)
        if key not in self._seen_unsupported:
            self._seen_unsupported.add(key)
            self.warn(node.pos, f"keyword '{node.keyword}' is not supported by lvsd - ignored")
            self.unsupported.append(u)
        return u

    # -- value readers (keepalived's read_unsigned / read_timer wording)

    def arg(self, node: Node, idx: int = 0) -> str | None:
        if len(node.args) <= idx:
            # lib/parser.c null_strvec(): keepalived exits (KEEPALIVED_EXIT_CONFIG) - fatal
            self.fatal(node.pos, f"*** Configuration line starting `{node.keyword}` is missing a "
                       f"parameter after keyword `{node.keyword}` at word position {idx + 2}",
                       DiagKind.MISSING_PARAMETER)
            return None
        return node.args[idx]

    def _bad_number(self, node: Node, number_msg: str, default_msg: str) -> None:
        """keepalived's two lines: the number reader's (CONFIG_INVALID_NUMBER, lib/parser.c
        read_*_func) and then the handler's own (CONFIG_GENERAL_ERROR), when it has one."""
        if node.spec is not None and node.spec.extension:  # lvsd keyword: one lvsd line
            self.err(node.pos, f"{node.keyword}: {number_msg}{default_msg}",
                     DiagKind.INVALID_NUMBER)
            return
        self.err(node.pos, number_msg, DiagKind.INVALID_NUMBER)
        handler = default_msg.removeprefix(" - ")
        if handler and handler != "ignoring":
            self.err(node.pos, handler)

    def uint(self, node: Node, lo: int, hi: int, default_msg: str = "", idx: int = 0) -> int | None:
        """keepalived read_unsigned_strvec (or read_int_strvec when ``lo`` < 0);
        ``default_msg`` (`` - TEXT``) is the handler's own line that follows."""
        s = self.arg(node, idx)
        if s is None:
            return None
        try:
            v = int(s, 10)
        except ValueError:
            neg = lo >= 0 and s.lstrip(" \t").startswith("-")
            self._bad_number(node, f"{'negative' if neg else 'invalid'} number '{s}'",
                             default_msg)
            return None
        if lo >= 0 and v < 0:
            self._bad_number(node, f"negative number '{s}'", default_msg)
            return None
        if not lo <= v <= hi:
            self._bad_number(node, f"number '{s}' outside range [{lo}, {hi}]", default_msg)
            return None
        return v

    def sint(self, node: Node, lo: int, hi: int, idx: int = 0, default_msg: str = "") -> int | None:
        return self.uint(node, lo, hi, default_msg, idx=idx)

    def timer(self, node: Node, lo: float = 0.0, hi: float = TIMER_MAX,
              default_msg: str = " - ignoring") -> float | None:
        """keepalived read_timer / read_decimal_unsigned_strvec (6 decimal places)."""
        s = self.arg(node)
        if s is None:
            return None
        if s.startswith("-"):
            self._bad_number(node, f"negative number '{s}'", default_msg)
            return None
        if not _DECIMAL_RE.match(s):
            if node.spec is not None and node.spec.extension:
                self.err(node.pos, f"{node.keyword} '{s}' invalid{default_msg}",
                         DiagKind.INVALID_NUMBER)
            else:
                self._bad_number(node, f"invalid number '{s}'", default_msg)
            return None
        v = float(s)
        if not lo <= v <= hi:
            self._bad_number(node, f"number '{s}' outside range [{_fmt6(lo)}, {_fmt6(hi)}]",
                             default_msg)
            return None
        return v

    def flag(self, node: Node, invalid: str | None = None) -> bool | None:
        """A keyword that may carry an optional true/false/on/off/yes/no (check_true_false);
        ``invalid`` is the handler's message for anything else (default: the usual form)."""
        if not node.args:
            return True
        v = true_false(node.args[0])
        if v is None:
            self.err(node.pos, invalid if invalid is not None else
                     f"Invalid {node.keyword} parameter {node.args[0]} - ignoring")
        return v

    def script(self, node: Node) -> Script | None:
        rest = node.raw[len(node.keyword):].strip()
        toks, unmatched = split_quoted(rest)
        if unmatched:
            self.err(node.pos, f"String '{rest}': missing terminating quote")
        if not toks or not toks[0]:
            self.err(node.pos, f"{node.keyword}: script missing")
            return None
        # keepalived: `KEYWORD <cmd>|<"quoted cmd"> [user [group]]`; a quoted command is one
        # token; an unquoted line keeps its words as the command (misc_path, script).
        if rest[:1] in "\"'":
            cmd = toks[0]
            user = toks[1] if len(toks) > 1 else None
            group = toks[2] if len(toks) > 2 else None
        elif node.keyword in ("misc_path", "script"):
            cmd, user, group = " ".join(toks), None, None
        else:
            cmd = toks[0]
            user = toks[1] if len(toks) > 1 else None
            group = toks[2] if len(toks) > 2 else None
        return Script(cmd, node.pos, user, group)


# ------------------------------------------------------------------------------ builders


_T = TypeVar("_T")


def _put(into: dict[str, object], key: str, value: object | None) -> None:
    """Store a value read from the config; None (bad or missing, already reported) is skipped."""
    if value is not None:
        into[key] = value


def _or(value: _T | None, current: _T) -> _T:
    """A value read from the config, or the current one when it was bad (already reported)."""
    return current if value is None else value


def _addr_port(args: list[str]) -> tuple[str, int] | None:
    """``IP [PORT]`` (port 0 when absent) of a virtual, real or sorry server; None if invalid."""
    ip = norm_ip(args[0]) if args else None
    if ip is None:
        return None
    if len(args) < 2:
        return ip, 0
    try:
        port = int(args[1])
    except ValueError:
        return None
    return (ip, port) if 0 <= port <= 65535 else None


def _children(node: Node) -> list[Node]:
    return node.children or []


class Builder:
    """Turns the keyword tree into model objects (one instance per load)."""

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self.global_defs = GlobalDefs()
        self._global_smtp_alert: bool | None = None
        self._global_smtp_alert_checker: bool | None = None
        self.vrrp_scripts: list[VrrpScript] = []
        self.track_files: list[VrrpTrackFile] = []
        self.instances: list[VrrpInstance] = []
        self.sync_groups: list[VrrpSyncGroup] = []
        self.vsgs: list[VirtualServerGroup] = []
        self.virtual_servers: list[VirtualServer] = []
        self._pending_vs: list[Node] = []
        self._pending_vrrp: list[Node] = []
        self.track_processes: list[VrrpTrackProcess] = []
        # track_process lines per "(instance)" / "group NAME", resolved by finish_vrrp
        self._tp_lines: dict[tuple[str, str], list[Line]] = {}

    # ---------------------------------------------------------------- root

    def build(self, nodes: Iterable[Node]) -> None:
        ssl: SslGlobal | None = None
        for node in nodes:
            kw = node.keyword
            try:
                if node.spec is not None and not node.spec.supported:
                    self.ctx.unsupported_kw(node, "top level")
                elif kw == "global_defs":
                    self._global(node)
                elif kw == "vrrp_script":
                    self._vrrp_script(node)
                elif kw in ("vrrp_track_file", "track_file"):
                    self._track_file(node)
                elif kw == "vrrp_instance":
                    self._pending_vrrp.append(node)
                elif kw == "vrrp_sync_group":
                    self._sync_group(node)
                elif kw == "vrrp_track_process":
                    self._track_process(node)
                elif kw == "virtual_server_group":
                    self._vsg(node)
                elif kw == "virtual_server":
                    self._pending_vs.append(node)
                elif kw == "SSL":
                    if ssl is not None:
                        self.ctx.err(node.pos, "SSL context already specified - replacing")
                    ssl = self._ssl(node)
            except (ValueError, KeyError, IndexError, TypeError) as exc:  # pragma: no cover
                self.ctx.err(node.pos, f"internal error reading {kw}: {exc!r} - block ignored")
        if ssl is not None:
            self.global_defs = replace(self.global_defs, ssl=ssl)
        # instances and virtual servers need global_defs complete (keepalived applies the
        # globals after reading the whole file too)
        for node in self._pending_vrrp:
            try:
                self._vrrp_instance(node)
            except (ValueError, KeyError, IndexError, TypeError) as exc:  # pragma: no cover
                self.ctx.err(node.pos, f"internal error reading vrrp_instance: {exc!r}")
        for node in self._pending_vs:
            try:
                self._virtual_server(node)
            except (ValueError, KeyError, IndexError, TypeError) as exc:  # pragma: no cover
                self.ctx.err(node.pos, f"internal error reading virtual_server: {exc!r}")

    # ---------------------------------------------------------------- global_defs

    def _global(self, node: Node) -> None:
        c = self.ctx
        g = self.global_defs
        upd: dict[str, object] = {"pos": node.pos}
        for ch in _children(node):
            kw = ch.keyword
            if kw == "vrrp_iptables":
                # global_parser.c vrrp_iptables_handler() of keepalived built with nftables and
                # without iptables (Debian's 2.2.7): it logs this and uses nftables
                c.err(ch.pos, "iptables not supported, using nftables instead. Please replace "
                      "'vrrp_iptables and 'vrrp_ipsets' with 'nftables' config option")
            if ch.spec is not None and not ch.spec.supported:
                c.unsupported_kw(ch, "global_defs")
                continue
            if kw in ("router_id", "script_user", "notification_email_from", "notify_fifo",
                      "vrrp_notify_fifo", "lvs_notify_fifo"):
                v = c.arg(ch)
                if v is None:
                    continue
                upd[kw] = v
                if kw == "script_user" and len(ch.args) > 1:
                    upd["script_group"] = ch.args[1]
            elif kw == "smtp_server":
                v = c.arg(ch)
                if v is not None:
                    upd[kw] = v if len(ch.args) < 2 else f"{v} {ch.args[1]}"
            elif kw == "smtp_helo_name":
                continue
            elif kw in ("smtp_alert", "smtp_alert_vrrp", "smtp_alert_checker"):
                fv = c.flag(ch)
                if kw == "smtp_alert" and fv is not None:
                    self._global_smtp_alert = fv
                elif kw == "smtp_alert_checker" and fv is not None:
                    self._global_smtp_alert_checker = fv
            elif kw in ("enable_script_security", "vrrp_strict", "vrrp_check_unicast_src",
                        "vrrp_skip_check_adv_addr", "lvs_flush", "vrrp_lower_prio_no_advert",
                        "vrrp_higher_prio_send_advert", "checker_log_all_failures"):
                _put(upd, kw, c.flag(ch))
            elif kw == "vrrp_version":
                _put(upd, kw, c.uint(ch, 2, 3, " - ignoring"))
            elif kw in ("vrrp_mcast_group4", "vrrp_mcast_group6"):
                v = c.arg(ch)
                if v is None:
                    continue
                ip = norm_ip(v)
                want = 4 if kw.endswith("4") else 6
                if ip is None or ipaddress.ip_address(ip).version != want or \
                        not ipaddress.ip_address(ip).is_multicast:
                    c.err(ch.pos, f"{kw} '{v}' is not a valid IPv{want} multicast address "
                          "- ignoring")
                    continue
                upd[kw] = ip
            elif kw in ("vrrp_garp_master_delay", "vrrp_garp_master_refresh",
                        "vrrp_garp_lower_prio_delay", "vrrp_startup_delay"):
                _put(upd, kw, c.timer(ch))
            elif kw in ("vrrp_garp_interval", "vrrp_gna_interval"):
                tv = c.timer(ch, 0.000001, 4294.967295, f" - {kw} '{ch.args[0] if ch.args else ''}'"
                             " is invalid")
                if tv is not None:
                    upd[kw] = tv
            elif kw in ("vrrp_garp_master_repeat", "vrrp_garp_master_refresh_repeat",
                        "vrrp_garp_lower_prio_repeat"):
                _put(upd, kw, c.uint(ch, 0, 2**31 - 1, " - ignoring"))
            elif kw == "vrrp_priority":
                _put(upd, kw, c.sint(ch, -20, 19))
            elif kw in ("lvs_flush_on_stop", "lvs_flush_onstop"):
                if not ch.args:
                    upd["lvs_flush_on_stop"] = "all"
                elif ch.args[0] in ("VS", "vs"):
                    upd["lvs_flush_on_stop"] = "vs"
                elif true_false(ch.args[0]) is not None:
                    upd["lvs_flush_on_stop"] = "all" if true_false(ch.args[0]) else "no"
                else:
                    c.err(ch.pos, f"Invalid lvs_flush_on_stop parameter {ch.args[0]} - ignoring")
            elif kw == "lvs_sync_daemon":
                _put(upd, kw, self._lvs_sync_daemon(ch))
            elif kw == "lvs_timeouts":
                prev = upd.get(kw, g.lvs_timeouts)
                upd[kw] = self._lvs_timeouts(ch, prev if isinstance(prev, LvsTimeouts) else None)
            elif kw in ("notify_fifo_script", "vrrp_notify_fifo_script",
                        "lvs_notify_fifo_script"):
                _put(upd, kw, c.script(ch))
            elif kw == "vrrp_notify_priority_changes":
                # keepalived global_parser.c vrrp_notify_priority_changes()
                tf = true_false(ch.args[0]) if ch.args else True
                if tf is None:
                    c.err(ch.pos, f"Invalid value '{ch.args[0]}' for global "
                          "vrrp_notify_priority_changes specified")
                else:
                    upd[kw] = tf
            elif kw == "dynamic_interfaces":
                # keepalived global_parser.c dynamic_interfaces_handler()
                upd[kw] = True
                if ch.args and ch.args[0] == "allow_if_changes":
                    upd["dynamic_interfaces_allow_if_changes"] = True
                elif ch.args:
                    c.err(ch.pos, f"Unknown dynamic_interfaces option '{ch.args[0]}'")
            elif kw == "lvs_drain_on_remove":
                _put(upd, kw, c.timer(ch, 0.0, DRAIN_MAX))
            elif kw == "smtp_connect_timeout":
                iv = c.uint(ch, 1, 2**31 - 1, " - ignoring")
                if iv is not None:
                    upd[kw] = float(iv)
            elif kw == "notification_email":
                if not ch.values:  # global_parser.c email_handler(), at the block's end
                    c.err(ch.end_pos or ch.pos, "Warning - empty notification_email block")
                    continue
                emails = list(g.notification_email)
                for ln in ch.values:
                    emails.extend(ln.tokens)
                upd[kw] = tuple(emails)
        self.global_defs = replace(g, **upd)  # type: ignore[arg-type]

    def _lvs_timeouts(self, ch: Node, prev: LvsTimeouts | None) -> LvsTimeouts | None:
        """keepalived global_parser.c lvs_timeouts(): ``[tcp N] [tcpfin N] [udp N]`` in any
        order, each 0..LVS_MAX_TIMEOUT (31 days); a bad option or value is logged and skipped,
        the rest applies; lines accumulate (a later value of a field wins); 0 means "not set"
        (the kernel's value is left). None when no field is set."""
        c = self.ctx
        if len(ch.args) < 2:
            c.err(ch.pos, "lvs_timeouts requires at least one option")
            return prev
        fields = {"tcp": "tcp", "tcpfin": "tcp_fin", "udp": "udp"}
        max_timeout = 86400 * 31  # LVS_MAX_TIMEOUT, keepalived/include/global_data.h
        vals: dict[str, int | None] = {
            f: (getattr(prev, f) if prev is not None else None) for f in fields.values()}
        i = 0
        while i < len(ch.args):
            opt = ch.args[i]
            if opt not in fields:
                c.err(ch.pos, f"Unknown option {opt} specified for lvs_timeouts")
                i += 1
                continue
            if i == len(ch.args) - 1:
                c.err(ch.pos, f"No value specified for lvs_timeout {opt} - ignoring")
                break
            v = c.uint(ch, 0, max_timeout, idx=i + 1)  # read_unsigned_strvec's own line
            if v is None:
                c.err(ch.pos, f"Invalid lvs_timeout {opt} ({ch.args[i + 1]}) - ignoring")
            else:
                vals[fields[opt]] = v or None
            i += 2
        if all(v is None for v in vals.values()):
            return None
        return LvsTimeouts(pos=ch.pos, **vals)

    def _lvs_sync_daemon(self, ch: Node) -> LvsSyncDaemon | None:
        c = self.ctx
        if not ch.args:
            c.err(ch.pos, "lvs_sync_daemon requires interface")
            return None
        iface = ch.args[0]
        inst = ch.args[1] if len(ch.args) > 1 and ch.args[1] not in (
            "id", "maxlen", "port", "ttl", "group") else None
        kv: dict[str, object] = {}
        rest = ch.args[2:] if inst is not None else ch.args[1:]
        i = 0
        while i < len(rest):
            k = rest[i]
            if k in ("id", "maxlen", "port", "ttl") and i + 1 < len(rest):
                try:
                    kv[k] = int(rest[i + 1])
                except ValueError:
                    c.err(ch.pos, f"lvs_sync_daemon {k} '{rest[i + 1]}' invalid - ignoring")
                i += 2
            elif k == "group" and i + 1 < len(rest):
                kv["group"] = rest[i + 1]
                i += 2
            else:
                c.err(ch.pos, f"Unknown option {k} specified for lvs_sync_daemon")
                i += 1
        return LvsSyncDaemon(interface=iface, instance=inst, pos=ch.pos, **kv)  # type: ignore[arg-type]

    def _ssl(self, node: Node) -> SslGlobal:
        upd: dict[str, str] = {}
        names = {"password": "password", "ca": "ca", "certificate": "certificate", "key": "key"}
        for ch in _children(node):
            if not ch.args:
                self.ctx.err(ch.pos, f"SSL {ch.keyword} missing")
                continue
            upd[names[ch.keyword]] = ch.args[0]
        return SslGlobal(pos=node.pos, **upd)

    # ---------------------------------------------------------------- VRRP

    def _name(self, node: Node, what: str) -> str | None:
        if len(node.args) != 1:
            self.ctx.err(node.pos, f"{what} must have a name")
            return None
        return node.args[0]

    def _vrrp_script(self, node: Node) -> None:
        c = self.ctx
        name = self._name(node, "vrrp_script")
        if name is None:
            return
        if any(s.name == name for s in self.vrrp_scripts):
            c.err(node.pos, f"vrrp_script {name} already defined - ignoring")
            return
        script: Script | None = None
        kw: dict[str, object] = {}
        for ch in _children(node):
            k = ch.keyword
            if k == "script":
                script = c.script(ch)
            elif k == "interval":
                _put(kw, "interval", c.timer(ch, 0.001, 2**32 / 1000))
            elif k == "timeout":
                _put(kw, "timeout", c.timer(ch, 0.001, 2**32 / 1000))
            elif k == "weight":
                iv = c.sint(ch, -253, 253)
                if iv is not None:
                    kw["weight"] = iv
                    if len(ch.args) > 1 and ch.args[1] == "reverse":
                        kw["weight_reverse"] = True
            elif k in ("rise", "fall"):
                _put(kw, k, c.uint(ch, 1, 2**31 - 1, " - ignoring"))
            elif k == "user":
                if ch.args:
                    kw["user"] = ch.args[0]
            elif k == "init_fail":
                kw["init_fail"] = True
        if script is None:  # vrrp_parser.c vrrp_vscript_end_handler(), at the block's '}'
            c.err(node.end_pos or node.pos, f"No script set for vrrp_script {name} - removing")
            return
        vs = VrrpScript(name=name, script=script, pos=node.pos, **kw)  # type: ignore[arg-type]
        if vs.timeout is None:  # keepalived: a timeout of 0 means the interval
            vs = replace(vs, timeout=vs.interval)
        self.vrrp_scripts.append(vs)

    def _read_num(self, pos: Pos, text: str, lo: float, hi: float, kind: str) -> float | None:
        """keepalived lib/parser.c read_int / read_unsigned / read_decimal_unsigned (``kind``
        "int", "unsigned", "decimal"): their INVALID_NUMBER message, or the value."""
        c = self.ctx
        num = DiagKind.INVALID_NUMBER
        if kind != "int" and text.lstrip().startswith("-"):
            c.err(pos, f"negative number '{text}'", num)
            return None
        ok = (_DECIMAL_RE.match(text) if kind == "decimal"
              else re.fullmatch(r"[+-]?[0-9]+" if kind == "int" else r"\s*\+?[0-9]+", text))
        if not ok:
            c.err(pos, f"invalid number '{text}'", num)
            return None
        v = float(text) if kind == "decimal" else int(text)
        if not lo <= v <= hi:
            rng = f"[{lo:.6f}, {hi:.6f}]" if kind == "decimal" else f"[{lo:g}, {hi:g}]"
            c.err(pos, f"number '{text}' outside range {rng}", num)
            return None
        return v

    def _track_process(self, node: Node) -> None:
        """``vrrp_track_process`` (keepalived vrrp_parser.c vrrp_tprocess_*_handler)."""
        c = self.ctx
        name = self._name(node, "vrrp_track_process")
        if name is None:
            return
        if any(t.name == name for t in self.track_processes):
            c.err(node.pos, f"vrrp_track_process {name} already defined - ignoring")
            return
        kw: dict[str, object] = {}
        path: str | None = None
        weight_set = False
        for ch in _children(node):
            k = ch.keyword
            if k == "process":
                toks, _ = split_quoted(ch.raw[len(k):].strip())
                if not toks:
                    c.arg(ch)
                    continue
                if path is not None:
                    c.err(ch.pos, f"Process already set for track process {name} - ignoring "
                          f"{toks[0]}")
                    continue
                path = toks[0]
                if len(toks) > 1:
                    kw["params"] = tuple(toks[1:])
                    kw.setdefault("param_match", "exact")
                    kw["full_command"] = True
            elif k == "param_match":
                if not ch.args:
                    kw["param_match"] = "exact"
                elif ch.args[0] in ("initial", "partial"):
                    kw["param_match"] = ch.args[0]
                else:
                    c.err(ch.pos, f"Invalid param_match type {ch.args[0]} - ignoring")
                    continue
                kw["full_command"] = True
            elif k == "weight":
                if not ch.args:
                    c.err(ch.pos, f"No weight specified for track process {name} - ignoring")
                    continue
                if weight_set:
                    c.err(ch.pos, f"Weight already set for track process {name} - ignoring "
                          f"{ch.args[0]}")
                    continue
                wv = self._read_num(ch.pos, ch.args[0], -254, 254, "int")
                if wv is None:
                    c.err(ch.pos, f"Weight ({ch.args[0]}) for vrrp_track_process {name} must "
                          "be between [-254..254] inclusive. Ignoring...")
                    continue
                w = int(wv)
                if len(ch.args) > 1:
                    if ch.args[1] == "reverse":
                        kw["weight_reverse"] = True
                    else:
                        c.err(ch.pos, f"vrrp_track_process {name} unknown weight option "
                              f"{ch.args[1]}")
                kw["weight"] = w
                weight_set = w != 0  # keepalived tests the value: a 0 may be set again
            elif k in ("quorum", "quorum_max"):
                lo = 1 if k == "quorum" else 0
                qv = self._read_num(ch.pos, ch.args[0], lo, 65535, "unsigned") if ch.args \
                    else c.arg(ch)
                if not isinstance(qv, int):
                    label = "Quorum" if k == "quorum" else "quorum_max"
                    c.err(ch.pos, f"{label} ({ch.args[0] if ch.args else ''}) for "
                          f"vrrp_track_process {name} must be between [{lo}..65535] "
                          "inclusive. Ignoring...")
                    continue
                q = qv
                quorum = int(kw.get("quorum", 1))
                qmax = kw.get("quorum_max")
                if k == "quorum":
                    if qmax is not None and q > qmax:
                        c.err(ch.pos, "Quorum is greater than quorum_max - ignoring")
                        continue
                    kw["quorum"] = q
                else:
                    # keepalived: quorum_max 0 is allowed when quorum is not set above 1
                    if (q or quorum > 1) and q < quorum:
                        c.err(ch.pos, "quorum_max is less than quorum - ignoring")
                        continue
                    kw["quorum_max"] = q
                    if q == 0:
                        kw["quorum"] = 0
                    elif not quorum:
                        kw["quorum"] = 1
            elif k in ("delay", "terminate_delay", "fork_delay"):
                s = ch.args[0] if ch.args else ""
                dv = self._read_num(ch.pos, s, 0.000001, 3600, "decimal")
                if dv is None:
                    prefix = "" if k == "delay" else k[:-5]
                    c.err(ch.pos, f"{prefix}delay ({s}) for vrrp_track_process {name} must be "
                          "between [0.000001..3600] inclusive. Ignoring...")
                    continue
                if k != "fork_delay":
                    kw["terminate_delay"] = float(dv)
                if k != "terminate_delay":
                    kw["fork_delay"] = float(dv)
            elif k == "full_command":
                kw["full_command"] = True
        if path is None:
            # keepalived vrrp_tprocess_end_handler runs at the closing brace
            c.err(node.end_pos or node.pos, f"track process '{name}' process name not specified")
            return
        self.track_processes.append(
            VrrpTrackProcess(name=name, process=path, pos=node.pos, **kw))  # type: ignore[arg-type]

    def _track_process_refs(self, owner: str, lines: list[Line]) -> tuple[TrackProcessRef, ...]:
        """``track_process { NAME [weight W [reverse|noreverse]] }`` (keepalived vrrp_track.c
        alloc_track_process)."""
        c = self.ctx
        defs = {t.name: t for t in self.track_processes}
        out: list[TrackProcessRef] = []
        for ln in lines:
            t = ln.tokens
            tp = defs.get(t[0])
            if tp is None:
                c.err(ln.pos, f"({owner}) track process {t[0]} not found, ignoring...")
                continue
            if any(r.name == t[0] for r in out):
                c.err(ln.pos, f"({owner}) duplicate track_process {t[0]} - ignoring")
                continue
            weight, reverse = tp.weight, tp.weight_reverse
            if len(t) >= 2:
                if t[1] != "weight":
                    c.err(ln.pos, f"({owner}) unknown track process option {t[1]} - ignoring")
                    continue
                if len(t) == 2:
                    c.err(ln.pos, f"({owner}) weight without value specified for track process "
                          f"{t[0]} - ignoring")
                    continue
                wv = self._read_num(ln.pos, t[2], -254, 254, "int")
                if wv is None:
                    c.err(ln.pos, f"({owner}) weight for track process {t[0]} must be in "
                          "[-254..254] inclusive. Ignoring...")
                weight = tp.weight if wv is None else int(wv)
                if len(t) >= 4:
                    if t[3] in ("reverse", "noreverse"):
                        reverse = t[3] == "reverse"
                    else:
                        c.err(ln.pos, f"({owner}) unknown track_process {t[0]} weight option "
                              f"{t[3]} - ignoring")
            out.append(TrackProcessRef(t[0], weight, reverse, tp, ln.pos))
        return tuple(out)

    def _track_file(self, node: Node) -> None:
        c = self.ctx
        name = self._name(node, node.keyword)
        if name is None:
            return
        path: str | None = None
        weight = 1
        reverse = False
        init: int | None = None
        for ch in _children(node):
            if ch.keyword == "file":
                path = c.arg(ch)
            elif ch.keyword == "weight":
                iv = c.sint(ch, -254, 254)
                if iv is not None:
                    weight = iv
                if len(ch.args) > 1:  # track_file.c: `weight N reverse`
                    if ch.args[1] == "reverse":
                        reverse = True
                    else:
                        c.err(ch.pos, f"track_file {name} unknown weight option {ch.args[1]}")
            elif ch.keyword == "init_file":
                init = 0
                if ch.args:
                    with contextlib.suppress(ValueError):
                        init = int(ch.args[0])
        if path is None:
            c.err(node.pos, f"No file set for track_file {name} - ignoring")
            return
        self.track_files.append(VrrpTrackFile(name, path, weight, init, node.pos,
                                              weight_reverse=reverse))

    def _track_file_by_name(self, name: str) -> VrrpTrackFile | None:
        for t in self.track_files:
            if t.name == name:
                return t
        return None

    def _vip(self, line: Line, owner: str) -> VirtualIp | None:
        toks = line.tokens
        addr_s, _, plen_s = toks[0].partition("/")
        ip = norm_ip(addr_s)
        if ip is None:
            self.ctx.err(line.pos, f"({owner}) Invalid address '{toks[0]}' - ignoring")
            return None
        fam = 6 if ":" in ip else 4
        maxp = 128 if fam == 6 else 32
        plen = maxp
        if plen_s:
            try:
                plen = int(plen_s)
                if not 0 <= plen <= maxp:
                    raise ValueError
            except ValueError:
                self.ctx.err(line.pos, f"({owner}) Invalid prefix length in '{toks[0]}' - "
                             "ignoring address")
                return None
        kw: dict[str, object] = {}
        i = 1
        while i < len(toks):
            t = toks[i]
            if t in ("dev", "brd", "broadcast", "scope", "label", "peer") and i + 1 < len(toks):
                kw[{"broadcast": "brd"}.get(t, t)] = toks[i + 1]
                i += 2
            elif t == "no_track":
                kw["no_track"] = True
                i += 1
            elif t in ("home", "-nodad", "nodad", "noprefixroute", "autojoin"):
                i += 1
            elif t == "track_group" and i + 1 < len(toks):
                i += 2
            else:
                self.ctx.err(line.pos, f"({owner}) Unknown configuration entry '{t}' for ip "
                             f"address - ignoring")
                i += 1
        return VirtualIp(address=ip, prefixlen=plen, pos=line.pos, **kw)  # type: ignore[arg-type]

    def _track_refs(self, ch: Node, owner: str) -> tuple[TrackRef, ...]:
        out: list[TrackRef] = []
        for ln in ch.values or []:
            name = ln.tokens[0]
            weight: int | None = None
            reverse = False
            if len(ln.tokens) >= 3 and ln.tokens[1] == "weight":
                try:
                    weight = int(ln.tokens[2])
                    if not -254 <= weight <= 254:
                        raise ValueError
                except ValueError:
                    self.ctx.err(ln.pos, f"({owner}) {ch.keyword} {name}: weight "
                                 f"'{ln.tokens[2]}' invalid - ignoring weight")
                    weight = None
                reverse = len(ln.tokens) >= 4 and ln.tokens[3] == "reverse"
            elif len(ln.tokens) > 1:
                self.ctx.err(ln.pos, f"({owner}) {ch.keyword} {name}: unknown option "
                             f"'{ln.tokens[1]}'")
            out.append(TrackRef(name, weight, reverse, ln.pos))
        return tuple(out)

    def _vrrp_lvs_syncd(self, ch: Node, name: str) -> None:
        """vrrp_parser.c vrrp_lvs_syncd_handler(): ``lvs_sync_daemon_interface IF`` in an
        instance is the global ``lvs_sync_daemon IF INSTANCE`` (deprecated)."""
        c = self.ctx
        c.err(ch.pos, f"({name}) Specifying lvs_sync_daemon_interface against a vrrp is "
              "deprecated.")
        c.err(ch.pos, "      " + " " * abs(len(name) - 2) + "Please use global lvs_sync_daemon")
        iface = c.arg(ch)
        if iface is None:
            return
        have = self.global_defs.lvs_sync_daemon
        if have is not None:
            c.err(ch.pos, f"({name}) lvs_sync_daemon_interface has already been specified as "
                  f"{have.interface} - ignoring")
            return
        self.global_defs = replace(self.global_defs, lvs_sync_daemon=LvsSyncDaemon(
            interface=iface, instance=name, pos=ch.pos))

    def _unicast_peer(self, ln: Line, name: str) -> UnicastPeer | None:
        """vrrp_data.c alloc_vrrp_unicast_peer(): ``ADDRESS [min_ttl N] [max_ttl N]``."""
        c = self.ctx
        toks = ln.tokens
        ip = stosockaddr(toks[0])
        if ip is None:
            c.err(ln.pos, f"Configuration error: VRRP instance[{name}] malformed unicast peer "
                  f"address[{toks[0]}]. Skipping...")
            return None
        ttl: dict[str, int] = {}
        for j in range(1, len(toks), 2):
            if j + 1 >= len(toks):
                c.err(ln.pos, f"({name}) {toks[j]} is missing a value")
                break
            try:
                val = int(toks[j + 1])
            except ValueError:
                c.err(ln.pos, f"invalid number '{toks[j + 1]}'", DiagKind.INVALID_NUMBER)
                continue
            if not 0 <= val <= 255:
                c.err(ln.pos, f"number '{toks[j + 1]}' outside range [0, 255]",
                      DiagKind.INVALID_NUMBER)
                continue
            if toks[j] not in ("min_ttl", "max_ttl"):
                c.err(ln.pos, f"({name}) unknown unicast_peer option {toks[j]}")
                break
            ttl[toks[j]] = val
        lo, hi = ttl.get("min_ttl", 0), ttl.get("max_ttl", 255)
        if lo > hi:
            c.err(ln.pos, f"({name}) min_ttl {lo} > max_ttl {hi} - all packets will be discarded")
        return UnicastPeer(ip, ttl.get("min_ttl"), ttl.get("max_ttl"), ln.pos)

    def _use_vmac(self, ch: Node, name: str, kw: dict[str, object]) -> None:
        """vrrp_parser.c vrrp_vmac_handler(): ``use_vmac [NAME] [MAC]``, either order. The name
        stays "" unless given: finish_vrrp() names it (vrrp.c create_vmac_name)."""
        from lvsd.vrrp.vmac import dev_name_valid, parse_vmac_mac

        c = self.ctx
        kw.setdefault("use_vmac", "")
        for arg in ch.args[:2]:
            if ":" in arg:  # a MAC address: interface names cannot include a ':'
                if "_vmac_mac" in kw:
                    c.err(ch.pos, "VMAC interface address already specified")
                    continue
                pm = parse_vmac_mac(arg)
                if pm.error:
                    c.err(ch.pos, pm.error)
                else:
                    kw["_vmac_mac"] = pm
                continue
            if kw["use_vmac"]:
                c.err(ch.pos, "VMAC interface name already specified")
                continue
            if not dev_name_valid(arg):
                c.err(ch.pos, f"VMAC interface name '{arg}' too long or invalid characters - "
                      "ignoring")
                continue
            other = next((i for i in self.instances if i.use_vmac == arg), None)
            if other is not None:
                c.err(ch.pos, f"({name}) VRRP instance {other.name} is already using {arg} - "
                      "ignoring name")
                continue
            kw["use_vmac"] = arg

    def _vmac_end(self, node: Node, name: str, kw: dict[str, object], strict: object,
                  vrid: int) -> None:
        """use_vmac / vmac_xmit_base checks at the end of the block, in keepalived's order."""
        c = self.ctx
        pm = kw.pop("_vmac_mac", None)
        vmac = "use_vmac" in kw
        end = node.end_pos or node.pos  # vrrp_end_handler() runs at the closing brace
        if vmac and any(ch.keyword in _UNICAST_KEYWORDS for ch in _children(node)):
            # vrrp_parser.c vrrp_end_handler()
            if "interface" not in kw:
                c.err(end, f"({name}): Cannot use VMAC/ipvlan with unicast and no interface - "
                      "clearing use_vmac")
                kw.pop("use_vmac")
                vmac = False
            elif not kw.get("vmac_xmit_base"):
                c.err(end, f"({name}) unicast with use_vmac requires vmac_xmit_base - setting")
                kw["vmac_xmit_base"] = True
        # vrrp.c vrrp_complete_instance(), after the whole file is read: no position
        if strict and pm is not None:
            c.err(None, f"({name}): cannot specify MAC address with strict mode - clearing")
            pm = None
        if vmac and strict and kw.get("vmac_xmit_base"):
            c.err(None, f"({name}) xmit_base is incompatible with strict mode - resetting")
            kw["vmac_xmit_base"] = False
        if kw.get("vmac_xmit_base") and not vmac:
            c.err(None, f"({name}) vmac_xmit_base is only valid with a vmac")
            kw["vmac_xmit_base"] = False
        if vmac and pm is not None:
            kw["vmac_mac"] = pm.with_vrid(vrid)  # type: ignore[attr-defined]

    def _vrrp_instance(self, node: Node) -> None:
        c = self.ctx
        g = self.global_defs
        name = self._name(node, "vrrp_instance")
        if name is None:
            return
        if any(i.name == name for i in self.instances):
            c.err(node.pos, f"vrrp instance {name} already defined")
            return
        ctxname = f"vrrp_instance {name}"
        kw: dict[str, object] = {}
        vrid: int | None = None
        priority: int | None = None
        version: int | None = None
        state: VrrpState | None = None
        unsupported: list[Unsupported] = []
        vips: list[VirtualIp] = []
        vips_ex: list[VirtualIp] = []
        for ch in _children(node):
            k = ch.keyword
            if ch.spec is not None and not ch.spec.supported:
                unsupported.append(c.unsupported_kw(ch, ctxname))
                continue
            if k == "state":
                s = c.arg(ch)
                if s == "MASTER":
                    state = VrrpState.MASTER
                elif s == "BACKUP":
                    if state is VrrpState.MASTER:
                        c.err(ch.pos, f"({name}) state previously set as MASTER - ignoring BACKUP")
                    else:
                        state = VrrpState.BACKUP
                elif s is not None:
                    c.err(ch.pos, f"({name}) unknown state '{s}', defaulting to BACKUP")
                    state = VrrpState.BACKUP
            elif k == "interface":
                _put(kw, "interface", c.arg(ch))
                kw["interface_pos"] = ch.pos  # for the host checks (config/hostcheck.py)
            elif k == "virtual_router_id":
                vrid = _or(c.uint(ch, 1, 255, f" - ({name}): VRID not valid - must be between "
                                  "1 & 255"), vrid)
            elif k == "priority":
                iv = c.uint(ch, 1, 255, f" - ({name}) Priority not valid! must be between 1 & "
                            "255. Using default 100")
                priority = iv if iv is not None else 100
            elif k == "advert_int":
                _put(kw, "advert_int", c.timer(ch, 0.01, 255.0, f" - ({name}) Advert interval "
                                               "not valid! - ignoring"))
            elif k == "version":
                version = _or(c.uint(ch, 2, 3, f" - ({name}): Version must be either 2 or 3"),
                              version)
            elif k in ("native_ipv6", "nopreempt", "dont_track_primary"):
                kw[k] = True  # keepalived ignores anything after these keywords
            elif k in ("check_unicast_src", "lower_prio_no_advert", "higher_prio_send_advert",
                       "smtp_alert"):
                _put(kw, k, c.flag(ch))
            elif k == "notify_priority_changes":
                # keepalived vrrp_parser.c vrrp_notify_priority_changes_handler()
                tf = true_false(ch.args[0]) if ch.args else True
                if tf is None:
                    c.err(ch.pos, f"({name}) Invalid value '{ch.args[0]}' for "
                          "notify_priority_changes specified")
                else:
                    kw[k] = tf
            elif k == "track_process":
                self._tp_lines.setdefault(("i", name), []).extend(ch.values or [])
            elif k == "preempt":
                kw["nopreempt"] = False
            elif k in ("accept", "no_accept"):
                kw["accept"] = k == "accept"
            elif k == "strict_mode":
                _put(kw, "strict_mode", c.flag(ch))
            elif k == "preempt_delay":
                _put(kw, "preempt_delay", c.timer(ch, 0, 1000))
            elif k == "down_timer_adverts":
                _put(kw, k, c.uint(ch, 1, 100, " - ignoring"))
            elif k in ("mcast_src_ip", "unicast_src_ip"):
                v = c.arg(ch)
                if v is None:
                    continue
                # vrrp_parser.c vrrp_srcip_handler(): inet_stosockaddr() drops a '/len'
                ip = stosockaddr(v)
                if ip is None:
                    c.err(ch.pos, f"Configuration error: VRRP instance[{name}] malformed src "
                          f"address[{v}]. Skipping...")
                    continue
                kw[k] = ip
            elif k == "lvs_sync_daemon_interface":
                self._vrrp_lvs_syncd(ch, name)
            elif k == "mcast_dst_ip":
                v = c.arg(ch)
                ip = norm_ip(v) if v is not None else None
                if ip is None or not ipaddress.ip_address(ip).is_multicast:
                    c.err(ch.pos, f"({name}) mcast_dst_ip '{v}' is not a multicast address - "
                          "ignoring")
                    continue
                kw["mcast_group"] = ip
            elif k == "use_vmac":
                self._use_vmac(ch, name, kw)
            elif k == "vmac_xmit_base":  # vrrp_parser.c vrrp_vmac_xmit_base_handler()
                kw[k] = True
            elif k in ("garp_master_delay", "garp_master_refresh", "garp_lower_prio_delay"):
                _put(kw, k, c.timer(ch))
            elif k in ("garp_master_repeat", "garp_master_refresh_repeat",
                       "garp_lower_prio_repeat"):
                _put(kw, k, c.uint(ch, 0, 2**31 - 1, " - ignoring"))
            elif k in _NOTIFY:
                sc = c.script(ch)
                if sc is not None and k in kw:
                    c.err(ch.pos, f"({name}) {k} script already specified - ignoring "
                          f"{sc.command}")
                elif sc is not None:
                    kw[k] = sc
            elif k in ("virtual_ipaddress", "virtual_ipaddress_excluded"):
                for ln in ch.values or []:
                    vip = self._vip(ln, name)
                    if vip is not None:
                        (vips if k == "virtual_ipaddress" else vips_ex).append(vip)
            elif k == "unicast_peer":
                peers = list(kw.get("unicast_peers", ()))  # type: ignore[call-overload]
                for ln in ch.values or []:
                    peer = self._unicast_peer(ln, name)
                    if peer is not None:
                        peers.append(peer)
                kw["unicast_peers"] = tuple(peers)
            elif k in ("track_interface", "track_script", "track_file"):
                field_name = {"track_interface": "track_interfaces",
                              "track_script": "track_scripts",
                              "track_file": "track_files"}[k]
                prev: tuple[TrackRef, ...] = kw.get(field_name, ())  # type: ignore[assignment]
                kw[field_name] = prev + self._track_refs(ch, name)
            elif k == "authentication":
                for a in _children(ch):
                    if a.keyword == "auth_type":
                        t = c.arg(a)
                        if t in ("PASS", "AH"):
                            kw["auth_type"] = t
                        elif t is not None:
                            c.err(a.pos, f"({name}) unknown authentication type '{t}'")
                    elif a.keyword == "auth_pass":
                        p = c.arg(a)
                        if p is not None:
                            if len(p) > 8:  # vrrp_parser.c vrrp_auth_pass_handler()
                                c.err(a.pos, "Truncating auth_pass to 8 characters")
                                p = p[:8]
                            kw["auth_pass"] = p
        if vrid is None:  # vrrp.c chk_min_cfg(): vrrp_complete_init() fails
            c.fatal(node.pos, f"({name}) the virtual router id must be set")
            return
        peers_set: tuple[UnicastPeer, ...] = kw.get("unicast_peers", ())  # type: ignore[assignment]
        # (the instance stays in the model for inspection; a FATAL config is not run)
        if "interface" not in kw and (not peers_set or (
                "unicast_src_ip" not in kw and "mcast_src_ip" not in kw)):
            # vrrp.c chk_min_cfg(): no interface and not unicast with a source address -
            # vrrp_complete_init() fails (keepalived 2.2.7 says this, checked by
            # tests/config/test_parity_messages.py, before vrrp_complete_instance()'s "Unicast
            # instances must have unicast_src_ip or interface" could)
            c.fatal(node.pos, f"({name}) Unknown interface!")
        child_kws = {ch.keyword for ch in _children(node)}
        if not peers_set and child_kws & _UNICAST_KEYWORDS and \
                "unicast_fault_no_peer" not in child_kws:  # that one: a FAULT, only logged
            # vrrp.c vrrp_complete_instance(): VRRP_FLAG_UNICAST_CONFIGURED without peers
            c.err(node.pos, f"({name}) A unicast keyword has been specified without any unicast "
                  "peers. Defaulting to multicast. This usage is deprecated - please update your "
                  "configuration.", DiagKind.DEPRECATED)
        own = kw.get("interface")
        tracked: tuple[TrackRef, ...] = kw.get("track_interfaces", ())  # type: ignore[assignment]
        if own is not None and any(r.name == own for r in tracked):
            for r in tracked:
                if r.name == own:  # vrrp.c vrrp_complete_instance()
                    c.err(r.pos, f"({name}) Ignoring track_interface {own} since own interface")
            kw["track_interfaces"] = tuple(r for r in tracked if r.name != own)
        # family: from the VIPs (keepalived: first address decides) or native_ipv6
        family = 4
        if kw.get("native_ipv6"):
            family = 6
        elif vips:
            family = vips[0].family
        if vips and any(v.family != family for v in vips):
            for bad_vip in vips:
                if bad_vip.family != family:
                    c.err(bad_vip.pos, f"({name}): address family must match VRRP instance "
                          f"[{bad_vip.cidr}] - ignoring")
            vips = [v for v in vips if v.family == family]
        if version is None:
            version = g.vrrp_version
        if family == 6 and version == 2:
            if "version" in (ch.keyword for ch in _children(node)):
                c.err(node.pos, f"({name}) cannot use IPv6 with VRRP version 2; setting version 3")
            version = 3
        if priority is None:
            priority = 255 if state is VrrpState.MASTER else 100
        if kw.get("auth_type") and version == 3:
            c.err(node.pos, f"({name}) VRRP version 3 does not support authentication. Ignoring.")
            kw.pop("auth_type", None)
            kw.pop("auth_pass", None)
        strict = kw.pop("strict_mode", None)
        if strict is None and g.vrrp_strict:
            strict = True
        if strict and kw.get("auth_type"):
            c.err(node.pos, f"({name}) Strict mode does not support authentication. Ignoring.")
            kw.pop("auth_type", None)
            kw.pop("auth_pass", None)
        if kw.get("auth_type") and not kw.get("auth_pass"):
            # vrrp.c vrrp_complete_instance: no authentication then
            c.err(node.pos, f"({name}) Authentication specified but no password given. Ignoring")
            kw.pop("auth_type", None)
            kw.pop("auth_pass", None)
        if state is None:
            state = VrrpState.MASTER if priority == 255 else VrrpState.BACKUP
        elif strict and (state is VrrpState.MASTER) != (priority == 255):
            c.err(node.pos, f"({name}) State MASTER must match being address owner")
            state = VrrpState.MASTER if priority == 255 else VrrpState.BACKUP
        if kw.get("auth_type") == "AH" and family == 6:
            c.err(node.pos, f"({name}) Cannot use AH authentication with IPv6. ignoring")
            kw.pop("auth_type", None)
            kw.pop("auth_pass", None)
        elif kw.get("auth_type") == "AH" and state is VrrpState.MASTER and priority != 255:
            c.err(node.pos, f"({name}) Initial state master is incompatible with AH "
                  "authentication - clearing")
            state = VrrpState.BACKUP
        if not vips:
            if version == 3 or family == 6 or strict:
                # vrrp.c vrrp_complete_instance() returns false: vrrp_complete_init() fails
                c.fatal(node.pos, f"({name}) No VIP specified; at least one is required")
                return
            c.err(node.pos, f"({name}) No VIP specified; at least one is sensible",
                  DiagKind.WARNING)
        # vrrp.c vrrp_complete_instance(): preemption settings that cannot apply
        if priority == 255 and kw.get("nopreempt"):
            c.err(node.pos, f"({name}) nopreempt is incompatible with priority 255. resetting "
                  "nopreempt")
            kw["nopreempt"] = False
        if state is VrrpState.MASTER:
            if kw.get("nopreempt"):
                c.err(node.pos, f"({name}) Warning - nopreempt will not work with initial state "
                      "MASTER - clearing")
                kw["nopreempt"] = False
            if kw.get("preempt_delay"):
                c.err(node.pos, f"({name}) Warning - preempt delay will not work with initial "
                      "state MASTER - clearing")
                kw["preempt_delay"] = 0.0
        if kw.get("preempt_delay") and strict:
            c.err(node.pos, f"({name}) preempt_delay is incompatible with strict mode - "
                  "resetting")
            kw["preempt_delay"] = 0.0
        self._vmac_end(node, name, kw, strict, vrid)
        if "mcast_group" not in kw:
            kw["mcast_group"] = g.vrrp_mcast_group6 if family == 6 else g.vrrp_mcast_group4
        defaults = {
            "garp_master_delay": g.vrrp_garp_master_delay,
            "garp_master_repeat": g.vrrp_garp_master_repeat,
            "garp_master_refresh": g.vrrp_garp_master_refresh,
            "garp_master_refresh_repeat": g.vrrp_garp_master_refresh_repeat,
            "garp_lower_prio_delay": g.vrrp_garp_lower_prio_delay,
            "garp_lower_prio_repeat": g.vrrp_garp_lower_prio_repeat,
            "lower_prio_no_advert": g.vrrp_lower_prio_no_advert,
            "higher_prio_send_advert": g.vrrp_higher_prio_send_advert,
            "check_unicast_src": g.vrrp_check_unicast_src,
        }
        for key, val in defaults.items():
            kw.setdefault(key, val)
        if "smtp_alert" not in kw and self._global_smtp_alert is not None:
            kw["smtp_alert"] = self._global_smtp_alert
        interface = kw.pop("interface", None)
        inst = VrrpInstance(
            name=name,
            interface=interface,  # type: ignore[arg-type]
            virtual_router_id=vrid,
            pos=node.pos,
            state=state,
            priority=priority,
            version=version,
            family=family,
            strict_mode=strict,  # type: ignore[arg-type]
            virtual_ipaddresses=tuple(vips),
            virtual_ipaddresses_excluded=tuple(vips_ex),
            unsupported=tuple(unsupported),
            **kw,  # type: ignore[arg-type]
        )
        self.instances.append(inst)

    def _sync_group(self, node: Node) -> None:
        c = self.ctx
        name = self._name(node, "vrrp_sync_group")
        if name is None:
            return
        kw: dict[str, object] = {}
        members: list[str] = []
        for ch in _children(node):
            k = ch.keyword
            if ch.spec is not None and not ch.spec.supported:
                c.unsupported_kw(ch, f"vrrp_sync_group {name}")
                continue
            if k == "group":
                for ln in ch.values or []:
                    members.extend(ln.tokens)
            elif k in ("track_interface", "track_script", "track_file"):
                kw[k + "s" if k != "track_interface" else "track_interfaces"] = \
                    self._track_refs(ch, name)
            elif k in ("notify_backup", "notify_master", "notify_fault", "notify_stop", "notify"):
                _put(kw, k, c.script(ch))
            elif k in ("smtp_alert", "global_tracking", "sync_group_tracking_weight"):
                _put(kw, k, c.flag(ch))
            elif k == "notify_priority_changes":
                # keepalived vrrp_parser.c vrrp_sg_notify_priority_changes_handler()
                tf = true_false(ch.args[0]) if ch.args else True
                if tf is None:
                    c.err(ch.pos, f"({name}) Invalid value '{ch.args[0]}' for sync group "
                          "notify_priority_changes specified")
                else:
                    kw[k] = tf
            elif k == "track_process":
                self._tp_lines.setdefault(("g", name), []).extend(ch.values or [])
        if not members:  # vrrp.c vrrp_complete_init()
            c.err(node.pos, f"Sync group {name} has no virtual router(s). removing")
            return
        self.sync_groups.append(VrrpSyncGroup(name=name, group=tuple(members), pos=node.pos,
                                              **kw))  # type: ignore[arg-type]

    def finish_vrrp(self) -> None:
        """Cross checks that need every block read (keepalived does them at the end too)."""
        c = self.ctx
        g = self.global_defs
        scripts_used = bool(self.vrrp_scripts) or any(
            getattr(i, f) is not None for i in self.instances for f in _NOTIFY) or any(
            sg.notify or sg.notify_master or sg.notify_backup or sg.notify_fault or sg.notify_stop
            for sg in self.sync_groups) or any(
            vs.quorum_up or vs.quorum_down or any(
                r.notify_up or r.notify_down or any(ch.misc_path for ch in r.checkers)
                for r in vs.real_servers) for vs in self.virtual_servers) or bool(
            g.notify_fifo_script or g.vrrp_notify_fifo_script or g.lvs_notify_fifo_script)
        if scripts_used and not g.enable_script_security:
            # keepalived: SECURITY VIOLATION (exit 6) when a script file is writable by a
            # non-root user; that depends on the files at run time, so a warning here.
            c.warn(None, "scripts are configured but enable_script_security is not set - "
                   "keepalived reports SECURITY VIOLATION if any script is insecure")
        names = {i.name for i in self.instances}
        seen: dict[str, str] = {}
        groups: list[VrrpSyncGroup] = []
        for sg in self.sync_groups:
            members: list[str] = []
            for m in sg.group:
                if m not in names:
                    c.err(sg.pos, f"Virtual router {m} specified in sync group {sg.name} "
                          "doesn't exist - ignoring")
                elif m in seen:  # vrrp_sync.c vrrp_sync_set_group()
                    c.err(sg.pos, f"Virtual router {m} cannot exist in more than one sync "
                          f"group; ignoring {sg.name}")
                else:
                    seen[m] = sg.name
                    members.append(m)
            if not members:  # vrrp_sync.c vrrp_sync_set_group()
                c.err(sg.pos, f"Sync group {sg.name}, no matching virtual router found in group "
                      "declaration - removing")
                continue
            if len(members) == 1:
                c.err(sg.pos, f"Sync group {sg.name} has only 1 virtual router(s) - this "
                      "probably isn't what you want")
            groups.append(replace(sg, group=tuple(members)))
        self.sync_groups = groups
        scripts = {s.name for s in self.vrrp_scripts}
        files = {t.name for t in self.track_files}
        for inst in self.instances:
            for ref in inst.track_scripts:
                if ref.name not in scripts:
                    c.err(ref.pos, f"({inst.name}) track script {ref.name} not found, ignoring...")
            for ref in inst.track_files:
                if ref.name not in files:
                    c.err(ref.pos, f"({inst.name}) track file {ref.name} not found, ignoring...")
        if any(i.use_vmac == "" for i in self.instances):
            # vrrp.c create_vmac_name(): a default vmac name avoids every other instance's
            from lvsd.vrrp.vmac import vmac_name

            taken = {i.use_vmac for i in self.instances if i.use_vmac}
            for n, i in enumerate(self.instances):
                if i.use_vmac == "":
                    vname = vmac_name(i.virtual_router_id, i.family, taken)
                    taken.add(vname)
                    self.instances[n] = replace(i, use_vmac=vname)
        self.instances = [
            replace(i,
                    track_scripts=tuple(r for r in i.track_scripts if r.name in scripts),
                    track_files=tuple(r for r in i.track_files if r.name in files),
                    track_processes=self._track_process_refs(
                        i.name, self._tp_lines.get(("i", i.name), [])))
            for i in self.instances
        ]
        self.sync_groups = [
            replace(sg, track_processes=self._track_process_refs(
                sg.name, self._tp_lines.get(("g", sg.name), [])))
            for sg in self.sync_groups
        ]
        self._vrid_conflicts()

    def _vrid_conflicts(self) -> None:
        """vrrp.c check_vrid_conflicts(): two instances that would share a VRID on the wire make
        vrrp_complete_init() fail - fatal. Multicast: same family, VRID, interface and group;
        unicast: same family and VRID, same (or an unset) interface and source address, and a
        peer in common. (keepalived compares live interfaces; lvsd their configured names.)"""
        c = self.ctx
        insts = self.instances
        for n, a in enumerate(insts):
            for b in insts[n + 1:]:
                if a.family != b.family or a.virtual_router_id != b.virtual_router_id:
                    continue
                if bool(a.unicast_peers) != bool(b.unicast_peers):
                    continue  # unicast and multicast are separate VRID spaces
                if a.unicast_peers:
                    if a.interface and b.interface and a.interface != b.interface:
                        continue
                    src_a = a.unicast_src_ip or a.mcast_src_ip
                    src_b = b.unicast_src_ip or b.mcast_src_ip
                    if src_a is None or src_b is None or src_a != src_b:
                        continue  # keepalived compares the interfaces' live addresses then
                    if not {p.address for p in a.unicast_peers} & {
                            p.address for p in b.unicast_peers}:
                        continue
                    c.fatal(b.pos, f"({a.name}) duplicate VRID conflict with {b.name} VRID "
                            f"{a.virtual_router_id}")
                    continue
                if a.interface is None or a.interface != b.interface or \
                        a.mcast_group != b.mcast_group:
                    continue
                c.fatal(b.pos, f"{a.name} and {b.name} both use VRID {a.virtual_router_id} "
                        f"with IPv{a.family} on interface {a.interface}")

    # ---------------------------------------------------------------- LVS

    def _vsg(self, node: Node) -> None:
        c = self.ctx
        if not node.args:
            c.err(node.pos, "virtual_server_group must have a name")
            return
        name = node.args[0]
        ranges: list[VsgAddressRange] = []
        marks: list[VsgFwmark] = []
        for ln in node.values or []:
            t = ln.tokens
            if t[0] == "fwmark":
                try:
                    fm = int(t[1])
                    if not 0 <= fm <= IPVS_FWMARK_MAX:
                        raise ValueError
                except (ValueError, IndexError):
                    c.err(ln.pos, f"virtual server group {name} fwmark "
                          f"'{t[1] if len(t) > 1 else ''}' invalid - ignoring")
                    continue
                marks.append(VsgFwmark(fm, ln.pos))
                continue
            first_s, dash, last_s = t[0].partition("-")
            first = norm_ip(first_s)
            port = 0
            if len(t) > 1:
                try:
                    port = int(t[1])
                    if not 0 <= port <= 65535:
                        raise ValueError
                except ValueError:
                    c.err(ln.pos, f"virtual server group {name}: invalid port '{t[1]}' - ignoring")
                    continue
            if first is None:
                c.err(ln.pos, f"virtual server group {name}: invalid address '{t[0]}' - ignoring")
                continue
            last = first
            if dash:
                ipf = ipaddress.ip_address(first)
                if ipf.version == 4 and re.fullmatch(r"\d{1,3}", last_s):
                    lastn = int(last_s)
                    base = int(ipf) & ~0xFF
                    last_ip = str(ipaddress.IPv4Address(base | lastn)) if lastn <= 255 else None
                elif ipf.version == 6 and re.fullmatch(r"[0-9a-fA-F]{1,4}", last_s):
                    last_ip = str(ipaddress.IPv6Address((int(ipf) & ~0xFFFF) | int(last_s, 16)))
                else:
                    last_ip = norm_ip(last_s)
                if last_ip is None or int(ipaddress.ip_address(last_ip)) < int(ipf):
                    c.err(ln.pos, f"virtual server group {name}: invalid range '{t[0]}' - "
                          "ignoring")
                    continue
                last = last_ip
            ranges.append(VsgAddressRange(first, last, port, ln.pos))
        if not ranges and not marks:
            c.err(node.pos, f"virtual server group {name} has no entries - removing")
            return
        if any(g.name == name for g in self.vsgs):
            c.err(node.pos, f"virtual server group {name} already defined - ignoring")
            return
        self.vsgs.append(VirtualServerGroup(name, tuple(ranges), tuple(marks), node.pos))

    def _forwarding(self, ch: Node, who: str) -> tuple[LbKind, TunnelOptions | None] | None:
        c = self.ctx
        m = c.arg(ch)
        if m is None:
            return None
        if m not in ("NAT", "DR", "TUN"):
            c.err(ch.pos, f"PARSER : unknown [{m}] routing method for {who} server.")
            return None
        kind = LbKind(m)
        if kind is not LbKind.TUN:
            if len(ch.args) > 1:
                c.err(ch.pos, f"Invalid tunnel option {ch.args[1]} for {who} server.")
            return kind, None
        ttype, port, csum = "ipip", 0, None
        i = 1
        while i < len(ch.args):
            a = ch.args[i]
            if a == "type" and i + 1 < len(ch.args):
                if ch.args[i + 1] not in ("ipip", "gue", "gre"):
                    c.err(ch.pos, f"Unknown tunnel type {ch.args[i + 1]} for {who} server.")
                    return None
                ttype = ch.args[i + 1]
                i += 2
            elif a == "port" and i + 1 < len(ch.args):
                try:
                    port = int(ch.args[i + 1])
                    if not 1 <= port <= 65535:
                        raise ValueError
                except ValueError:
                    c.err(ch.pos, f"Invalid gue tunnel port {ch.args[i + 1]} for {who} server.")
                    return None
                i += 2
            elif a in ("nocsum", "csum", "remcsum"):
                csum = a
                i += 1
            else:
                c.err(ch.pos, f"Invalid tunnel option {a} for {who} server.")
                return None
        if (ttype == "gue") != (port != 0):
            c.err(ch.pos, "gue tunnels require port, otherwise cannot have port.")
            return None
        if ttype == "ipip" and csum not in (None, "nocsum"):
            c.err(ch.pos, "ipip tunnels do not support checksum option.")
            return None
        return kind, TunnelOptions(ttype, port or None, csum)

    def _virtual_server(self, node: Node) -> None:
        c = self.ctx
        a = node.args
        vs: dict[str, object] = {}
        if not a:
            c.err(node.pos, "virtual_server needs an address and port, 'fwmark N' or 'group NAME'"
                  " - skipping")
            return
        family: int | None = None
        if a[0] == "group":
            if len(a) < 2:
                c.err(node.pos, "virtual_server group needs a name - skipping")
                return
            vs["group"] = a[1]
            grp = next((g for g in self.vsgs if g.name == a[1]), None)
            if grp is None:
                # ipwrapper.c link_vsg_to_vs(): a log message, not a config error (keepalived
                # -t exits 0) and not fatal: the virtual server is dropped, the rest runs
                c.warn(node.pos, f"Virtual server group {a[1]} specified but not configured - "
                       f"ignoring virtual server [{a[1]}]:0", DiagKind.GENERAL)
                return
            if grp.ranges:
                family = 6 if ":" in grp.ranges[0].first else 4
        elif a[0] == "fwmark":
            try:
                fm = int(a[1]) if len(a) > 1 else -1
                if not 0 <= fm <= IPVS_FWMARK_MAX:
                    raise ValueError
            except ValueError:
                c.err(node.pos, f"virtual server fwmark '{a[1] if len(a) > 1 else ''}' must be in "
                      f"[0, {IPVS_FWMARK_MAX}] - ignoring")
                return
            vs["fwmark"] = fm
            grp = None
        else:
            ap = _addr_port(a)
            if ap is None:
                c.err(node.pos, f"Invalid virtual server IP address/port {' '.join(a[:2])} - "
                      "skipping")
                return
            ip, port = ap
            vs["address"], vs["port"] = ip, port
            family = 6 if ":" in ip else 4
            grp = None
        ident = " ".join(a[:2])
        ctxname = f"virtual_server {ident}"
        unsupported: list[Unsupported] = []
        protocol: Protocol | None = None
        lb_algo: str | None = None
        lb_kind: LbKind | None = None
        tunnel: TunnelOptions | None = None
        flags: set[str] = set()
        persistence: int | None = None
        granularity: str | None = None
        connect_timeout = 5.0
        delay_loop = 60.0
        warmup: float | None = None
        retry: int | None = None
        dbr: float | None = None
        weight = 1
        inhibit = False
        alpha = False
        sorry: SorryServer | None = None
        sorry_inhibit = False
        sorry_kind: tuple[LbKind, TunnelOptions | None] | None = None
        rs_nodes: list[Node] = []
        smtp_alert: bool | None = None
        for ch in _children(node):
            k = ch.keyword
            if ch.spec is not None and not ch.spec.supported:
                unsupported.append(c.unsupported_kw(ch, ctxname))
                continue
            if k == "real_server":
                rs_nodes.append(ch)
            elif k == "ip_family":
                f = c.arg(ch)
                fam = {"inet": 4, "inet6": 6}.get(f or "")
                if fam is None:
                    c.err(ch.pos, f"unknown address family {f}")
                elif family is not None and fam != family:
                    c.err(ch.pos, f"Virtual server specified family {f} conflicts with server "
                          "family")
                else:
                    family = fam
            elif k == "connect_timeout":
                # check_parser.c vs_*_handler() messages
                tv = c.timer(ch, 0.000001, TIMER_MAX,
                             _hmsg(ch, "virtual server connect_timeout {} invalid - ignoring"))
                if tv is not None:
                    connect_timeout = tv
            elif k == "delay_loop":
                delay_loop = _or(c.timer(ch, 0.000001, default_msg=_hmsg(
                    ch, "virtual server delay loop '{}' invalid - ignoring")), delay_loop)
            elif k == "delay_before_retry":
                dbr = _or(c.timer(ch, default_msg=_hmsg(
                    ch, "virtual server delay before retry '{}' invalid - ignoring")), dbr)
            elif k == "warmup":
                warmup = _or(c.timer(ch, default_msg=_hmsg(
                    ch, "virtual server warmup '{}' invalid - ignoring")), warmup)
            elif k == "retry":
                retry = _or(c.uint(ch, 1, 2**32 - 1, _hmsg(ch, "retry value invalid - {}")), retry)
            elif k in ("lb_algo", "lvs_sched"):
                s = c.arg(ch)
                if s is not None and s in LVS_SCHEDULERS:
                    lb_algo = s
                elif s is not None:
                    c.err(ch.pos, f"Invalid lvs_scheduler '{s}' - ignoring")
            elif k in ("ops", "sh-port", "sh-fallback", "mh-port", "mh-fallback"):
                if k == "ops" or (k.startswith("sh") and lb_algo == "sh") or \
                        (k.startswith("mh") and lb_algo == "mh"):
                    flags.add(k)
                else:
                    c.err(ch.pos, f"{k} only applies to {k[:2]} scheduler - ignoring")
            elif k in ("lb_kind", "lvs_method"):
                fw = self._forwarding(ch, "virtual")
                if fw is not None:
                    lb_kind, tunnel = fw
            elif k == "persistence_timeout":
                if not ch.args:
                    persistence = IPVS_SVC_PERSISTENT_TIMEOUT
                else:
                    persistence = _or(c.uint(ch, 1, LVS_MAX_TIMEOUT,
                                             " - persistence_timeout invalid"), persistence)
            elif k == "persistence_granularity":
                s = c.arg(ch)
                if s is None:
                    continue
                gran_ok = False
                if "." in s:
                    gran_ok = norm_ip(s) is not None and ":" not in (norm_ip(s) or ":")
                else:
                    with contextlib.suppress(ValueError):
                        gran_ok = 1 <= int(s) <= 128
                if not gran_ok:
                    c.err(ch.pos, f"Invalid persistence_granularity specified - {s}")
                    continue
                granularity = s
                if not persistence:
                    persistence = IPVS_SVC_PERSISTENT_TIMEOUT
            elif k == "protocol":
                s = (c.arg(ch) or "").upper()
                if s in ("TCP", "UDP", "SCTP"):
                    protocol = Protocol(s)
                elif ch.args:
                    c.err(ch.pos, f"Unknown protocol {ch.args[0]} - ignoring")
            elif k == "ha_suspend":
                vs["ha_suspend"] = True
            elif k == "smtp_alert":
                smtp_alert = c.flag(ch)
            elif k == "virtualhost":
                s = c.arg(ch)
                if s is not None:
                    vs["virtualhost"] = s
            elif k in ("alpha", "omega", "inhibit_on_failure"):
                # check_parser.c vs_alpha_handler() / omega_handler() / vs_inhibit_handler():
                # a parameter is ignored, the keyword alone sets it
                if ch.args:
                    c.warn(ch.pos, f"keepalived ignores '{ch.args[0]}' after virtual_server {k}: "
                           f"{k} is set")
                if k == "alpha":
                    alpha = True
                elif k == "inhibit_on_failure":
                    inhibit = True
                else:
                    vs["omega"] = True
            elif k in ("quorum_up", "quorum_down"):
                _put(vs, k, c.script(ch))
            elif k == "lvs_drain_on_remove":
                _put(vs, k, c.timer(ch, 0.0, DRAIN_MAX))
            elif k in ("quorum", "hysteresis"):
                _put(vs, k, c.uint(ch, 1 if k == "quorum" else 0, 2**32 - 1, " - ignoring"))
            elif k == "weight":
                # check_parser.c vs_weight_handler()
                weight = _or(c.uint(ch, 1, IPVS_WEIGHT_LIMIT, " - Virtual server weight "
                                    f"{ch.args[0] if ch.args else ''} is outside range "
                                    f"1-{IPVS_WEIGHT_LIMIT}"), weight)
            elif k == "sorry_server":
                ap = _addr_port(ch.args)
                if ap is None:
                    c.err(ch.pos, f"Invalid sorry server IP address {' '.join(ch.args)} - "
                          "skipping")
                    continue
                sorry = SorryServer(ap[0], ap[1], None, ch.pos)
            elif k == "sorry_server_inhibit":
                if sorry is None:
                    c.err(ch.pos, "Ignoring sorry_server inhibit used before or without "
                          "sorry_server")
                else:
                    sorry_inhibit = True
            elif k == "sorry_server_lvs_method":
                if sorry is None:
                    c.err(ch.pos, "sorry_server forwarding used without sorry_server")
                else:
                    sorry_kind = self._forwarding(ch, "sorry")
        def fmt_vs() -> str:  # check_data.c format_vs() (FMT_VS), with the current protocol
            if "group" in vs:
                return f"[{vs['group']}]:0"
            if "fwmark" in vs:
                return f"FWM {vs['fwmark']}"
            return f"[{vs['address']}]:{_proto_str(protocol)}:{vs['port']}"

        def fmt_rs(r: RealServer) -> str:  # check_data.c format_rs() (FMT_RS)
            return f"[{r.address}]:{_proto_str(protocol)}:{r.port}"

        if not rs_nodes:
            c.err(node.pos, f"Virtual server {fmt_vs()} has no real servers - ignoring")
            return
        is_fwmark = "fwmark" in vs or (grp is not None and not grp.ranges)
        if not is_fwmark and protocol is None:
            c.err(node.pos, f"Virtual server {fmt_vs()}: no protocol set - defaulting to UDP")
            protocol = Protocol.UDP
        if is_fwmark and protocol is not None:
            c.err(node.pos, f"Warning: Virtual server {fmt_vs()}: protocol specified for fwmark - "
                  "protocol will be ignored")
        if "ops" in flags and protocol is not Protocol.UDP and not is_fwmark:
            c.err(node.pos, f"Virtual server {fmt_vs()}: one packet scheduling requires UDP - "
                  "resetting")
            flags.discard("ops")
        if not persistence and not is_fwmark and (
                ("port" in vs and vs["port"] == 0) or
                (grp is not None and any(r.port == 0 for r in grp.ranges))):
            c.err(node.pos, f"Virtual server {fmt_vs()}: zero port only valid for persistent "
                  "services - setting")
            persistence = IPVS_SVC_PERSISTENT_TIMEOUT
        if lb_algo is None:
            c.err(node.pos, f"Virtual server {fmt_vs()}: no scheduler set, setting default 'wlc'")
            lb_algo = "wlc"
        if vs.get("ha_suspend") and is_fwmark:
            c.err(node.pos, f"Virtual server {fmt_vs()}: cannot use ha_suspend with fwmarks - "
                  "clearing ha_suspend")
            vs["ha_suspend"] = False
        if smtp_alert is None:
            if self._global_smtp_alert_checker is not None:
                smtp_alert = self._global_smtp_alert_checker
            else:
                smtp_alert = bool(self._global_smtp_alert)
        # real servers
        vs_defaults = _VsDefaults(lb_kind, tunnel, weight, inhibit, alpha, retry,
                                  connect_timeout, delay_loop, warmup, dbr,
                                  vs.get("virtualhost"))  # type: ignore[arg-type]
        reals: list[RealServer] = []
        seen_rs: set[tuple[str, int]] = set()  # linear duplicate check (37,000 servers load)
        warned_kind = False
        vs_port = int(vs.get("port", 0))  # type: ignore[call-overload]
        for rn in rs_nodes:
            rs = self._real_server(rn, vs_defaults, ctxname)
            if rs is None:
                continue
            if rs.lb_kind is not LbKind.TUN:
                if family is None:
                    family = rs.family
                elif rs.family != family:
                    c.err(rn.pos, "Address family of virtual server and real server "
                          f"{rs.address} don't match - skipping real server.")
                    continue
            if lb_kind is None and not rn.extra.get("own_kind") and not warned_kind:
                c.err(node.pos, f"Virtual server {fmt_vs()}: no forwarding method set, "
                      "setting default NAT")
                warned_kind = True
            # ports (check_data.c validate_check_config)
            if grp is None:
                if rs.lb_kind is LbKind.NAT:
                    if not is_fwmark and rs.port == 0:
                        rs = replace(rs, port=vs_port)
                elif is_fwmark:
                    if rs.port:
                        c.err(rn.pos, f"WARNING - fwmark virtual server {fmt_vs()}, real server "
                              f"{fmt_rs(rs)} has port specified - clearing")
                        rs = replace(rs, port=0)
                elif rs.port == 0:
                    rs = replace(rs, port=vs_port)
                elif rs.port != vs_port:
                    c.err(rn.pos, f"WARNING - virtual server {fmt_vs()} and real server "
                          f"{fmt_rs(rs)} ports don't match - resetting")
                    rs = replace(rs, port=vs_port)
            if (rs.address, rs.port) in seen_rs:  # check_data.c validate_check_config()
                c.err(rn.pos, f"VS {fmt_vs()}: real server {fmt_rs(rs)} is duplicated - "
                      "removing second rs")
                continue
            seen_rs.add((rs.address, rs.port))
            reals.append(rs)
        if not reals:
            c.err(node.pos, f"Virtual server {fmt_vs()} has no real servers - ignoring")
            return
        if family is None:
            family = 4
        if sorry is not None:
            kind, _tun = sorry_kind if sorry_kind else (lb_kind or LbKind.NAT, tunnel)
            s_fam = 6 if ":" in sorry.address else 4
            if kind is not LbKind.TUN and s_fam != family:
                c.err(sorry.pos, "Address family of virtual server and sorry server "
                      f"{sorry.address} don't match - skipping sorry server.")
                sorry = None
            else:
                sport = sorry.port
                if kind is not LbKind.NAT:
                    if is_fwmark:
                        sport = 0
                    elif grp is None and sport and sport != vs_port:
                        c.err(sorry.pos, f"WARNING - virtual server {fmt_vs()} and sorry server "
                              "ports don't match - resetting")
                        sport = vs_port
                    elif grp is None and not sport:
                        sport = vs_port
                elif not sport and grp is None and not is_fwmark:
                    sport = vs_port
                sorry = replace(sorry, lb_kind=kind if sorry_kind else None, port=sport)
        # quorum / hysteresis clipping (check_data.c)
        weight_sum = sum(r.weight for r in reals)
        quorum = int(vs.pop("quorum", 1))  # type: ignore[call-overload]
        hysteresis = int(vs.pop("hysteresis", 0))  # type: ignore[call-overload]
        if quorum > weight_sum:
            c.err(node.pos, f"Warning - quorum {quorum} for {fmt_vs()} exceeds total weight of "
                  f"real servers {weight_sum}, reducing quorum to {weight_sum}")
            quorum = weight_sum
        if hysteresis >= quorum and (hysteresis or quorum):
            new_h = max(quorum - 1, 0)
            c.err(node.pos, f"Virtual server {fmt_vs()}: hysteresis {hysteresis} >= quorum "
                  f"{quorum}; setting hysteresis to {new_h}")
            hysteresis = new_h
        self.virtual_servers.append(VirtualServer(
            pos=node.pos,
            protocol=protocol or Protocol.UDP,
            family=family,
            lb_algo=lb_algo,
            lb_kind=lb_kind or LbKind.NAT,
            sched_flags=frozenset(flags),
            persistence_timeout=persistence,
            persistence_granularity=granularity,
            delay_loop=delay_loop,
            alpha=alpha,
            quorum=quorum,
            hysteresis=hysteresis,
            sorry_server=sorry,
            sorry_server_inhibit=sorry_inhibit,
            inhibit_on_failure=inhibit,
            real_servers=tuple(reals),
            smtp_alert=smtp_alert,
            unsupported=tuple(unsupported),
            **vs,  # type: ignore[arg-type]
        ))

    def _real_server(self, node: Node, d: _VsDefaults, vsname: str) -> RealServer | None:
        c = self.ctx
        a = node.args
        ap = _addr_port(a)
        if ap is None:
            c.err(node.pos, f"Invalid real server ip address/port {' '.join(a[:2])} - skipping")
            return None
        ip, port = ap
        ctxname = f"{vsname} real_server {' '.join(a[:2])}"
        kw: dict[str, object] = {}
        unsupported: list[Unsupported] = []
        lb_kind, tunnel = d.lb_kind, d.tunnel
        weight, inhibit, alpha = d.weight, d.inhibit, d.alpha
        retry, ct, dl, wu, dbr = d.retry, d.connect_timeout, d.delay_loop, d.warmup, d.dbr
        checker_nodes: list[Node] = []
        for ch in _children(node):
            k = ch.keyword
            if ch.spec is not None and not ch.spec.supported:
                unsupported.append(c.unsupported_kw(ch, ctxname))
                continue
            if k in CHECKER_KINDS:
                checker_nodes.append(ch)
            elif k == "weight":
                iv = c.uint(ch, 0, IPVS_WEIGHT_LIMIT, " - Real server weight "
                            f"{ch.args[0] if ch.args else ''} is "
                            f"outside range 0-{IPVS_WEIGHT_LIMIT}")
                if iv is not None:
                    weight = iv
            elif k == "lvs_method":
                fw = self._forwarding(ch, "real")
                if fw is not None:
                    lb_kind, tunnel = fw
                    node.extra["own_kind"] = True
            elif k in ("uthreshold", "lthreshold"):
                _put(kw, k, c.uint(ch, 0, 65535, " - ignoring"))
            elif k in ("inhibit_on_failure", "alpha", "smtp_alert"):
                # check_parser.c rs_inhibit_handler() / rs_alpha_handler() / rs_smtp_alert_handler()
                fv = c.flag(ch, f"Invalid {'real_server ' if k == 'smtp_alert' else ''}{k} "
                            f"parameter {ch.args[0] if ch.args else ''}")
                if fv is None:
                    continue
                if k == "inhibit_on_failure":
                    inhibit = fv
                elif k == "alpha":
                    alpha = fv
                else:
                    kw["smtp_alert"] = fv
            elif k in ("notify_up", "notify_down"):
                _put(kw, k, c.script(ch))
            elif k == "retry":  # check_parser.c rs_*_handler() messages
                retry = _or(c.uint(ch, 1, 2**32 - 1, _hmsg(ch, "retry value invalid - {}")), retry)
            elif k == "connect_timeout":
                ct = _or(c.timer(ch, 0.000001, default_msg=_hmsg(
                    ch, "real server connect_timeout {} invalid - ignoring")), ct)
            elif k == "delay_loop":
                dl = _or(c.timer(ch, 0.000001, default_msg=_hmsg(
                    ch, "real server delay_loop '{}' invalid - ignoring")), dl)
            elif k == "warmup":
                wu = _or(c.timer(ch, default_msg=_hmsg(
                    ch, "real server warmup '{}' invalid - ignoring")), wu)
            elif k == "delay_before_retry":
                dbr = _or(c.timer(ch, default_msg=_hmsg(
                    ch, "real server delay_before_retry '{}' invalid - ignoring")), dbr)
            elif k == "virtualhost":
                s = c.arg(ch)
                if s is not None:
                    kw["virtualhost"] = s
        if "smtp_alert" not in kw:
            if self._global_smtp_alert_checker is not None:
                kw["smtp_alert"] = self._global_smtp_alert_checker
            elif self._global_smtp_alert is not None:
                kw["smtp_alert"] = self._global_smtp_alert
            else:
                kw["smtp_alert"] = True  # keepalived: backwards compatible default for rs
        if "virtualhost" not in kw and d.virtualhost is not None:
            kw["virtualhost"] = d.virtualhost  # keepalived: url > checker > rs > vs
        rs_d = _RsDefaults(ip, port, alpha, retry, ct, dl, wu, dbr,
                           kw.get("virtualhost") or None)  # type: ignore[arg-type]
        checkers: list[Checker] = []
        for cn in checker_nodes:
            chk = self._checker(cn, rs_d, ctxname)
            if chk is not None:
                checkers.append(chk)
        return RealServer(
            address=ip,
            port=port,
            pos=node.pos,
            weight=weight,
            lb_kind=lb_kind or LbKind.NAT,
            tunnel=tunnel,
            inhibit_on_failure=inhibit,
            alpha=alpha,
            checkers=tuple(checkers),
            unsupported=tuple(unsupported),
            **kw,  # type: ignore[arg-type]
        )

    def _checker(self, node: Node, d: _RsDefaults, rsname: str) -> Checker | None:
        c = self.ctx
        kind = CHECKER_KINDS[node.keyword]
        ctxname = f"{rsname} {node.keyword}"
        kw: dict[str, object] = {}
        unsupported: list[Unsupported] = []
        connect_ip, connect_port = d.address, d.port
        retry: int | None = None
        dbr: float | None = None
        dl: float | None = None
        wu: float | None = None
        ct: float | None = None
        alpha: bool | None = None
        urls: list[HttpUrl] = []
        for ch in _children(node):
            k = ch.keyword
            if ch.spec is not None and not ch.spec.supported:
                unsupported.append(c.unsupported_kw(ch, ctxname))
                continue
            if k == "connect_ip":
                ip = norm_ip(ch.args[0]) if ch.args else None
                if ip is None:
                    c.err(ch.pos, f"Invalid connect_ip address {' '.join(ch.args)} - ignoring")
                else:
                    connect_ip = ip
            elif k == "connect_port":
                # check_api.c co_port_handler()
                connect_port = _or(c.uint(ch, 1, 65535, " - Invalid checker connect_port '"
                                          f"{ch.args[0] if ch.args else ''}'"), connect_port)
            elif k == "bindto":
                ip = norm_ip(ch.args[0]) if ch.args else None
                if ip is None:
                    c.err(ch.pos, f"Invalid bindto address {' '.join(ch.args)} - ignoring")
                else:
                    kw["bindto"] = ip
            elif k == "bind_port":
                _put(kw, "bind_port", c.uint(ch, 1, 65535, " - ignoring"))
            elif k == "bind_if":
                _put(kw, "bind_if", c.arg(ch))
            elif k == "fwmark":
                _put(kw, "fwmark", c.uint(ch, 0, IPVS_FWMARK_MAX, " - ignoring"))
            elif k == "connect_timeout":  # check_api.c *_handler() messages
                ct = _or(c.timer(ch, 0.000001, default_msg=_hmsg(
                    ch, "connect_timeout {} invalid - ignoring")), ct)
            elif k == "retry":  # check_api.c retry_handler()
                retry = _or(c.uint(ch, 0, 2**32 - 1, " - Invalid retry connection value "
                                   f"'{ch.args[0] if ch.args else ''}'"), retry)
            elif k == "nb_get_retry":
                retry = _or(self._nb_get_retry(ch, kind), retry)
            elif k == "delay_before_retry":
                dbr = _or(c.timer(ch, default_msg=_hmsg(
                    ch, "Invalid delay_before_retry connection value '{}'")), dbr)
            elif k == "delay_loop":
                dl = _or(c.timer(ch, 0.000001, default_msg=_hmsg(
                    ch, "delay_loop '{}' is invalid - ignoring")), dl)
            elif k == "warmup":
                wu = _or(c.timer(ch, default_msg=_hmsg(
                    ch, "Invalid warmup connection value '{}'")), wu)
            elif k == "alpha":
                alpha = c.flag(ch)
            elif k == "log_all_failures":
                _put(kw, "log_all_failures", c.flag(ch))
            elif k == "url":
                u = self._url(ch)
                if u is not None:
                    urls.append(u)
            elif k == "virtualhost" and node.keyword != "url":
                s = c.arg(ch)
                if s is not None:
                    kw["virtualhost"] = s
            elif k == "http_protocol":
                s = c.arg(ch)
                if s in ("1.0", "1.1"):
                    kw["http_protocol"] = s
                elif s in ("1.0C", "1.0c"):
                    kw["http_protocol"] = "1.0C"
                elif s is not None:
                    c.err(ch.pos, f"Invalid http_protocol version {s}")
            elif k in ("enable_sni", "fast_recovery", "tls_compliant"):
                _put(kw, k, c.flag(ch))
            elif k == "sni_name":
                # keepalived check_http.c: `sni_name NAME` sets the name and enables SNI; a bare
                # `sni_name` enables SNI with the virtual host rule (unless a name was given)
                if ch.args:
                    kw["sni_name"] = ch.args[0]
                elif "sni_name" in kw:
                    c.err(ch.pos, f"sni_name already specified as {kw['sni_name']} - ignoring "
                          "setting to default")
                    continue
                kw["enable_sni"] = True
            elif k == "rise":
                _put(kw, "rise", c.uint(ch, 1, 2**32 - 1, " - ignoring"))
            elif k == "misc_path":
                sc = c.script(ch)
                if sc is not None:
                    kw["misc_path"] = sc
            elif k == "misc_timeout":
                iv = c.uint(ch, 0, 2**32 // 1000000, " - Invalid misc_timeout value")
                if iv is not None:
                    kw["misc_timeout"] = float(iv)
            elif k == "misc_dynamic":
                _put(kw, "misc_dynamic", c.flag(ch))
            elif k == "user":
                if ch.args and "misc_path" in kw:
                    mp = kw["misc_path"]
                    assert isinstance(mp, Script)
                    kw["misc_path"] = replace(mp, user=ch.args[0],
                                              group=ch.args[1] if len(ch.args) > 1 else None)
                elif ch.args:
                    kw["_user"] = ch.args
            elif k == "type":
                s = (c.arg(ch) or "").upper()
                if s in ("A", "NS", "CNAME", "SOA", "MX", "TXT", "AAAA"):
                    kw["dns_type"] = s
                elif ch.args:
                    c.err(ch.pos, f"DNS_CHECK type {ch.args[0]} is not valid")
            elif k == "name":
                s = c.arg(ch)
                if s is not None:
                    if kind is CheckKind.BFD_CHECK:
                        kw["bfd_name"] = s
                    else:
                        kw["dns_name"] = s
            elif k == "helo_name":
                _put(kw, "helo_name", c.arg(ch))
            elif k == "payload":
                if not ch.args:
                    c.err(ch.pos, "UDP_CHECK payload requires a payload")
                    continue
                hx = read_hex(" ".join(ch.args), wildcards=False)
                if hx is None:
                    c.err(ch.pos, "Invalid hex string for UDP_CHECK payload")
                    continue
                kw["payload"] = hx[0]
            elif k == "require_reply":
                # keepalived check_udp.c: a reply is required; with data, the reply must start
                # with it (x/X nibbles are wildcards); without, any reply will do
                kw["require_reply"], kw["require_reply_mask"] = b"", None
                if not ch.args:
                    continue
                hx = read_hex(" ".join(ch.args), wildcards=True)
                if hx is None:
                    c.err(ch.pos, "Invalid hex string for UDP_CHECK reply")
                    continue
                kw["require_reply"], kw["require_reply_mask"] = hx
            elif k in ("min_reply_length", "max_reply_length"):
                what = "min" if k.startswith("min") else "max"
                iv = c.uint(ch, 0, 65535, f" - UDP_CHECK {what} length not valid - must be "
                            "between 0 & 65535")
                if iv is not None:
                    kw[k] = iv
                    kw[f"_{k}_pos"] = ch.pos
            elif k == "track_file":
                s = c.arg(ch)
                if s is None:
                    continue
                tf = self._track_file_by_name(s)
                if tf is None:
                    c.err(ch.pos, f"track_file {s} not found")
                    continue
                kw["track_file"], kw["track_file_name"] = tf.file, tf.name
                kw["_tf"] = tf
            elif k == "weight":
                # check_file.c: weight -65535..65535 [reverse|noreverse], else the block's
                iv = c.sint(ch, -IPVS_WEIGHT_LIMIT, IPVS_WEIGHT_LIMIT)
                if iv is None:
                    continue
                opt = ch.args[1] if len(ch.args) > 1 else "noreverse"
                if opt not in ("reverse", "noreverse"):
                    c.err(ch.pos, f"unknown track file weight option {opt} - ignoring")
                    continue
                kw["file_weight"], kw["file_reverse"] = iv, opt == "reverse"
        user = kw.pop("_user", None)
        if user is not None and isinstance(kw.get("misc_path"), Script):
            mp = kw["misc_path"]
            assert isinstance(mp, Script)
            u = list(user)  # type: ignore[call-overload]
            kw["misc_path"] = replace(mp, user=u[0], group=u[1] if len(u) > 1 else None)
        # checker-specific validity (keepalived drops these checkers)
        if kind in (CheckKind.HTTP_GET, CheckKind.SSL_GET) and not urls:
            c.err(node.pos, "HTTP/SSL_GET checker has no urls specified - ignoring")
            return None
        if kind is CheckKind.MISC_CHECK and "misc_path" not in kw:
            c.err(node.pos, "No script path has been specified for MISC_CHECKER - skipping")
            return None
        tfile = kw.pop("_tf", None)
        if kind is CheckKind.FILE_CHECK and not isinstance(tfile, VrrpTrackFile):
            c.err(node.pos, "FILE_CHECK has no track_file specified - ignoring")
            return None
        if isinstance(tfile, VrrpTrackFile) and "file_weight" not in kw:
            kw["file_weight"], kw["file_reverse"] = tfile.weight, tfile.weight_reverse
        min_pos = kw.pop("_min_reply_length_pos", None)
        kw.pop("_max_reply_length_pos", None)
        lo, hi = kw.get("min_reply_length", 0), kw.get("max_reply_length", 255)
        assert isinstance(lo, int) and isinstance(hi, int)
        if kind is CheckKind.UDP_CHECK and lo > hi:
            c.err(min_pos if isinstance(min_pos, Pos) else node.pos,
                  f"UDP_CHECK min_reply length {lo} > max_reply_length {hi} - will always fail")
        if kind is CheckKind.BFD_CHECK and "bfd_name" not in kw:
            c.err(node.pos, "BFD_CHECK has no name - ignoring")
            return None
        if kind is CheckKind.DNS_CHECK and "dns_name" not in kw:
            kw["dns_name"] = "."
        if kind is CheckKind.SMTP_CHECK and "helo_name" not in kw:
            kw["helo_name"] = "smtpchecker.keepalived.org"
        # inheritance: checker -> real_server -> virtual_server -> per-checker default
        default_retry = {CheckKind.DNS_CHECK: 3, CheckKind.MISC_CHECK: 0}.get(kind, 1)
        default_dbr = {CheckKind.HTTP_GET: 3.0, CheckKind.SSL_GET: 3.0,
                       CheckKind.DNS_CHECK: 0.0}.get(kind, 1.0)
        dl = dl if dl is not None else d.delay_loop
        if retry is None:
            retry = d.retry if d.retry is not None else default_retry
        if wu is None:
            wu = d.warmup if d.warmup is not None else dl
        if dbr is None:
            dbr = d.dbr if d.dbr is not None else (default_dbr or dl)
        if ct is None:
            ct = d.connect_timeout
        if kind is CheckKind.MISC_CHECK and kw.get("misc_timeout") in (None, 0.0):
            kw["misc_timeout"] = dl
        if urls and d.virtualhost is not None and "virtualhost" not in kw:
            kw["virtualhost"] = d.virtualhost
        return Checker(
            kind=kind,
            pos=node.pos,
            connect_ip=connect_ip,
            connect_port=connect_port,
            connect_timeout=ct,
            retry=retry,
            delay_before_retry=dbr,
            delay_loop=dl,
            warmup=wu,
            alpha=alpha if alpha is not None else d.alpha,
            urls=tuple(urls),
            unsupported=tuple(unsupported),
            **kw,  # type: ignore[arg-type]
        )

    def _nb_get_retry(self, ch: Node, kind: CheckKind) -> int | None:
        """``nb_get_retry N``: keepalived's old name for ``retry N``."""
        c = self.ctx
        arg = ch.args[0] if ch.args else ""
        if kind in (CheckKind.HTTP_GET, CheckKind.SSL_GET):
            # check_http.c http_get_retry_handler(): CONFIG_GENERAL_ERROR (not DEPRECATED)
            c.err(ch.pos, "nb_get_retry is deprecated - please use 'retry'")
            return c.uint(ch, 0, 2**32 - 1, f" - Invalid nb_get_retry value '{arg}'")
        # keepalived 2.x: not a keyword of this checker (check_tcp.c etc. do not install it)
        c.err(ch.pos, "Unknown keyword 'nb_get_retry'", DiagKind.UNKNOWN_KEYWORD)
        v = c.uint(ch, 0, 2**32 - 1, f" - Invalid retry connection value '{arg}'")
        if v is not None:
            c.warn(ch.pos, f"lvsd applies nb_get_retry {arg} in {kind.value} as 'retry {v}'; "
                   "keepalived 2.x ignores it (its retry stays the checker's default) - write "
                   f"'retry {v}'")
        return v

    def _url(self, node: Node) -> HttpUrl | None:
        c = self.ctx
        regex_pos: Pos | None = node.pos
        kw: dict[str, object] = {}
        codes: list[StatusCodeRange] = []
        for ch in _children(node):
            k = ch.keyword
            if ch.spec is not None and not ch.spec.supported:
                c.unsupported_kw(ch, "url")
                continue
            if k == "path":
                _put(kw, "path", c.arg(ch))
            elif k == "digest":
                s = c.arg(ch)
                if s is None:
                    continue
                if not re.fullmatch(r"[0-9a-fA-F]{32}", s):
                    c.err(ch.pos, f"digest '{s}' is not a valid MD5 digest - ignoring")
                    continue
                kw["digest"] = s.lower()
            elif k == "status_code":
                for s in ch.args:
                    m = re.fullmatch(r"(\d+)(?:-(\d+))?", s)
                    lo = int(m.group(1)) if m else 0
                    hi = int(m.group(2)) if m and m.group(2) else lo
                    if not m or not (100 <= lo <= hi <= 599):
                        c.err(ch.pos, f"Invalid HTTP_GET status code '{s}'")
                        continue
                    codes.append(StatusCodeRange(lo, hi))
            elif k == "virtualhost":
                s = c.arg(ch)
                if s is not None:
                    kw["virtualhost"] = s
            elif k == "regex":
                s = c.arg(ch)
                if s is not None:
                    kw["regex"] = s
                    regex_pos = ch.pos
            elif k == "regex_no_match":
                kw["regex_no_match"] = True
            elif k == "regex_options":
                opts = list(kw.get("regex_options", ()))  # type: ignore[call-overload]
                for o in ch.args:
                    if o in REGEX_OPTIONS:
                        if o not in opts:
                            opts.append(o)
                    elif o in REGEX_OPTIONS_NOOP:
                        pass  # tunes PCRE2's matcher, not what matches
                    elif o in REGEX_OPTIONS_KEEPALIVED:
                        c.warn(ch.pos, f"regex option '{o}' is not supported by lvsd - ignored")
                    else:  # keepalived ignores unknown options silently: an lvsd notice
                        c.warn(ch.pos, f"unknown regex option '{o}' - ignored")
                kw["regex_options"] = tuple(opts)
            elif k == "tls_compliant":
                _put(kw, "tls_compliant", c.flag(ch))
            elif k in ("regex_min_offset", "regex_max_offset"):
                _put(kw, k, c.uint(ch, 0, 2**31 - 1, " - ignoring"))
        if "path" not in kw:
            c.err(node.pos, "HTTP/SSL_GET checker url has no path - ignoring")
            return None
        rx = kw.get("regex")
        if isinstance(rx, str):
            opts = kw.get("regex_options", ())
            try:
                re.compile(rx, regex_flags(opts))  # type: ignore[arg-type]
            except re.error as e:  # keepalived check_http.c: the regex is dropped
                c.err(regex_pos, f"Invalid regex: '{rx}' at offset {e.pos}: {e.msg}")
                del kw["regex"]
        if not codes:
            codes = [StatusCodeRange(200, 299)]
        return HttpUrl(status_codes=tuple(codes), pos=node.pos, **kw)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class _VsDefaults:
    lb_kind: LbKind | None
    tunnel: TunnelOptions | None
    weight: int
    inhibit: bool
    alpha: bool
    retry: int | None
    connect_timeout: float
    delay_loop: float
    warmup: float | None
    dbr: float | None
    virtualhost: str | None = None


@dataclass(frozen=True, slots=True)
class _RsDefaults:
    address: str
    port: int
    alpha: bool
    retry: int | None
    connect_timeout: float
    delay_loop: float
    warmup: float | None
    dbr: float | None
    virtualhost: str | None
