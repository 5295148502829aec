"""``global_defs`` and the top-level ``SSL`` block (keepalived global_parser.c, check_parser.c).

Theory of operation
-------------------
:data:`GLOBAL_TABLE` lists every keyword keepalived 2.x accepts in ``global_defs`` (those lvsd
does not implement are kept as :class:`~lvsd.config.model.Unsupported` and warned about once);
:func:`read_global` reads one ``global_defs`` block into :attr:`Parts.global_defs
<lvsd.config.keywords.common.Parts.global_defs>` (several blocks accumulate, a later value
wins, as in keepalived). The settings are collected in a :class:`GlobalKw` (a typed subset of
:class:`~lvsd.config.model.GlobalDefs`' fields) and applied at the block's end with one
``replace``. ``smtp_alert`` / ``smtp_alert_checker`` are not model fields: they are the
defaults of instances and servers, kept in :class:`~lvsd.config.keywords.common.Parts`.

:func:`read_ssl` reads ``SSL { password ca certificate key }`` (SSL_GET client certificates).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import replace
from typing import Literal, TypedDict, get_args

from lvsd.config.grammar import Node
from lvsd.config.keywords.common import (
    DRAIN_MAX,
    EXT,
    Ctx,
    L,
    Parts,
    Q,
    V,
    children,
    norm_ip,
    one_of,
    table,
    true_false,
    words,
)
from lvsd.config.model import LvsSyncDaemon, LvsTimeouts, Pos, Script, SslGlobal

_GLOBAL_SUPPORTED = {
    w: L for w in words(
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
# lvsd extension: `lvs_sync_daemon_mode both|keepalived`: how the sync daemons follow the
# VRRP state (lvsd.pool.syncd; default both)
_GLOBAL_SUPPORTED["lvs_sync_daemon_mode"] = EXT
_GLOBAL_SUPPORTED.update({"dynamic_interfaces": L, "vrrp_notify_priority_changes": L})
# the VRRP child process's scheduling (keepalived lib/process.c set_process_priorities)
_GLOBAL_SUPPORTED.update({w: L for w in words(
    "vrrp_no_swap vrrp_rt_priority vrrp_rlimit_rttime vrrp_rlimit_rtime")})

GLOBAL_TABLE = table(
    _GLOBAL_SUPPORTED,
    unsupported="linkbeat_use_polling net_namespace net_namespace_ipvs namespace_with_ipsets "
    "use_pid_dir instance child_wait_time process_names process_name vrrp_process_name "
    "checker_process_name lvs_process_name bfd_process_name use_symlink_paths "
    "set_supplementary_groups startup_script startup_script_timeout shutdown_script "
    "shutdown_script_timeout max_auto_priority min_auto_priority_delay "
    "no_email_faults default_interface "
    "disable_local_igmp v3_checksum_as_v2 vrrp_down_timer_adverts vrrp_min_garp "
    "vrrp_garp_extra_if vrrp_vmac_garp_intvl vrrp_iptables vrrp_ipsets nftables "
    "nftables_priority nftables_ifindex vrrp_cpu_affinity "
    "nftables_ipvs nftables_ipvs_priority "
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

SSL_TABLE = table({w: L for w in words("password ca certificate key")})


class GlobalKw(TypedDict, total=False):
    """The :class:`~lvsd.config.model.GlobalDefs` fields one ``global_defs`` block sets."""

    pos: Pos
    router_id: str
    script_user: str
    script_group: str
    notification_email_from: str
    notify_fifo: str
    vrrp_notify_fifo: str
    lvs_notify_fifo: str
    smtp_server: str
    enable_script_security: bool
    vrrp_strict: bool
    vrrp_check_unicast_src: bool
    vrrp_skip_check_adv_addr: bool
    lvs_flush: bool
    vrrp_lower_prio_no_advert: bool
    vrrp_higher_prio_send_advert: bool
    checker_log_all_failures: bool
    vrrp_version: int
    vrrp_mcast_group4: str
    vrrp_mcast_group6: str
    vrrp_garp_master_delay: float
    vrrp_garp_master_refresh: float
    vrrp_garp_lower_prio_delay: float
    vrrp_startup_delay: float
    vrrp_garp_interval: float
    vrrp_gna_interval: float
    vrrp_garp_master_repeat: int
    vrrp_garp_master_refresh_repeat: int
    vrrp_garp_lower_prio_repeat: int
    vrrp_priority: int
    vrrp_no_swap: bool
    vrrp_rt_priority: int
    vrrp_rlimit_rttime: int
    lvs_flush_on_stop: str
    lvs_sync_daemon: LvsSyncDaemon
    lvs_sync_daemon_mode: str
    lvs_timeouts: LvsTimeouts | None
    notify_fifo_script: Script
    vrrp_notify_fifo_script: Script
    lvs_notify_fifo_script: Script
    vrrp_notify_priority_changes: bool
    dynamic_interfaces: bool
    dynamic_interfaces_allow_if_changes: bool
    lvs_drain_on_remove: float
    smtp_connect_timeout: float
    notification_email: tuple[str, ...]


_Names = Literal["router_id", "script_user", "notification_email_from", "notify_fifo",
                 "vrrp_notify_fifo", "lvs_notify_fifo"]
_Flags = Literal["enable_script_security", "vrrp_strict", "vrrp_check_unicast_src",
                 "vrrp_skip_check_adv_addr", "lvs_flush", "vrrp_lower_prio_no_advert",
                 "vrrp_higher_prio_send_advert", "checker_log_all_failures"]
_Timers = Literal["vrrp_garp_master_delay", "vrrp_garp_master_refresh",
                  "vrrp_garp_lower_prio_delay", "vrrp_startup_delay"]
_Intervals = Literal["vrrp_garp_interval", "vrrp_gna_interval"]
_Repeats = Literal["vrrp_garp_master_repeat", "vrrp_garp_master_refresh_repeat",
                   "vrrp_garp_lower_prio_repeat"]
_FifoScripts = Literal["notify_fifo_script", "vrrp_notify_fifo_script", "lvs_notify_fifo_script"]
_NAMES: tuple[_Names, ...] = get_args(_Names)
_FLAGS: tuple[_Flags, ...] = get_args(_Flags)
_TIMERS: tuple[_Timers, ...] = get_args(_Timers)
_INTERVALS: tuple[_Intervals, ...] = get_args(_Intervals)
_REPEATS: tuple[_Repeats, ...] = get_args(_Repeats)
_FIFO_SCRIPTS: tuple[_FifoScripts, ...] = get_args(_FifoScripts)


def read_global(p: Parts, node: Node) -> None:
    """One ``global_defs`` block (keepalived global_parser.c *_handler)."""
    c = p.ctx
    g = p.global_defs
    upd: GlobalKw = {"pos": node.pos}
    for ch in children(node):
        kw = ch.keyword
        if kw == "vrrp_iptables":
            # global_parser.c vrrp_iptables_handler() of keepalived built with nftables and
            # without iptables (Debian's 2.2.7): it logs this and uses nftables
            c.err(ch.pos, "iptables not supported, using nftables instead. Please replace "
                  "'vrrp_iptables and 'vrrp_ipsets' with 'nftables' config option")
        if ch.spec is not None and not ch.spec.supported:
            c.unsupported_kw(ch, "global_defs")
            continue
        if one_of(kw, _NAMES):
            v = c.arg(ch)
            if v is None:
                continue
            upd[kw] = v
            if kw == "script_user" and len(ch.args) > 1:
                upd["script_group"] = ch.args[1]
        elif kw == "smtp_server":
            v = c.arg(ch)
            if v is not None:
                port = ch.args[1] if len(ch.args) > 1 else "25"
                if _smtp_server_ok(v, port):
                    upd["smtp_server"] = v if len(ch.args) < 2 else f"{v} {ch.args[1]}"
                else:
                    # global_parser.c smtpserver_handler: not an address (a '-' or '/' rules
                    # that out) and not a name getaddrinfo() resolves, or a bad port. lvsd
                    # checks the name's syntax only (no DNS at load time)
                    c.err(ch.pos, f"Invalid smtp server {v} {port}")
        elif kw == "smtp_helo_name":
            continue
        elif kw in ("smtp_alert", "smtp_alert_vrrp", "smtp_alert_checker"):
            fv = c.flag(ch)
            if kw == "smtp_alert" and fv is not None:
                p.global_smtp_alert = fv
            elif kw == "smtp_alert_checker" and fv is not None:
                p.global_smtp_alert_checker = fv
        elif one_of(kw, _FLAGS):
            if (fv := c.flag(ch)) is not None:
                upd[kw] = fv
        elif kw == "vrrp_version":
            if (iv := c.uint(ch, 2, 3, " - ignoring")) is not None:
                upd["vrrp_version"] = iv
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
            if want == 4:
                upd["vrrp_mcast_group4"] = ip
            else:
                upd["vrrp_mcast_group6"] = ip
        elif one_of(kw, _TIMERS):
            if (tv := c.timer(ch)) is not None:
                upd[kw] = tv
        elif one_of(kw, _INTERVALS):
            tv = c.timer(ch, 0.000001, 4294.967295, f" - {kw} '{ch.args[0] if ch.args else ''}'"
                         " is invalid")
            if tv is not None:
                upd[kw] = tv
        elif one_of(kw, _REPEATS):
            if (iv := c.uint(ch, 0, 2**31 - 1, " - ignoring")) is not None:
                upd[kw] = iv
        elif kw == "vrrp_priority":
            if (iv := c.sint(ch, -20, 19)) is not None:
                upd["vrrp_priority"] = iv
        elif kw == "vrrp_no_swap":  # global_parser.c vrrp_no_swap_handler
            upd["vrrp_no_swap"] = True
        elif kw == "vrrp_rt_priority":
            if (iv := _rt_priority(c, ch, "vrrp")) is not None:
                upd["vrrp_rt_priority"] = iv
        elif kw in ("vrrp_rlimit_rttime", "vrrp_rlimit_rtime"):
            if (iv := _rt_rlimit(c, ch, "vrrp")) is not None:
                upd["vrrp_rlimit_rttime"] = iv
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
            have = upd.get("lvs_sync_daemon", g.lvs_sync_daemon)
            if have is not None:  # global_parser.c lvs_syncd_handler: the first one stays
                c.err(ch.pos, f"lvs_sync_daemon has already been specified as {have.interface} "
                      f"{have.instance or ''} - ignoring")
            elif (sd := _lvs_sync_daemon(p, ch)) is not None:
                upd["lvs_sync_daemon"] = sd
        elif kw == "lvs_sync_daemon_mode":
            if not ch.args or ch.args[0] not in ("both", "keepalived"):
                c.err(ch.pos, "lvs_sync_daemon_mode must be both or keepalived - ignoring")
            else:
                upd["lvs_sync_daemon_mode"] = ch.args[0]
        elif kw == "lvs_timeouts":
            upd["lvs_timeouts"] = _lvs_timeouts(p, ch, upd.get("lvs_timeouts", g.lvs_timeouts))
        elif one_of(kw, _FIFO_SCRIPTS):
            if (sc := c.script(ch)) is not None:
                upd[kw] = sc
        elif kw == "vrrp_notify_priority_changes":
            # keepalived global_parser.c vrrp_notify_priority_changes()
            tf = true_false(ch.args[0]) if ch.args else True
            if tf is None:
                c.err(ch.pos, f"Invalid value '{ch.args[0]}' for global "
                      "vrrp_notify_priority_changes specified")
            else:
                upd["vrrp_notify_priority_changes"] = tf
        elif kw == "dynamic_interfaces":
            # keepalived global_parser.c dynamic_interfaces_handler()
            upd["dynamic_interfaces"] = True
            if ch.args and ch.args[0] == "allow_if_changes":
                upd["dynamic_interfaces_allow_if_changes"] = True
            elif ch.args:
                c.err(ch.pos, f"Unknown dynamic_interfaces option '{ch.args[0]}'")
        elif kw == "lvs_drain_on_remove":
            if (dv := c.timer(ch, 0.0, DRAIN_MAX)) is not None:
                upd["lvs_drain_on_remove"] = dv
        elif kw == "smtp_connect_timeout":
            iv = c.uint(ch, 1, 2**31 - 1, " - ignoring")
            if iv is not None:
                upd["smtp_connect_timeout"] = float(iv)
        elif kw == "notification_email":
            if not ch.values:  # global_parser.c email_handler(), at the block's end
                c.err(ch.end_pos or ch.pos, "Warning - empty notification_email block")
                continue
            emails = list(g.notification_email)
            for ln in ch.values:
                emails.extend(ln.tokens)
            upd["notification_email"] = tuple(emails)
    p.global_defs = replace(g, **upd)


def _lvs_timeouts(p: Parts, ch: Node, prev: LvsTimeouts | None) -> LvsTimeouts | None:
    """keepalived global_parser.c lvs_timeouts(): ``[tcp N] [tcpfin N] [udp N]`` in any
    order, each 0..LVS_MAX_TIMEOUT (31 days); a bad option or value is logged and skipped,
    the rest applies; lines accumulate (a later value of a field wins); 0 means "not set"
    (the kernel's value is left). None when no field is set."""
    c = p.ctx
    if len(ch.args) < 2:
        c.err(ch.pos, "lvs_timeouts requires at least one option")
        return prev
    max_timeout = 86400 * 31  # LVS_MAX_TIMEOUT, keepalived/include/global_data.h
    vals: dict[str, int | None] = {"tcp": None, "tcpfin": None, "udp": None}
    if prev is not None:
        vals = {"tcp": prev.tcp, "tcpfin": prev.tcp_fin, "udp": prev.udp}
    i = 0
    while i < len(ch.args):
        opt = ch.args[i]
        if opt not in vals:
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
            vals[opt] = v or None
        i += 2
    if all(v is None for v in vals.values()):
        return None
    return LvsTimeouts(tcp=vals["tcp"], tcp_fin=vals["tcpfin"], udp=vals["udp"], pos=ch.pos)


RT_PRIORITY_MIN, RT_PRIORITY_MAX = 1, 99  # sched_get_priority_min/max(SCHED_RR) on Linux


def _rt_priority(c: Ctx, ch: Node, process: str) -> int | None:
    """keepalived global_parser.c get_realtime_priority: clamped to SCHED_RR's range."""
    if not ch.args:
        c.err(ch.pos, f"No {process} process real-time priority specified")
        return None
    try:
        v = int(ch.args[0], 10)
    except ValueError:
        c.err(ch.pos, f"{process} process real-time priority '{ch.args[0]}' invalid")
        return None
    if v < RT_PRIORITY_MIN:
        c.err(ch.pos, f"{process} process real-time priority {v} less than minimum "
              f"{RT_PRIORITY_MIN} - setting to minimum")
        return RT_PRIORITY_MIN
    if v > RT_PRIORITY_MAX:
        c.err(ch.pos, f"{process} process real-time priority {v} greater than maximum "
              f"{RT_PRIORITY_MAX} - setting to maximum")
        return RT_PRIORITY_MAX
    return v


def _rt_rlimit(c: Ctx, ch: Node, process: str) -> int | None:
    """keepalived global_parser.c get_rt_rlimit (microseconds; 1 becomes 2)."""
    kw = ch.keyword
    if kw.endswith("rtime") and not kw.endswith("rttime"):
        c.warn(ch.pos, f"Keyword '{kw}' is deprecated - please use '{kw[:-5]}rttime'")
    s = ch.args[0] if ch.args else ""
    try:
        v = int(s, 10)
    except ValueError:
        v = 0
    if not 1 <= v <= 2**32 - 1:
        c.err(ch.pos, f"Invalid {process} real-time limit - {s}")
        return None
    return max(v, 2)


def _lvs_sync_daemon(p: Parts, ch: Node) -> LvsSyncDaemon | None:
    """global_parser.c lvs_syncd_handler(): ``IF [INSTANCE [SYNCID]] [inst NAME] [id N]
    [maxlen N] [port N] [ttl N] [group ADDR]``, with keepalived's messages: a bad or missing
    value is logged and skipped (the rest applies), the positional INSTANCE and SYNCID are the
    old syntax (a positional SYNCID asks for ``id``)."""
    c = p.ctx
    if not ch.args:
        c.err(ch.pos, "lvs_sync_daemon requires interface")
        return None
    iface = ch.args[0]
    if len(iface) >= 16:  # IP_VS_IFNAME_MAXLEN
        c.err(ch.pos, f"lvs_sync_daemon interface name '{iface}' too long - ignoring")
        return None
    inst: str | None = None
    nums: dict[str, int] = {}
    group: str | None = None
    ranges = {"maxlen": (1, 65535 - 20 - 8), "port": (1, 65535), "ttl": (1, 255)}
    args = ch.args
    i = 1  # keepalived's strvec index i is args index i - 1
    while i < len(args):
        k = args[i]
        last = i == len(args) - 1
        if k == "inst":
            if last:
                c.err(ch.pos, "No value specified for lvs_sync_daemon inst - ignoring")
            elif inst is not None:
                c.err(ch.pos, "lvs_sync_daemon vrrp instance has already been specified as "
                      f"{inst} - ignoring")
            else:
                inst = args[i + 1]
            i += 2
        elif k == "id":
            if last:
                c.err(ch.pos, "No value specified for lvs_sync_daemon id, defaulting to vrid")
                i += 1
                continue
            v = c.uint(ch, 0, 255, f" - Invalid syncid ({args[i + 1]}) - defaulting to vrid",
                       idx=i + 1)
            if v is not None:
                nums["id"] = v
            i += 2
        elif k in ranges:
            if last:
                c.err(ch.pos, f"No value specified for lvs_sync_daemon {k} - ignoring")
                i += 1
                continue
            lo, hi = ranges[k]
            v = c.uint(ch, lo, hi, f" - Invalid lvs_sync_daemon {k} ({args[i + 1]}) - ignoring",
                       idx=i + 1)
            if v is not None:
                nums[k] = v
            i += 2
        elif k == "group":
            if last:
                c.err(ch.pos, "No value specified for lvs_sync_daemon group - ignoring")
                i += 1
                continue
            try:
                addr = ipaddress.ip_address(args[i + 1])
            except ValueError:
                c.err(ch.pos, f"Invalid lvs_sync_daemon group ({args[i + 1]}) - ignoring")
            else:
                if addr.is_multicast:
                    group = str(addr)
                else:
                    c.err(ch.pos, f"lvs_sync_daemon group address {args[i + 1]} is not "
                          "multicast - ignoring")
            i += 2
        elif i == 1:  # the old form: lvs_sync_daemon IF VRRP_INSTANCE [SYNC_ID]
            inst = k
            i += 1
        elif i == 2:
            try:
                v = int(k, 10)
            except ValueError:
                v = -1
            if not 0 <= v <= 255:
                c.uint(ch, 0, 255, f" - Invalid syncid ({k}) - defaulting to vrid", idx=i)
            else:
                c.err(ch.pos, 'Please use keyword "id" before lvs_sync_daemon SYNCID')
                nums["id"] = v
            i += 1
        else:
            c.err(ch.pos, f"Unknown option {k} specified for lvs_sync_daemon")
            i += 1
    return LvsSyncDaemon(interface=iface, instance=inst, id=nums.get("id"),
                         maxlen=nums.get("maxlen"), port=nums.get("port"), ttl=nums.get("ttl"),
                         group=group, pos=ch.pos)


def read_ssl(p: Parts, node: Node) -> SslGlobal:
    """The top-level ``SSL`` block (keepalived check_parser.c ssl_handler and friends)."""
    vals: dict[str, str] = {}
    for ch in children(node):
        if not ch.args:
            p.ctx.err(ch.pos, f"SSL {ch.keyword} missing")
            continue
        vals[ch.keyword] = ch.args[0]
    return SslGlobal(ca=vals.get("ca"), certificate=vals.get("certificate"), key=vals.get("key"),
                     password=vals.get("password"), pos=node.pos)


_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})"
                       r"(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62}))*\.?$")


def _smtp_server_ok(host: str, port: str) -> bool:
    """keepalived smtpserver_handler's acceptance, without the DNS lookup: an IP address
    without '-' or '/', or a syntactically valid host name; a port 1..65535."""
    if not (port.isdigit() and 1 <= int(port) <= 65535):
        return False
    if "-" not in host and "/" not in host and norm_ip(host) is not None:
        return True
    return bool(_HOSTNAME.match(host)) and "/" not in host
