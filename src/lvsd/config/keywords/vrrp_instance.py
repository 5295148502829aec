"""``vrrp_instance`` and ``vrrp_sync_group`` (keepalived vrrp_parser.c, vrrp.c, vrrp_sync.c).

Theory of operation
-------------------
:data:`VRRP_INSTANCE_TABLE` (with its ``authentication`` sub-block, :data:`AUTH_TABLE`) and
:data:`SYNC_GROUP_TABLE` list every keyword keepalived 2.x accepts there. An instance is read
after the whole file (global_defs must be complete, as keepalived applies the globals after
reading): :func:`read_instance` collects the settings in an :class:`_InstanceKw` (a typed subset
of :class:`~lvsd.config.model.VrrpInstance`' fields), then completes the instance as
vrrp.c ``vrrp_complete_instance()`` does, in its order: address family from the VIPs, version,
priority and state, what authentication, strict mode and preemption cannot combine with,
the vmac checks, and the defaults taken from global_defs. :func:`read_sync_group` reads a
group; :func:`finish_vrrp` runs the cross checks that need every block read (sync group
members, tracked scripts and files, vmac names, track_process references, VRID conflicts).

What keepalived cannot run is FATAL (chk_min_cfg(), vrrp_complete_instance() returning false,
check_vrid_conflicts()); everything else it logs and runs with is ERROR, applied the same way.
"""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from typing import TYPE_CHECKING, Literal, TypedDict, get_args

from lvsd.config.grammar import Node
from lvsd.config.keywords.common import (
    L,
    Parts,
    Q,
    V,
    block,
    children,
    norm_ip,
    one_of,
    or_,
    stosockaddr,
    table,
    true_false,
    words,
)
from lvsd.config.keywords.vrrp_track import track_process_refs, track_refs
from lvsd.config.lexer import Line
from lvsd.config.model import (
    DiagKind,
    LvsSyncDaemon,
    Pos,
    Script,
    TrackProcessRef,
    TrackRef,
    UnicastPeer,
    Unsupported,
    VirtualIp,
    VrrpInstance,
    VrrpState,
    VrrpSyncGroup,
)

if TYPE_CHECKING:
    from lvsd.vrrp.vmac import ParsedMac

_Notify = Literal["notify_backup", "notify_master", "notify_fault", "notify_stop",
                  "notify_deleted", "notify", "notify_master_rx_lower_pri"]
NOTIFY: tuple[_Notify, ...] = get_args(_Notify)

