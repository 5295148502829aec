"""Connection counts for the nftables data plane, read from the kernel's conntrack table.

Theory of operation
-------------------
The nftables data plane NATs with ``dnat``, so every connection it scheduled is a conntrack
entry whose original direction goes to the service (protocol, VIP, port) and whose reply comes
from the real server (address, port). Counting those entries per (service, destination) gives
what ``ipvsadm -Ln`` shows as ActiveConn and InActConn: IPVS counts a TCP connection in the
ESTABLISHED state as active and every other one (SYN_RECV, FIN_WAIT, TIME_WAIT, ... and every
UDP or SCTP "connection") as inactive (net/netfilter/ipvs/ip_vs_proto_tcp.c
``set_tcp_state``: ``IP_VS_CONN_F_INACTIVE`` outside ESTABLISHED). The pool ends a drain early
on these counts exactly as it does with IPVS.

conntrack keeps no per-destination history, so there is no "connections since creation" nor
packet/byte counter: the values carry ``counters=False`` and status shows those as unknown.
Fwmark services are not counted (the packet's mark is not in the conntrack entry): they get no
value, so a drain there runs its full time.

:func:`count` is pure (lines of ``/proc/net/nf_conntrack``, the table -> values);
:func:`read_lines` reads the file of the caller's network namespace (None, and so no values
at all, when the kernel has no such file).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable, Mapping

from lvsd.pool.table import DestKey, DestStats, ServiceEntry, ServiceKey

log = logging.getLogger(__name__)

PROC = "/proc/net/nf_conntrack"
_PROTOS = {"tcp": 6, "udp": 17, "sctp": 132}


def _tuple(words: list[str], start: int) -> tuple[str, str, int, int, int] | None:
    """(src, dst, sport, dport, index after) of the ``src= dst= sport= dport=`` group at or
    after ``start``; None without one."""
    vals: dict[str, str] = {}
    i = start
    while i < len(words) and len(vals) < 4:
        k, sep, v = words[i].partition("=")
        if sep and k in ("src", "dst", "sport", "dport") and k not in vals:
            vals[k] = v
        elif sep and k in vals:
            return None  # a second group began before this one was complete
        i += 1
    if len(vals) < 4:
        return None
    try:
        return (str(ipaddress.ip_address(vals["src"])), str(ipaddress.ip_address(vals["dst"])),
                int(vals["sport"]), int(vals["dport"]), i)
    except ValueError:
        return None


def count(lines: Iterable[str], table: Mapping[ServiceKey, ServiceEntry]
          ) -> dict[tuple[ServiceKey, DestKey], DestStats]:
    """Active/inactive connections of every destination of the table's address services (0
    when conntrack has none), from ``/proc/net/nf_conntrack`` lines::

        ipv4 2 tcp 6 431999 ESTABLISHED src=C dst=VIP sport=P dport=80 src=RS dst=C sport=80
        dport=P [ASSURED] mark=0 zone=0 use=2
    """
    active: dict[tuple[ServiceKey, DestKey], int] = {}
    inactive: dict[tuple[ServiceKey, DestKey], int] = {}
    for k, entry in table.items():
        if not k.fwmark:
            for d in entry.dests:
                active[(k, d)] = inactive[(k, d)] = 0
    if not active:
        return {}
    for line in lines:
        words = line.split()
        if len(words) < 6 or words[2] not in _PROTOS:
            continue
        proto = _PROTOS[words[2]]
        orig = _tuple(words, 5)
        if orig is None:
            continue
        reply = _tuple(words, orig[4])
        if reply is None:
            continue
        svc = ServiceKey(4 if "." in orig[1] else 6, proto, orig[1], orig[3])
        key = (svc, DestKey(reply[0], reply[2]))
        if key not in active:
            continue
        if proto == 6 and "ESTABLISHED" in words[5:7]:
            active[key] += 1
        else:
            inactive[key] += 1
    return {key: DestStats(active_conns=n, inactive_conns=inactive[key], counters=False)
            for key, n in active.items()}


def read_lines() -> list[str] | None:
    """The conntrack table of this network namespace; None when the kernel does not show it
    (a kernel built without its /proc file): then nothing is known, not "no connection"."""
    try:
        with open(PROC, encoding="ascii", errors="replace") as fh:
            return fh.readlines()
    except FileNotFoundError:
        log.debug("%s: absent: no connection counts", PROC)
        return None
