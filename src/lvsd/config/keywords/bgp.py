"""``bgp_speaker`` and ``bgp_announce``: lvsd's BGP announcement mode (lvsd extension blocks,
docs/bgp.md).

Theory of operation
-------------------
keepalived does not know these blocks: it logs ``Unknown keyword 'bgp_speaker'`` and skips the
block, so a file using them stays loadable by keepalived. Every keyword here is marked an
extension (:class:`~lvsd.config.grammar.Spec` ``extension``), so the migration guide's keyword
table lists them as such and a typo is never "corrected" into one of them.

The readers follow the house rules of the other blocks: a bad value is reported with its
``file:line`` in keepalived's style (``keyword: invalid number 'x' - ignoring``) and the default
kept; a block that cannot work (a speaker without ``local_as``, a neighbor without
``remote_as``, an announcement without ``address``) is reported and skipped, never fatal.

``bgp_announce`` blocks are read after every virtual server (:func:`read_bgp_announce` is called
by the builder at the end, as virtual servers are), because a ``virtual_server`` line names
one: ``virtual_server IP PORT [PROTO]`` (every virtual server on that address and port, or only
the protocol's), ``virtual_server fwmark N`` or ``virtual_server group NAME``. A line naming no
configured virtual server is an error and the announcement is skipped (announcing a VIP whose
service is not there would draw traffic to nothing). ``track_script`` names must be
``vrrp_script`` blocks (keepalived's "track script X not found, ignoring..." wording; the
reference is dropped).
"""

from __future__ import annotations

import ipaddress
import re
from typing import TypedDict

from lvsd.config.grammar import Kind, Node, Spec
from lvsd.config.keywords.common import EXT, Parts, children, norm_ip, table
from lvsd.config.model import BgpAnnounce, BgpNeighbor, BgpSpeaker, Protocol, VirtualServer

EXT_VALUES = Spec(Kind.VALUES, extension=True)


def ext_block(table_name: str) -> Spec:
    """An lvsd-only keyword opening a block of ``table_name``'s keywords."""
    return Spec(Kind.BLOCK, table_name, extension=True)


BGP_SPEAKER_TABLE = table({
    **{w: EXT for w in ("bird_binary", "router_id", "local_as", "hold_time", "bfd",
                        "bfd_interval")},
    "neighbor": ext_block("bgp_neighbor"),
})
BGP_NEIGHBOR_TABLE = table({"remote_as": EXT, "source_address": EXT})
BGP_ANNOUNCE_TABLE = table({
    **{w: EXT for w in ("address", "virtual_server", "rise_delay", "fall_delay")},
    "track_script": EXT_VALUES,
    "track_interface": EXT_VALUES,
})

AS_MAX = 2**32 - 1
HOLD_MIN, HOLD_MAX = 3, 65535  # BIRD: "hold time" 3..65535 (RFC 4271 4.2: 0 or >= 3)
BFD_MIN, BFD_MAX = 10, 60000  # ms
DELAY_MAX = 3600.0
# a BIRD symbol: the announcement becomes protocol ``lvsd_<name>`` (BIRD's SYM_MAX_LEN 64)
_NAME_RE = re.compile(r"[A-Za-z0-9_]{1,40}")


class _SpeakerKw(TypedDict, total=False):
    router_id: str
    bird_binary: str
    hold_time: int
    bfd: bool
    bfd_interval: int


def _neighbor(p: Parts, node: Node) -> BgpNeighbor | None:
    c = p.ctx
    addr = norm_ip(node.args[0]) if len(node.args) == 1 else None
    if addr is None:
        c.err(node.pos, f"bgp_speaker neighbor '{' '.join(node.args)}' must be one IP "
              "address - ignoring")
        return None
    remote_as: int | None = None
    source: str | None = None
    for ch in children(node):
        if ch.keyword == "remote_as":
            remote_as = c.uint(ch, 1, AS_MAX, " - ignoring")
        elif ch.keyword == "source_address":
            src = c.arg(ch)
            if src is not None:
                source = norm_ip(src)
                if source is None:
                    c.err(ch.pos, f"source_address '{src}' is not an IP address - ignoring")
    if remote_as is None:
        c.err(node.pos, f"bgp_speaker neighbor {addr} has no valid remote_as - ignoring")
        return None
    return BgpNeighbor(addr, remote_as, source, node.pos)


