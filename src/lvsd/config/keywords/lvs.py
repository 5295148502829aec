"""``virtual_server_group``, ``virtual_server`` and ``real_server`` (keepalived check_parser.c,
check_data.c, ipwrapper.c).

Theory of operation
-------------------
:data:`VIRTUAL_SERVER_TABLE` and :data:`REAL_SERVER_TABLE` list every keyword keepalived 2.x
accepts there; a real server's checker blocks have the tables of
:mod:`~lvsd.config.keywords.checkers`. A virtual server is read after the whole file (it needs
global_defs and every group). :func:`read_virtual_server` collects its own settings (an
:class:`_VsKw` for the fields it sets, locals for the values real servers inherit), reads each
real server with those defaults (:class:`_VsDefaults`: weight, lvs_method, inhibit_on_failure,
alpha, retry, timers, virtualhost) and each real server's checkers with the real server's
(:class:`~lvsd.config.keywords.checkers.RsDefaults`), then completes it as
check_data.c ``validate_check_config()`` does: default protocol (UDP), scheduler (wlc) and
forwarding method (NAT), persistence for a zero port, ports of NAT / DR / TUN / fwmark real
servers, duplicate real servers, the sorry server, quorum and hysteresis clipped to the
weights. validate_check_config() never fails in 2.2.7: every condition here is an ERROR.

A real server whose block holds only value keywords and value-only checkers (TCP_CHECK and the
like, see :func:`_plain_body`) is read once per distinct body and virtual server defaults; the
next ones with the same lines copy that result with their own address, port and positions
(a generated file repeats one body for thousands of servers). A body is reused only when its
reading added no diagnostic, so the messages are those of reading each server.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from dataclasses import dataclass, replace
from typing import TypedDict

from lvsd.config.grammar import Node
from lvsd.config.keywords.checkers import (
    CHECKER_KINDS,
    PLAIN_CHECKER_KEYWORDS,
    PLAIN_CHECKERS,
    RsDefaults,
    read_checker,
)
from lvsd.config.keywords.common import (
    DRAIN_MAX,
    EXT,
    IPVS_FWMARK_MAX,
    IPVS_SVC_PERSISTENT_TIMEOUT,
    IPVS_WEIGHT_LIMIT,
    LVS_MAX_TIMEOUT,
    TIMER_MAX,
    L,
    Parts,
    Q,
    RsTemplate,
    addr_port,
    block,
    children,
    copier,
    norm_ip,
    or_,
    proto_str,
    table,
    words,
)
from lvsd.config.model import (
    Checker,
    DiagKind,
    LbKind,
    Protocol,
    RealServer,
    Script,
    SorryServer,
    TunnelOptions,
    Unsupported,
    VirtualServer,
    VirtualServerGroup,
    VsgAddressRange,
    VsgFwmark,
)

LVS_SCHEDULERS = frozenset(words("rr wrr lc wlc lblc sh mh dh fo ovf lblcr sed nq twos"))

VIRTUAL_SERVER_TABLE = table(
    {
        **{w: L for w in words(
            "ip_family retry delay_before_retry warmup connect_timeout delay_loop "
            "inhibit_on_failure lb_algo lvs_sched ops sh-port sh-fallback mh-port mh-fallback "
            "lb_kind lvs_method persistence_timeout persistence_granularity protocol "
            "ha_suspend smtp_alert virtualhost alpha omega quorum hysteresis weight "
            "sorry_server sorry_server_inhibit sorry_server_lvs_method")},
        "quorum_up": Q,
        "quorum_down": Q,
        "real_server": block("real_server"),
        "lvs_drain_on_remove": EXT,  # lvsd extension, overrides the global_defs value
    },
    unsupported="hashed flag-1 flag-2 flag-3 persistence_engine snmp_name",
)

REAL_SERVER_TABLE = table(
    {
        **{w: L for w in words(
            "weight lvs_method uthreshold lthreshold inhibit_on_failure alpha retry "
            "delay_before_retry warmup connect_timeout delay_loop smtp_alert virtualhost")},
        "notify_up": Q,
        "notify_down": Q,
        **{k: block(k) for k in CHECKER_KINDS},
    },
    unsupported="snmp_name",
)


@dataclass(frozen=True, slots=True)
class _VsDefaults:
    """What a real server inherits from its virtual server."""

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


class _VsKw(TypedDict, total=False):
    """The :class:`~lvsd.config.model.VirtualServer` fields set by the block's own keywords
    (those resolved at its end are passed explicitly)."""

    address: str
    port: int
    fwmark: int
    group: str
    ha_suspend: bool
    omega: bool
    quorum_up: Script
    quorum_down: Script
    virtualhost: str
    lvs_drain_on_remove: float


class _RsKw(TypedDict, total=False):
    uthreshold: int
    lthreshold: int
    notify_up: Script
    notify_down: Script
    virtualhost: str
    smtp_alert: bool


def read_vsg(p: Parts, node: Node) -> None:
    c = p.ctx
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
    if any(g.name == name for g in p.vsgs):
        c.err(node.pos, f"virtual server group {name} already defined - ignoring")
        return
    p.vsgs.append(VirtualServerGroup(name, tuple(ranges), tuple(marks), node.pos))

def _forwarding(p: Parts, ch: Node, who: str) -> tuple[LbKind, TunnelOptions | None] | None:
    c = p.ctx
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

def read_virtual_server(p: Parts, node: Node) -> None:
    c = p.ctx
    a = node.args
    vs: _VsKw = {}
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
        grp = next((g for g in p.vsgs if g.name == a[1]), None)
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
        ap = addr_port(a)
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
    quorum = 1
    hysteresis = 0
    for ch in children(node):
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
            tv = c.timer_h(ch, "virtual server connect_timeout {} invalid - ignoring",
                           0.000001, TIMER_MAX)
            if tv is not None:
                connect_timeout = tv
        elif k == "delay_loop":
            delay_loop = or_(c.timer_h(
                ch, "virtual server delay loop '{}' invalid - ignoring", 0.000001), delay_loop)
        elif k == "delay_before_retry":
            dbr = or_(c.timer_h(
                ch, "virtual server delay before retry '{}' invalid - ignoring"), dbr)
        elif k == "warmup":
            warmup = or_(c.timer_h(ch, "virtual server warmup '{}' invalid - ignoring"), warmup)
        elif k == "retry":
            retry = or_(c.uint_h(ch, 1, 2**32 - 1, "retry value invalid - {}"), retry)
        elif k in ("lb_algo", "lvs_sched"):
            s = c.arg(ch)
            if s is not None and s in LVS_SCHEDULERS:
                lb_algo = s
            elif s is not None:
                c.err(ch.pos, f"Invalid lvs_scheduler '{s}' - ignoring")
        elif k in ("ops", "sh-port", "sh-fallback", "mh-port", "mh-fallback"):
            # check_parser.c lbflags_handler: decided by the scheduler set so far; under sh or
            # mh the other one's flag is ignored silently, under any other scheduler the
            # message names "sh" whatever the flag
            if k == "ops" or (k.startswith("sh") and lb_algo == "sh") or \
                    (k.startswith("mh") and lb_algo == "mh"):
                flags.add(k)
            elif lb_algo not in ("sh", "mh"):
                c.err(ch.pos, f"{k} only applies to sh scheduler - ignoring")
        elif k in ("lb_kind", "lvs_method"):
            fw = _forwarding(p, ch, "virtual")
            if fw is not None:
                lb_kind, tunnel = fw
        elif k == "persistence_timeout":
            if not ch.args:
                persistence = IPVS_SVC_PERSISTENT_TIMEOUT
            else:
                persistence = or_(c.uint(ch, 1, LVS_MAX_TIMEOUT,
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
            if (sc := c.script(ch)) is not None:
                if k == "quorum_up":
                    vs["quorum_up"] = sc
                else:
                    vs["quorum_down"] = sc
        elif k == "lvs_drain_on_remove":
            if (dv := c.timer(ch, 0.0, DRAIN_MAX)) is not None:
                vs["lvs_drain_on_remove"] = dv
        elif k == "quorum":
            quorum = or_(c.uint(ch, 1, 2**32 - 1, " - ignoring"), quorum)
        elif k == "hysteresis":
            hysteresis = or_(c.uint(ch, 0, 2**32 - 1, " - ignoring"), hysteresis)
        elif k == "weight":
            # check_parser.c vs_weight_handler()
            weight = or_(c.uint(ch, 1, IPVS_WEIGHT_LIMIT, " - Virtual server weight "
                                f"{ch.args[0] if ch.args else ''} is outside range "
                                f"1-{IPVS_WEIGHT_LIMIT}"), weight)
        elif k == "sorry_server":
            ap = addr_port(ch.args)
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
                sorry_kind = _forwarding(p, ch, "sorry")
    def fmt_vs() -> str:  # check_data.c format_vs() (FMT_VS), with the current protocol
        if "group" in vs:
            return f"[{vs['group']}]:0"
        if "fwmark" in vs:
            return f"FWM {vs['fwmark']}"
        return f"[{vs['address']}]:{proto_str(protocol)}:{vs['port']}"

    def fmt_rs(r: RealServer) -> str:  # check_data.c format_rs() (FMT_RS)
        return f"[{r.address}]:{proto_str(protocol)}:{r.port}"

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
        if p.global_smtp_alert_checker is not None:
            smtp_alert = p.global_smtp_alert_checker
        else:
            smtp_alert = bool(p.global_smtp_alert)
    # real servers
    vs_defaults = _VsDefaults(lb_kind, tunnel, weight, inhibit, alpha, retry,
                              connect_timeout, delay_loop, warmup, dbr,
                              vs.get("virtualhost"))
    templates = p.rs_templates.setdefault(vs_defaults, {})
    reals: list[RealServer] = []
    seen_rs: set[tuple[str, int]] = set()  # linear duplicate check (37,000 servers load)
    warned_kind = False
    vs_port = vs.get("port", 0)
    for rn in rs_nodes:
        rs = _real_server(p, rn, vs_defaults, ctxname, templates)
        if rs is None:
            continue
        if rs.lb_kind is not LbKind.TUN:
            if family is None:
                family = rs.family
            elif rs.family != family:
                c.err(rn.pos, "Address family of virtual server and real server "
                      f"{rs.address} don't match - skipping real server.")
                continue
        if lb_kind is None and not (rn.extra and rn.extra.get("own_kind")) and not warned_kind:
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
    if quorum > weight_sum:
        c.err(node.pos, f"Warning - quorum {quorum} for {fmt_vs()} exceeds total weight of "
              f"real servers {weight_sum}, reducing quorum to {weight_sum}")
        quorum = weight_sum
    if hysteresis >= quorum and (hysteresis or quorum):
        new_h = max(quorum - 1, 0)
        c.err(node.pos, f"Virtual server {fmt_vs()}: hysteresis {hysteresis} >= quorum "
              f"{quorum}; setting hysteresis to {new_h}")
        hysteresis = new_h
    p.virtual_servers.append(VirtualServer(
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
        **vs,
    ))

# real server keywords whose reading depends on their words alone (and the virtual server's
# defaults): see _plain_body
_RS_PLAIN = frozenset(words(
    "weight uthreshold lthreshold inhibit_on_failure alpha retry delay_before_retry warmup "
    "connect_timeout delay_loop smtp_alert virtualhost"))
_rs_like = copier(RealServer, "address", "port", "pos", "checkers")
_checker_like = copier(Checker, "pos", "connect_ip", "connect_port")


def _plain_body(node: Node) -> tuple[str | tuple[str, ...], ...] | None:
    """The lines of a real server's block when reading it depends on nothing else (besides
    its address and port, and the virtual server's defaults): every keyword in _RS_PLAIN or a
    checker of PLAIN_CHECKERS made of PLAIN_CHECKER_KEYWORDS. None when anything else is there.

    Generated files repeat one body for thousands of real servers; such a body is read once
    (with its diagnostics: it is reused only when it had none) and the next real servers with
    the same lines copy the result with their own address, port and positions. A line's text
    (``raw``) determines its words; the nesting of the tuples, which line is a checker's.
    """
    body: list[str | tuple[str, ...]] = []
    for ch in node.children or ():
        k = ch.keyword
        if k in _RS_PLAIN:
            body.append(ch.raw)
        elif k in PLAIN_CHECKERS:
            checker = [ch.raw]
            for g in ch.children or ():
                if g.keyword not in PLAIN_CHECKER_KEYWORDS:
                    return None
                checker.append(g.raw)
            body.append(tuple(checker))
        else:
            return None
    return tuple(body)


def _real_server(p: Parts, node: Node, d: _VsDefaults, vsname: str,
                 templates: dict[tuple[str | tuple[str, ...], ...], RsTemplate]
                 ) -> RealServer | None:
    """One real server; ``templates``: those read before with the same defaults ``d``, by
    body (see :func:`_plain_body`)."""
    c = p.ctx
    a = node.args
    ap = addr_port(a)
    if ap is None:
        c.err(node.pos, f"Invalid real server ip address/port {' '.join(a[:2])} - skipping")
        return None
    ip, port = ap
    body = _plain_body(node)
    if body is not None:
        tpl = templates.get(body)
        if tpl is not None:
            proto, where = tpl
            kids = node.children or []
            return _rs_like(proto, ip, port, node.pos, tuple(
                _checker_like(chk, kids[i].pos, chk.connect_ip if own_ip else ip,
                              chk.connect_port if own_port else port)
                for chk, (i, own_ip, own_port) in zip(proto.checkers, where, strict=True)))
        n_diags = len(c.diagnostics)
    rs = _read_real_server(p, node, d, vsname, ip, port)
    if body is not None and rs is not None and len(c.diagnostics) == n_diags:
        where_ = []
        for i, ch in enumerate(node.children or ()):
            if ch.keyword in PLAIN_CHECKERS:
                own = {g.keyword for g in ch.children or ()}
                where_.append((i, "connect_ip" in own, "connect_port" in own))
        if len(where_) == len(rs.checkers):
            templates[body] = (rs, tuple(where_))
    return rs


def _read_real_server(p: Parts, node: Node, d: _VsDefaults, vsname: str, ip: str,
                      port: int) -> RealServer | None:
    c = p.ctx
    a = node.args
    ctxname = f"{vsname} real_server {' '.join(a[:2])}"
    kw: _RsKw = {}
    unsupported: list[Unsupported] = []
    lb_kind, tunnel = d.lb_kind, d.tunnel
    weight, inhibit, alpha = d.weight, d.inhibit, d.alpha
    retry, ct, dl, wu, dbr = d.retry, d.connect_timeout, d.delay_loop, d.warmup, d.dbr
    checker_nodes: list[Node] = []
    for ch in children(node):
        k = ch.keyword
        if ch.spec is not None and not ch.spec.supported:
            unsupported.append(c.unsupported_kw(ch, ctxname))
            continue
        if k in CHECKER_KINDS:
            checker_nodes.append(ch)
        elif k == "weight":
            iv = c.uint_h(ch, 0, IPVS_WEIGHT_LIMIT,
                          f"Real server weight {{}} is outside range 0-{IPVS_WEIGHT_LIMIT}")
            if iv is not None:
                weight = iv
        elif k == "lvs_method":
            fw = _forwarding(p, ch, "real")
            if fw is not None:
                lb_kind, tunnel = fw
                node.extra = {**(node.extra or {}), "own_kind": True}
        elif k in ("uthreshold", "lthreshold"):
            if (iv := c.uint(ch, 0, 65535, " - ignoring")) is not None:
                if k == "uthreshold":
                    kw["uthreshold"] = iv
                else:
                    kw["lthreshold"] = iv
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
            if (sc := c.script(ch)) is not None:
                if k == "notify_up":
                    kw["notify_up"] = sc
                else:
                    kw["notify_down"] = sc
        elif k == "retry":  # check_parser.c rs_*_handler() messages
            retry = or_(c.uint_h(ch, 1, 2**32 - 1, "retry value invalid - {}"), retry)
        elif k == "connect_timeout":
            ct = or_(c.timer_h(
                ch, "real server connect_timeout {} invalid - ignoring", 0.000001), ct)
        elif k == "delay_loop":
            dl = or_(c.timer_h(ch, "real server delay_loop '{}' invalid - ignoring", 0.000001), dl)
        elif k == "warmup":
            wu = or_(c.timer_h(ch, "real server warmup '{}' invalid - ignoring"), wu)
        elif k == "delay_before_retry":
            dbr = or_(c.timer_h(ch, "real server delay_before_retry '{}' invalid - ignoring"), dbr)
        elif k == "virtualhost":
            s = c.arg(ch)
            if s is not None:
                kw["virtualhost"] = s
    if "smtp_alert" not in kw:
        if p.global_smtp_alert_checker is not None:
            kw["smtp_alert"] = p.global_smtp_alert_checker
        elif p.global_smtp_alert is not None:
            kw["smtp_alert"] = p.global_smtp_alert
        else:
            kw["smtp_alert"] = True  # keepalived: backwards compatible default for rs
    if "virtualhost" not in kw and d.virtualhost is not None:
        kw["virtualhost"] = d.virtualhost  # keepalived: url > checker > rs > vs
    rs_d = RsDefaults(ip, port, alpha, retry, ct, dl, wu, dbr,
                      kw.get("virtualhost") or None)
    checkers: list[Checker] = []
    for cn in checker_nodes:
        chk = read_checker(p, cn, rs_d, ctxname)
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
        **kw,
    )