VRRP_INSTANCE_TABLE = table(
    {
        **{w: L for w in words(
            "state interface virtual_router_id priority advert_int version native_ipv6 "
            "nopreempt preempt preempt_delay down_timer_adverts mcast_src_ip unicast_src_ip "
            "mcast_dst_ip check_unicast_src dont_track_primary use_vmac vmac_xmit_base "
            "accept no_accept "
            "strict_mode garp_master_delay garp_master_repeat garp_master_refresh "
            "garp_master_refresh_repeat garp_lower_prio_delay garp_lower_prio_repeat "
            "lower_prio_no_advert higher_prio_send_advert smtp_alert notify_priority_changes")},
        **{w: Q for w in NOTIFY},
        **{w: V for w in words(
            "virtual_ipaddress virtual_ipaddress_excluded unicast_peer track_interface "
            "track_script track_file track_process")},
        "authentication": block("authentication"),
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
AUTH_TABLE = table({"auth_type": L, "auth_pass": L})

_SyncNotify = Literal["notify_backup", "notify_master", "notify_fault", "notify_stop", "notify"]
_SYNC_NOTIFY: tuple[_SyncNotify, ...] = get_args(_SyncNotify)

SYNC_GROUP_TABLE = table(
    {
        "group": V,
        "track_interface": V,
        "track_script": V,
        "track_file": V,
        "track_process": V,
        **{w: Q for w in _SYNC_NOTIFY},
        **{w: L for w in words(
            "smtp_alert global_tracking sync_group_tracking_weight notify_priority_changes")},
    },
    unsupported_values="track_bfd",
)

# vrrp_parser.c: the keywords that set VRRP_FLAG_UNICAST_CONFIGURED
_UNICAST_KEYWORDS = frozenset(words(
    "unicast_src_ip unicast_peer check_unicast_src unicast_fault_no_peer old_unicast_checksum"))


class _InstanceKw(TypedDict, total=False):
    """The :class:`~lvsd.config.model.VrrpInstance` fields read from the block (those passed
    explicitly to the constructor are locals of :func:`read_instance`)."""

    interface_pos: Pos
    advert_int: float
    native_ipv6: bool
    nopreempt: bool
    dont_track_primary: bool
    check_unicast_src: bool
    lower_prio_no_advert: bool
    higher_prio_send_advert: bool
    smtp_alert: bool
    notify_priority_changes: bool
    accept: bool
    preempt_delay: float
    down_timer_adverts: int
    mcast_src_ip: str
    unicast_src_ip: str
    mcast_group: str | None
    use_vmac: str
    vmac_mac: str
    vmac_xmit_base: bool
    garp_master_delay: float
    garp_master_refresh: float
    garp_lower_prio_delay: float | None
    garp_master_repeat: int
    garp_master_refresh_repeat: int
    garp_lower_prio_repeat: int | None
    notify_backup: Script
    notify_master: Script
    notify_fault: Script
    notify_stop: Script
    notify_deleted: Script
    notify: Script
    notify_master_rx_lower_pri: Script
    unicast_peers: tuple[UnicastPeer, ...]
    track_interfaces: tuple[TrackRef, ...]
    track_scripts: tuple[TrackRef, ...]
    track_files: tuple[TrackRef, ...]
    auth_type: str
    auth_pass: str


_Set = Literal["native_ipv6", "nopreempt", "dont_track_primary"]
_Flag = Literal["check_unicast_src", "lower_prio_no_advert", "higher_prio_send_advert",
                "smtp_alert"]
_GarpTimer = Literal["garp_master_delay", "garp_master_refresh", "garp_lower_prio_delay"]
_GarpRepeat = Literal["garp_master_repeat", "garp_master_refresh_repeat",
                      "garp_lower_prio_repeat"]
_SET: tuple[_Set, ...] = get_args(_Set)
_FLAG: tuple[_Flag, ...] = get_args(_Flag)
_GARP_TIMER: tuple[_GarpTimer, ...] = get_args(_GarpTimer)
_GARP_REPEAT: tuple[_GarpRepeat, ...] = get_args(_GarpRepeat)


def _vip(p: Parts, line: Line, owner: str) -> VirtualIp | None:
    """One ``virtual_ipaddress`` line (vrrp_ipaddress.c parse_ipaddress / alloc_ipaddress)."""
    toks = line.tokens
    addr_s, _, plen_s = toks[0].partition("/")
    ip = norm_ip(addr_s)
    if ip is None:
        p.ctx.err(line.pos, f"({owner}) Invalid address '{toks[0]}' - ignoring")
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
            p.ctx.err(line.pos, f"({owner}) Invalid prefix length in '{toks[0]}' - "
                      "ignoring address")
            return None
    opts: dict[str, str] = {}
    no_track = False
    i = 1
    while i < len(toks):
        t = toks[i]
        if t in ("dev", "brd", "broadcast", "scope", "label", "peer") and i + 1 < len(toks):
            opts[{"broadcast": "brd"}.get(t, t)] = toks[i + 1]
            i += 2
        elif t == "no_track":
            no_track = True
            i += 1
        elif t in ("home", "-nodad", "nodad", "noprefixroute", "autojoin"):
            i += 1
        elif t == "track_group" and i + 1 < len(toks):
            i += 2
        else:
            p.ctx.err(line.pos, f"({owner}) Unknown configuration entry '{t}' for ip "
                      f"address - ignoring")
            i += 1
    return VirtualIp(address=ip, prefixlen=plen, dev=opts.get("dev"), brd=opts.get("brd"),
                     scope=opts.get("scope"), label=opts.get("label"), no_track=no_track,
                     peer=opts.get("peer"), pos=line.pos)


def _vrrp_lvs_syncd(p: Parts, ch: Node, name: str) -> None:
    """vrrp_parser.c vrrp_lvs_syncd_handler(): ``lvs_sync_daemon_interface IF`` in an
    instance is the global ``lvs_sync_daemon IF INSTANCE`` (deprecated)."""
    c = p.ctx
    c.err(ch.pos, f"({name}) Specifying lvs_sync_daemon_interface against a vrrp is "
          "deprecated.")
    c.err(ch.pos, "      " + " " * abs(len(name) - 2) + "Please use global lvs_sync_daemon")
    iface = c.arg(ch)
    if iface is None:
        return
    have = p.global_defs.lvs_sync_daemon
    if have is not None:
        c.err(ch.pos, f"({name}) lvs_sync_daemon_interface has already been specified as "
              f"{have.interface} - ignoring")
        return
    p.global_defs = replace(p.global_defs, lvs_sync_daemon=LvsSyncDaemon(
        interface=iface, instance=name, pos=ch.pos))


def _unicast_peer(p: Parts, ln: Line, name: str) -> UnicastPeer | None:
    """vrrp_data.c alloc_vrrp_unicast_peer(): ``ADDRESS [min_ttl N] [max_ttl N]``."""
    c = p.ctx
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


def _use_vmac(p: Parts, ch: Node, name: str, kw: _InstanceKw,
              mac: ParsedMac | None) -> ParsedMac | None:
    """vrrp_parser.c vrrp_vmac_handler(): ``use_vmac [NAME] [MAC]``, either order. The name
    stays "" unless given: finish_vrrp() names it (vrrp.c create_vmac_name). Returns the MAC
    argument read so far."""
    from lvsd.vrrp.vmac import dev_name_valid, parse_vmac_mac

    c = p.ctx
    kw.setdefault("use_vmac", "")
    for arg in ch.args[:2]:
        if ":" in arg:  # a MAC address: interface names cannot include a ':'
            if mac is not None:
                c.err(ch.pos, "VMAC interface address already specified")
                continue
            pm = parse_vmac_mac(arg)
            if pm.error:
                c.err(ch.pos, pm.error)
            else:
                mac = pm
            continue
        if kw["use_vmac"]:
            c.err(ch.pos, "VMAC interface name already specified")
            continue
        if not dev_name_valid(arg):
            c.err(ch.pos, f"VMAC interface name '{arg}' too long or invalid characters - "
                  "ignoring")
            continue
        other = next((i for i in p.instances if i.use_vmac == arg), None)
        if other is not None:
            c.err(ch.pos, f"({name}) VRRP instance {other.name} is already using {arg} - "
                  "ignoring name")
            continue
        kw["use_vmac"] = arg
    return mac


def _vmac_end(p: Parts, node: Node, name: str, kw: _InstanceKw, *, has_interface: bool,
              strict: bool | None, vrid: int, mac: ParsedMac | None) -> None:
    """use_vmac / vmac_xmit_base checks at the end of the block, in keepalived's order."""
    c = p.ctx
    pm = mac
    vmac = "use_vmac" in kw
    end = node.end_pos or node.pos  # vrrp_end_handler() runs at the closing brace
    if vmac and any(ch.keyword in _UNICAST_KEYWORDS for ch in children(node)):
        # vrrp_parser.c vrrp_end_handler()
        if not has_interface:
            c.err(end, f"({name}): Cannot use VMAC/ipvlan with unicast and no interface - "
                  "clearing use_vmac")
            del kw["use_vmac"]
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
        kw["vmac_mac"] = pm.with_vrid(vrid)


def _drop_auth(kw: _InstanceKw) -> None:
    kw.pop("auth_type", None)
    kw.pop("auth_pass", None)


def read_instance(p: Parts, node: Node) -> None:
    """One ``vrrp_instance NAME { ... }`` (vrrp_parser.c vrrp_*_handler, then vrrp.c
    vrrp_complete_instance())."""
    c = p.ctx
    g = p.global_defs
    name = c.block_name(node, "vrrp_instance")
    if name is None:
        return
    if any(i.name == name for i in p.instances):
        c.err(node.pos, f"vrrp instance {name} already defined")
        return
    ctxname = f"vrrp_instance {name}"
    kw: _InstanceKw = {}
    interface: str | None = None
    vrid: int | None = None
    priority: int | None = None
    version: int | None = None
    state: VrrpState | None = None
    strict: bool | None = None
    mac: ParsedMac | None = None
    unsupported: list[Unsupported] = []
    vips: list[VirtualIp] = []
    vips_ex: list[VirtualIp] = []
    for ch in children(node):
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
            interface = or_(c.arg(ch), interface)
            kw["interface_pos"] = ch.pos  # for the host checks (config/hostcheck.py)
        elif k == "virtual_router_id":
            vrid = or_(c.uint(ch, 1, 255, f" - ({name}): VRID not valid - must be between "
                              "1 & 255"), vrid)
        elif k == "priority":
            iv = c.uint(ch, 1, 255, f" - ({name}) Priority not valid! must be between 1 & "
                        "255. Using default 100")
            priority = iv if iv is not None else 100
        elif k == "advert_int":
            tv = c.timer(ch, 0.01, 255.0, f" - ({name}) Advert interval not valid! - ignoring")
            if tv is not None:
                kw["advert_int"] = tv
        elif k == "version":
            version = or_(c.uint(ch, 2, 3, f" - ({name}): Version must be either 2 or 3"),
                          version)
        elif one_of(k, _SET):
            kw[k] = True  # keepalived ignores anything after these keywords
        elif one_of(k, _FLAG):
            if (fv := c.flag(ch)) is not None:
                kw[k] = fv
        elif k == "notify_priority_changes":
            # keepalived vrrp_parser.c vrrp_notify_priority_changes_handler()
            tf = true_false(ch.args[0]) if ch.args else True
            if tf is None:
                c.err(ch.pos, f"({name}) Invalid value '{ch.args[0]}' for "
                      "notify_priority_changes specified")
            else:
                kw["notify_priority_changes"] = tf
        elif k == "track_process":
            p.tp_lines.setdefault(("i", name), []).extend(ch.values or [])
        elif k == "preempt":
            kw["nopreempt"] = False
        elif k in ("accept", "no_accept"):
            kw["accept"] = k == "accept"
        elif k == "strict_mode":
            strict = or_(c.flag(ch), strict)
        elif k == "preempt_delay":
            if (tv := c.timer(ch, 0, 1000)) is not None:
                kw["preempt_delay"] = tv
        elif k == "down_timer_adverts":
            if (iv := c.uint(ch, 1, 100, " - ignoring")) is not None:
                kw["down_timer_adverts"] = iv
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
            if k == "mcast_src_ip":
                kw["mcast_src_ip"] = ip
            else:
                kw["unicast_src_ip"] = ip
        elif k == "lvs_sync_daemon_interface":
            _vrrp_lvs_syncd(p, ch, name)
        elif k == "mcast_dst_ip":
            v = c.arg(ch)
            ip = norm_ip(v) if v is not None else None
            if ip is None or not ipaddress.ip_address(ip).is_multicast:
                c.err(ch.pos, f"({name}) mcast_dst_ip '{v}' is not a multicast address - "
                      "ignoring")
                continue
            kw["mcast_group"] = ip
        elif k == "use_vmac":
            mac = _use_vmac(p, ch, name, kw, mac)
        elif k == "vmac_xmit_base":  # vrrp_parser.c vrrp_vmac_xmit_base_handler()
            kw["vmac_xmit_base"] = True
        elif one_of(k, _GARP_TIMER):
            if (tv := c.timer(ch)) is not None:
                kw[k] = tv
        elif one_of(k, _GARP_REPEAT):
            if (iv := c.uint(ch, 0, 2**31 - 1, " - ignoring")) is not None:
                kw[k] = iv
        elif one_of(k, NOTIFY):
            sc = c.script(ch)
            if sc is not None and k in kw:
                c.err(ch.pos, f"({name}) {k} script already specified - ignoring "
                      f"{sc.command}")
            elif sc is not None:
                kw[k] = sc
        elif k in ("virtual_ipaddress", "virtual_ipaddress_excluded"):
            for ln in ch.values or []:
                vip = _vip(p, ln, name)
                if vip is not None:
                    (vips if k == "virtual_ipaddress" else vips_ex).append(vip)
        elif k == "unicast_peer":
            peers = list(kw.get("unicast_peers", ()))
            for ln in ch.values or []:
                peer = _unicast_peer(p, ln, name)
                if peer is not None:
                    peers.append(peer)
            kw["unicast_peers"] = tuple(peers)
        elif k == "track_interface":
            kw["track_interfaces"] = kw.get("track_interfaces", ()) + track_refs(p, ch, name)
        elif k == "track_script":
            kw["track_scripts"] = kw.get("track_scripts", ()) + track_refs(p, ch, name)
        elif k == "track_file":
            kw["track_files"] = kw.get("track_files", ()) + track_refs(p, ch, name)
        elif k == "authentication":
            for a in children(ch):
                if a.keyword == "auth_type":
                    t = c.arg(a)
                    if t in ("PASS", "AH"):
                        kw["auth_type"] = t
                    elif t is not None:
                        c.err(a.pos, f"({name}) unknown authentication type '{t}'")
                elif a.keyword == "auth_pass":
                    pw = c.arg(a)
                    if pw is not None:
                        if len(pw) > 8:  # vrrp_parser.c vrrp_auth_pass_handler()
                            c.err(a.pos, "Truncating auth_pass to 8 characters")
                            pw = pw[:8]
                        kw["auth_pass"] = pw
    if vrid is None:  # vrrp.c chk_min_cfg(): vrrp_complete_init() fails
        c.fatal(node.pos, f"({name}) the virtual router id must be set")
        return
    peers_set = kw.get("unicast_peers", ())
    # (the instance stays in the model for inspection; a FATAL config is not run)
    if interface is None and (not peers_set or (
            "unicast_src_ip" not in kw and "mcast_src_ip" not in kw)):
        # vrrp.c chk_min_cfg(): no interface and not unicast with a source address -
        # vrrp_complete_init() fails (keepalived 2.2.7 says this, checked by
        # tests/config/test_parity_messages.py, before vrrp_complete_instance()'s "Unicast
        # instances must have unicast_src_ip or interface" could)
        c.fatal(node.pos, f"({name}) Unknown interface!")
    child_kws = {ch.keyword for ch in children(node)}
    if not peers_set and child_kws & _UNICAST_KEYWORDS and \
            "unicast_fault_no_peer" not in child_kws:  # that one: a FAULT, only logged
        # vrrp.c vrrp_complete_instance(): VRRP_FLAG_UNICAST_CONFIGURED without peers
        c.err(node.pos, f"({name}) A unicast keyword has been specified without any unicast "
              "peers. Defaulting to multicast. This usage is deprecated - please update your "
              "configuration.", DiagKind.DEPRECATED)
    tracked = kw.get("track_interfaces", ())
    if interface is not None and any(r.name == interface for r in tracked):
        for r in tracked:
            if r.name == interface:  # vrrp.c vrrp_complete_instance()
                c.err(r.pos, f"({name}) Ignoring track_interface {interface} since own "
                      "interface")
        kw["track_interfaces"] = tuple(r for r in tracked if r.name != interface)
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
        if "version" in child_kws:
            c.err(node.pos, f"({name}) cannot use IPv6 with VRRP version 2; setting version 3")
        version = 3
    if priority is None:
        priority = 255 if state is VrrpState.MASTER else 100
    if kw.get("auth_type") and version == 3:
        c.err(node.pos, f"({name}) VRRP version 3 does not support authentication. Ignoring.")
        _drop_auth(kw)
    if strict is None and g.vrrp_strict:
        strict = True
    if strict and kw.get("auth_type"):
        c.err(node.pos, f"({name}) Strict mode does not support authentication. Ignoring.")
        _drop_auth(kw)
    if kw.get("auth_type") and not kw.get("auth_pass"):
        # vrrp.c vrrp_complete_instance: no authentication then
        c.err(node.pos, f"({name}) Authentication specified but no password given. Ignoring")
        _drop_auth(kw)
    if state is None:
        state = VrrpState.MASTER if priority == 255 else VrrpState.BACKUP
    elif strict and (state is VrrpState.MASTER) != (priority == 255):
        c.err(node.pos, f"({name}) State MASTER must match being address owner")
        state = VrrpState.MASTER if priority == 255 else VrrpState.BACKUP
    if kw.get("auth_type") == "AH" and family == 6:
        c.err(node.pos, f"({name}) Cannot use AH authentication with IPv6. ignoring")
        _drop_auth(kw)
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
    _vmac_end(p, node, name, kw, has_interface=interface is not None, strict=strict,
              vrid=vrid, mac=mac)
    if "mcast_group" not in kw:
        kw["mcast_group"] = g.vrrp_mcast_group6 if family == 6 else g.vrrp_mcast_group4
    # defaults from global_defs (vrrp.c vrrp_complete_instance())
    kw.setdefault("garp_master_delay", g.vrrp_garp_master_delay)
    kw.setdefault("garp_master_repeat", g.vrrp_garp_master_repeat)
    kw.setdefault("garp_master_refresh", g.vrrp_garp_master_refresh)
    kw.setdefault("garp_master_refresh_repeat", g.vrrp_garp_master_refresh_repeat)
    kw.setdefault("garp_lower_prio_delay", g.vrrp_garp_lower_prio_delay)
    kw.setdefault("garp_lower_prio_repeat", g.vrrp_garp_lower_prio_repeat)
    kw.setdefault("lower_prio_no_advert", g.vrrp_lower_prio_no_advert)
    kw.setdefault("higher_prio_send_advert", g.vrrp_higher_prio_send_advert)
    kw.setdefault("check_unicast_src", g.vrrp_check_unicast_src)
    if "smtp_alert" not in kw and p.global_smtp_alert is not None:
        kw["smtp_alert"] = p.global_smtp_alert
    p.instances.append(VrrpInstance(
        name=name,
        interface=interface,
        virtual_router_id=vrid,
        pos=node.pos,
        state=state,
        priority=priority,
        version=version,
        family=family,
        strict_mode=strict,
        virtual_ipaddresses=tuple(vips),
        virtual_ipaddresses_excluded=tuple(vips_ex),
        unsupported=tuple(unsupported),
        **kw,
    ))


class _SyncGroupKw(TypedDict, total=False):
    notify_master: Script
    notify_backup: Script
    notify_fault: Script
    notify_stop: Script
    notify: Script
    track_interfaces: tuple[TrackRef, ...]
    track_scripts: tuple[TrackRef, ...]
    track_files: tuple[TrackRef, ...]
    global_tracking: bool
    sync_group_tracking_weight: bool
    notify_priority_changes: bool
    smtp_alert: bool


_SyncFlag = Literal["smtp_alert", "global_tracking", "sync_group_tracking_weight"]
_SYNC_FLAG: tuple[_SyncFlag, ...] = get_args(_SyncFlag)


def read_sync_group(p: Parts, node: Node) -> None:
    """``vrrp_sync_group NAME { group { ... } ... }`` (vrrp_parser.c vrrp_sync_group_handler
    and friends)."""
    c = p.ctx
    name = c.block_name(node, "vrrp_sync_group")
    if name is None:
        return
    kw: _SyncGroupKw = {}
    members: list[str] = []
    for ch in children(node):
        k = ch.keyword
        if ch.spec is not None and not ch.spec.supported:
            c.unsupported_kw(ch, f"vrrp_sync_group {name}")
            continue
        if k == "group":
            for ln in ch.values or []:
                members.extend(ln.tokens)
        elif k == "track_interface":
            kw["track_interfaces"] = track_refs(p, ch, name)
        elif k == "track_script":
            kw["track_scripts"] = track_refs(p, ch, name)
        elif k == "track_file":
            kw["track_files"] = track_refs(p, ch, name)
        elif one_of(k, _SYNC_NOTIFY):
            if (sc := c.script(ch)) is not None:
                kw[k] = sc
        elif one_of(k, _SYNC_FLAG):
            if (fv := c.flag(ch)) is not None:
                kw[k] = fv
        elif k == "notify_priority_changes":
            # keepalived vrrp_parser.c vrrp_sg_notify_priority_changes_handler()
            tf = true_false(ch.args[0]) if ch.args else True
            if tf is None:
                c.err(ch.pos, f"({name}) Invalid value '{ch.args[0]}' for sync group "
                      "notify_priority_changes specified")
            else:
                kw["notify_priority_changes"] = tf
        elif k == "track_process":
            p.tp_lines.setdefault(("g", name), []).extend(ch.values or [])
    if not members:  # vrrp.c vrrp_complete_init()
        c.err(node.pos, f"Sync group {name} has no virtual router(s). removing")
        return
    p.sync_groups.append(VrrpSyncGroup(name=name, group=tuple(members), pos=node.pos, **kw))


def _track_processes(p: Parts, kind: str, owner: str) -> tuple[TrackProcessRef, ...]:
    return track_process_refs(p, owner, p.tp_lines.get((kind, owner), []))


def finish_vrrp(p: Parts) -> None:
    """Cross checks that need every block read (keepalived does them at the end too)."""
    c = p.ctx
    g = p.global_defs
    scripts_used = bool(p.vrrp_scripts) or any(
        getattr(i, f) is not None for i in p.instances for f in NOTIFY) or any(
        sg.notify or sg.notify_master or sg.notify_backup or sg.notify_fault or sg.notify_stop
        for sg in p.sync_groups) or any(
        vs.quorum_up or vs.quorum_down or any(
            r.notify_up or r.notify_down or any(ch.misc_path for ch in r.checkers)
            for r in vs.real_servers) for vs in p.virtual_servers) or bool(
        g.notify_fifo_script or g.vrrp_notify_fifo_script or g.lvs_notify_fifo_script)
    if scripts_used and not g.enable_script_security:
        # keepalived: SECURITY VIOLATION (exit 6) when a script file is writable by a
        # non-root user; that depends on the files at run time, so a warning here.
        c.warn(None, "scripts are configured but enable_script_security is not set - "
               "keepalived reports SECURITY VIOLATION if any script is insecure")
    names = {i.name for i in p.instances}
    seen: dict[str, str] = {}
    groups: list[VrrpSyncGroup] = []
    for sg in p.sync_groups:
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
    p.sync_groups = groups
    scripts = {s.name for s in p.vrrp_scripts}
    files = {t.name for t in p.track_files}
    for inst in p.instances:
        for ref in inst.track_scripts:
            if ref.name not in scripts:
                c.err(ref.pos, f"({inst.name}) track script {ref.name} not found, ignoring...")
        for ref in inst.track_files:
            if ref.name not in files:
                c.err(ref.pos, f"({inst.name}) track file {ref.name} not found, ignoring...")
    if any(i.use_vmac == "" for i in p.instances):
        # vrrp.c create_vmac_name(): a default vmac name avoids every other instance's
        from lvsd.vrrp.vmac import vmac_name

        taken = {i.use_vmac for i in p.instances if i.use_vmac}
        for n, i in enumerate(p.instances):
            if i.use_vmac == "":
                vname = vmac_name(i.virtual_router_id, i.family, taken)
                taken.add(vname)
                p.instances[n] = replace(i, use_vmac=vname)
    p.instances = [
        replace(i,
                track_scripts=tuple(r for r in i.track_scripts if r.name in scripts),
                track_files=tuple(r for r in i.track_files if r.name in files),
                track_processes=_track_processes(p, "i", i.name))
        for i in p.instances
    ]
    p.sync_groups = [
        replace(sg, track_processes=_track_processes(p, "g", sg.name))
        for sg in p.sync_groups
    ]
    _vrid_conflicts(p)


def _vrid_conflicts(p: Parts) -> None:
    """vrrp.c check_vrid_conflicts(): two instances that would share a VRID on the wire make
    vrrp_complete_init() fail - fatal. Multicast: same family, VRID, interface and group;
    unicast: same family and VRID, same (or an unset) interface and source address, and a
    peer in common. (keepalived compares live interfaces; lvsd their configured names.)"""
    c = p.ctx
    insts = p.instances
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
                if not {q.address for q in a.unicast_peers} & {
                        q.address for q in b.unicast_peers}:
                    continue
                c.fatal(b.pos, f"({a.name}) duplicate VRID conflict with {b.name} VRID "
                        f"{a.virtual_router_id}")
                continue
            if a.interface is None or a.interface != b.interface or \
                    a.mcast_group != b.mcast_group:
                continue
            c.fatal(b.pos, f"{a.name} and {b.name} both use VRID {a.virtual_router_id} "
                    f"with IPv{a.family} on interface {a.interface}")