def read_bgp_speaker(p: Parts, node: Node) -> None:
    """``bgp_speaker { ... }``: one per file (a second one is reported and ignored)."""
    c = p.ctx
    if p.bgp_speaker is not None:
        c.err(node.pos, "bgp_speaker already specified - ignoring")
        return
    if node.args:
        c.err(node.pos, f"bgp_speaker takes no name - ignoring '{' '.join(node.args)}'")
    kw: _SpeakerKw = {}
    local_as: int | None = None
    neighbors: list[BgpNeighbor] = []
    for ch in children(node):
        k = ch.keyword
        if k == "local_as":
            local_as = c.uint(ch, 1, AS_MAX, " - ignoring")
        elif k == "router_id":
            s = c.arg(ch)
            if s is not None:
                rid = norm_ip(s)
                if rid is None or ":" in rid:
                    c.err(ch.pos, f"router_id '{s}' must be an IPv4 address - ignoring")
                else:
                    kw["router_id"] = rid
        elif k == "bird_binary":
            s = c.arg(ch)
            if s is not None:
                kw["bird_binary"] = s
        elif k == "hold_time":
            if (iv := c.uint(ch, HOLD_MIN, HOLD_MAX, " - ignoring")) is not None:
                kw["hold_time"] = iv
        elif k == "bfd":
            if (fv := c.flag(ch)) is not None:
                kw["bfd"] = fv
        elif k == "bfd_interval":
            if (iv := c.uint(ch, BFD_MIN, BFD_MAX, " - ignoring")) is not None:
                kw["bfd_interval"] = iv
        elif k == "neighbor":
            nb = _neighbor(p, ch)
            if nb is None:
                continue
            if any(n.address == nb.address for n in neighbors):
                c.err(ch.pos, f"bgp_speaker neighbor {nb.address} already specified - ignoring")
                continue
            neighbors.append(nb)
    if local_as is None:
        c.err(node.pos, "bgp_speaker has no valid local_as - ignoring the block (no route "
              "is announced)")
        return
    if not neighbors:
        c.warn(node.pos, "bgp_speaker has no neighbor: announcements reach no router")
    p.bgp_speaker = BgpSpeaker(local_as=local_as, neighbors=tuple(neighbors), pos=node.pos,
                               **kw)


def _vs_matches(args: list[str], servers: list[VirtualServer]) -> list[str] | str:
    """The idents of the virtual servers a ``virtual_server`` line names, or why it is bad."""
    if args[:1] == ["fwmark"] and len(args) == 2:
        return [v.ident for v in servers if v.fwmark is not None and str(v.fwmark) == args[1]]
    if args[:1] == ["group"] and len(args) == 2:
        return [v.ident for v in servers if v.group == args[1]]
    if len(args) not in (2, 3):
        return "must be 'IP PORT [PROTOCOL]', 'fwmark N' or 'group NAME'"
    ip = norm_ip(args[0])
    if ip is None or not args[1].isdigit():
        return "must be 'IP PORT [PROTOCOL]', 'fwmark N' or 'group NAME'"
    proto: Protocol | None = None
    if len(args) == 3:
        try:
            proto = Protocol(args[2].upper())
        except ValueError:
            return f"unknown protocol '{args[2]}'"
    port = int(args[1])
    return [v.ident for v in servers
            if v.address == ip and v.port == port and v.fwmark is None and v.group is None
            and (proto is None or v.protocol is proto)]


def read_bgp_announce(p: Parts, node: Node) -> None:
    """``bgp_announce NAME { ... }``, once every virtual server is read."""
    c = p.ctx
    name = c.block_name(node, "bgp_announce")
    if name is None:
        return
    if not _NAME_RE.fullmatch(name):
        c.err(node.pos, f"bgp_announce name '{name}' must be 1-40 letters, digits or '_' "
              "(it names a BIRD protocol) - ignoring")
        return
    if any(a.name == name for a in p.bgp_announces):
        c.err(node.pos, f"bgp_announce {name} already defined - ignoring")
        return
    net: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
    idents: list[str] = []
    scripts: list[str] = []
    interfaces: list[str] = []
    rise, fall = 2.0, 0.0
    broken = False
    defined = {s.name for s in p.vrrp_scripts}
    for ch in children(node):
        k = ch.keyword
        if k == "address":
            s = c.arg(ch)
            if s is None:
                broken = True
                continue
            try:
                net = ipaddress.ip_network(s, strict=True)
            except ValueError:
                c.err(ch.pos, f"({name}) address '{s}' is not an address or prefix - ignoring")
        elif k == "virtual_server":
            found = _vs_matches(ch.args, p.virtual_servers)
            if isinstance(found, str):
                c.err(ch.pos, f"({name}) virtual_server '{' '.join(ch.args)}' {found} - "
                      "ignoring the announcement")
                broken = True
            elif not found:
                c.err(ch.pos, f"({name}) virtual_server {' '.join(ch.args)} is not configured "
                      "- ignoring the announcement")
                broken = True
            else:
                idents += [i for i in found if i not in idents]
        elif k == "track_script":
            for ln in ch.values or []:
                sname = ln.tokens[0]
                if sname not in defined:  # keepalived vrrp_parser.c wording
                    c.err(ln.pos, f"({name}) track script {sname} not found, ignoring...")
                elif sname not in scripts:
                    scripts.append(sname)
        elif k == "track_interface":
            interfaces += [ln.tokens[0] for ln in ch.values or []
                           if ln.tokens[0] not in interfaces]
        elif k in ("rise_delay", "fall_delay"):
            tv = c.timer(ch, 0.0, DELAY_MAX)
            if tv is not None:
                if k == "rise_delay":
                    rise = tv
                else:
                    fall = tv
    if net is None:
        if not broken:
            c.err(node.end_pos or node.pos, f"bgp_announce {name} has no valid address - "
                  "ignoring")
        return
    if broken:
        return
    if not (idents or scripts or interfaces):
        c.warn(node.pos, f"bgp_announce {name} names no virtual_server, track_script or "
               "track_interface: announced whenever lvsd and its data plane run")
    p.bgp_announces.append(BgpAnnounce(
        name=name, address=str(net.network_address), prefixlen=net.prefixlen,
        virtual_servers=tuple(idents), track_scripts=tuple(scripts),
        track_interfaces=tuple(interfaces), rise_delay=rise, fall_delay=fall, pos=node.pos))


def finish_bgp(p: Parts, announce_nodes: list[Node]) -> None:
    """The announcements (after the virtual servers) and their cross checks."""
    for node in announce_nodes:
        read_bgp_announce(p, node)
    if p.bgp_announces and p.bgp_speaker is None:
        first = p.bgp_announces[0]
        p.ctx.err(first.pos, "bgp_announce without a bgp_speaker block - no route is "
                  "announced")
    seen: dict[str, str] = {}
    kept: list[BgpAnnounce] = []
    for a in p.bgp_announces:
        if a.cidr in seen:
            p.ctx.err(a.pos, f"bgp_announce {a.name}: {a.cidr} is already announced by "
                      f"{seen[a.cidr]} - ignoring")
            continue
        seen[a.cidr] = a.name
        kept.append(a)
    p.bgp_announces = kept
