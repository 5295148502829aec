"""An nftables data plane for kernels without IPVS (NAT only), driven through the ``nft`` CLI.

Theory of operation
-------------------
Everything lives in one table, ``inet lvsd`` by default, in the namespace of the calling
process (the daemon runs inside the director's namespace). Skeleton::

    chain pre  { type nat hook prerouting priority dstnat; jump dispatch }
    chain out  { type nat hook output priority -100; jump dispatch }
    chain dispatch {
        meta l4proto . ip daddr . th dport vmap @svc4      # address services
        meta l4proto . ip6 daddr . th dport vmap @svc6
        meta nfproto ipv4 meta mark vmap @fwm4              # fwmark services
        meta nfproto ipv6 meta mark vmap @fwm6
    }

Each service (named by a hash of its key, ``h``) owns three objects:

* map ``w_h``: every destination ``addr . port : weight`` (weight-0 ones too); its comment
  holds the service's settings. This is what :meth:`NftablesDataPlane.dump` reads back.
* map ``d_h``: the dispatch intervals ``lo-hi : addr . port``. Each destination with a weight
  gets an interval as long as its weight (weights divided by their gcd), so
  ``numgen inc mod N`` (N = sum) is weighted round robin (NOTES.md: ``{0-2: rs1, 3: rs2}`` gives
  3:1), and ``jhash ip saddr mod N`` is weighted source hashing.
* chain ``c_h``: one rule ``meta l4proto P dnat ip to <numgen|jhash> mod N map @d_h``, reached
  from the service's vmap element. With no destination of positive weight the chain is empty:
  the packet is not translated.

Every :meth:`apply_many` call is ONE ``nft -f`` transaction: it reads the table, computes the
next state with the kernel's rules (:func:`lvsd.dataplane.memory.apply_op`), and for every
touched service deletes its objects and writes them again whole (maps flushed and refilled,
rule with the new ``mod N``), so ``mod N`` and the map always agree (NOTES.md: deleting one
element while N stays makes every Nth connection fail). A weight-0 or removed server gets no new
connection; established connections keep their backend because conntrack holds the NAT binding.

:meth:`dump` also checks that the dispatch map, rule and vmap element still agree with the
weights; if someone edited them by hand the service is reported with a scheduler marked broken
(``"wrr!broken"``), so the reconciler issues an ``EditService`` that rewrites it. If the whole
table is missing (first start, or deleted by hand) :meth:`dump` creates the empty skeleton, so
the next reconcile re-adds every owned service. Objects without lvsd's comment are not
services of this data plane and are ignored. ``dump(services)`` still lists the table in one
``nft`` call (nft has no cheaper fresh read) but decodes and checks only those services;
``dump_services()`` is the settings from the weight maps' comments.

What it can do, and what it refuses (at config load, via :meth:`refuse`)
  * Forwarding: NAT only. DR and TUN are refused ("nftables data plane does NAT only").
  * Schedulers: ``rr`` (each live server once), ``wrr``, ``sh`` (jhash of the source address;
    with ``sh-port``/``mh-port`` of address and port), ``dh`` (jhash of the destination), ``fo``
    (all new connections to the highest weight). ``mh`` is done as ``sh``. The connection-count
    schedulers (``lc wlc sed nq lblc lblcr twos ovf``) are done as ``wrr`` with a warning:
    nftables does not know connection counts, and refusing ``wlc`` (keepalived's default) would
    refuse nearly every config. ``sh-fallback``/``mh-fallback`` are accepted: removing a server
    always re-hashes onto the live ones here.
  * Refused: persistence (use ``lb_algo sh``), the ``ops`` flag, u/l thresholds, destination
    port 0.
  * Counters (:meth:`NftablesDataPlane.stats`): active and inactive connections per
    destination, counted in the conntrack table as IPVS counts them; no traffic counters.
  * ``lvs_timeouts`` (IPVS connection timeouts): ignored, with a warning logged by the
    reconciler. This data plane has no IPVS timeouts: a NAT binding here lives as long as its
    conntrack entry, whose timeouts are the host-wide ``net.netfilter.nf_conntrack_*`` sysctls,
    which are not lvsd's to change. Ignoring (not refusing) keeps every config that keepalived
    runs usable here, as with the connection-count schedulers. It deliberately does not offer
    :class:`~lvsd.dataplane.base.TimeoutHolder`.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import logging
import math
import re
import shutil
from collections.abc import Collection, Sequence
from typing import Any

from lvsd.dataplane import conntrack
from lvsd.dataplane.base import DataPlaneError, DataPlaneUnavailable
from lvsd.dataplane.memory import apply_op, to_mutable
from lvsd.pool.table import (
    AddDest,
    AddService,
    DestKey,
    DestSpec,
    DestStats,
    EditDest,
    EditService,
    Fwd,
    Op,
    Proto,
    ServiceEntry,
    ServiceKey,
    ServiceSpec,
    Table,
    op_service,
)

log = logging.getLogger(__name__)

NATIVE = {"rr", "wrr", "sh", "dh", "fo", "mh"}
AS_WRR = {"lc", "wlc", "sed", "nq", "lblc", "lblcr", "twos", "ovf"}
ACCEPTED_FLAGS = {"sh-port", "sh-fallback", "mh-port", "mh-fallback"}
BROKEN = "!broken"
_PROTO_NAME = {int(Proto.TCP): "tcp", int(Proto.UDP): "udp", int(Proto.SCTP): "sctp"}
_TRANSIENT = ("Resource busy", "Device or resource busy", "No buffer space",
              "Interrupted system call", "Resource temporarily unavailable", "timed out")


def obj_id(key: ServiceKey) -> str:
    return hashlib.sha1(repr(key).encode()).hexdigest()[:12]


def encode_spec(spec: ServiceSpec) -> str:
    k = spec.key
    return " ".join([
        "lvsd", str(k.af), str(k.protocol), k.addr or "-", str(k.port), str(k.fwmark),
        spec.scheduler, ",".join(sorted(spec.flags)) or "-",
        str(spec.persistence_timeout) if spec.persistence_timeout else "-",
        spec.persistence_granularity or "-",
    ])


def decode_spec(comment: str) -> ServiceSpec | None:
    parts = comment.split(" ")
    if len(parts) != 10 or parts[0] != "lvsd":
        return None
    _, af, proto, addr, port, fwmark, sched, flags, timeout, gran = parts
    key = ServiceKey(int(af), int(proto), "" if addr == "-" else addr, int(port), int(fwmark))
    return ServiceSpec(
        key, sched, frozenset() if flags == "-" else frozenset(flags.split(",")),
        None if timeout == "-" else int(timeout), None if gran == "-" else gran)


def intervals(spec: ServiceSpec, dests: Sequence[DestSpec]) -> list[tuple[int, int, DestKey]]:
    """The dispatch intervals for a service: [(lo, hi, dest)], sum of lengths is ``mod N``."""
    live = sorted((d for d in dests if d.weight > 0), key=lambda d: d.key)
    sched = spec.scheduler.lower()
    if not live:
        return []
    if sched == "rr":
        weights = [1] * len(live)
    elif sched == "fo":
        best = max(live, key=lambda d: (d.weight, [-b for b in d.key.addr.encode()]))
        live, weights = [best], [1]
    else:
        g = 0
        for d in live:
            g = math.gcd(g, d.weight)
        weights = [d.weight // g for d in live]
    out = []
    lo = 0
    for d, w in zip(live, weights, strict=True):
        out.append((lo, lo + w - 1, d.key))
        lo += w
    return out


def _hash_expr(spec: ServiceSpec, mod: int) -> str:
    sched = spec.scheduler.lower()
    fam = "ip" if spec.key.af == 4 else "ip6"
    if sched in ("sh", "mh"):
        src = f"{fam} saddr"
        if spec.flags & {"sh-port", "mh-port"}:
            src += " . th sport"
        return f"jhash {src} mod {mod} seed 0x0"
    if sched == "dh":
        return f"jhash {fam} daddr mod {mod} seed 0x0"
    return f"numgen inc mod {mod}"


def _elem_addr(addr: str, port: int) -> str:
    return f"{addr} . {port}"


class NftablesDataPlane:
    """NAT load balancing with nftables maps. Acts in the caller's network namespace."""

    name = "nftables"

    def __init__(self, table: str = "lvsd", *, nft: Sequence[str] = ("nft",),
                 timeout: float = 10.0) -> None:
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,30}", table):
            raise ValueError(f"nftables table name {table!r}: letters, digits and _ only")
        self.table = table
        self._nft = list(nft)
        self._timeout = timeout
        self._ready = False
        self._warned: set[str] = set()
        self.transactions = 0

    # --- policy -----------------------------------------------------------------------------

    def refuse(self, spec: ServiceSpec | DestSpec) -> str | None:
        if isinstance(spec, ServiceSpec):
            sched = spec.scheduler.lower()
            if sched not in NATIVE | AS_WRR:
                return f"nftables data plane: unknown scheduler {spec.scheduler!r}"
            if spec.persistence_timeout:
                return ("nftables data plane cannot do persistence_timeout "
                        "(use lb_algo sh for client affinity)")
            bad = sorted(set(spec.flags) - ACCEPTED_FLAGS)
            if bad:
                return f"nftables data plane cannot do scheduler flag(s) {', '.join(bad)}"
            return None
        if spec.fwd is not Fwd.MASQ:
            method = {Fwd.DROUTE: "DR", Fwd.TUNNEL: "TUN"}.get(spec.fwd, spec.fwd.name)
            return (f"nftables data plane does NAT only: lvs_method {method} for real server "
                    f"{spec.key} is not possible (use the ipvs data plane)")
        if spec.u_threshold or spec.l_threshold:
            return f"nftables data plane cannot do uthreshold/lthreshold (real server {spec.key})"
        if spec.key.port == 0:
            return f"nftables data plane needs a real server port (real server {spec.key})"
        return None

    def warning(self, spec: ServiceSpec) -> str | None:
        """A non-fatal approximation this data plane makes for ``spec``, if any."""
        sched = spec.scheduler.lower()
        if sched in AS_WRR:
            return (f"nftables data plane: scheduler {sched} for {spec.key} is done as wrr "
                    "(no connection counts)")
        if sched == "mh":
            return (f"nftables data plane: scheduler mh for {spec.key} is done as sh (jhash "
                    "mod N): not a consistent hash, a change of the live servers moves most "
                    "flows (kernel IPVS mh does not)")
        return None

    # --- nft --------------------------------------------------------------------------------

    async def _run(self, args: Sequence[str], script: str | None = None) -> str:
        argv = [*self._nft, *args]
        if shutil.which(argv[0]) is None:
            raise DataPlaneUnavailable(f"{argv[0]} not found: install nftables")
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE if script is not None else None,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(
                proc.communicate(script.encode() if script is not None else None),
                timeout=self._timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise DataPlaneError(f"nft {' '.join(args)}: timed out", transient=True) from None
        if proc.returncode != 0:
            msg = err.decode(errors="replace").strip()
            if "Operation not permitted" in msg:
                raise DataPlaneUnavailable(f"nft: {msg} (needs CAP_NET_ADMIN)")
            raise DataPlaneError(f"nft {' '.join(args)}: {msg}",
                                 transient=any(t in msg for t in _TRANSIENT))
        return out.decode()

    async def _list(self) -> dict[str, Any] | None:
        try:
            text = await self._run(["-j", "list", "table", "inet", self.table])
        except DataPlaneError as exc:
            if "No such file or directory" in str(exc):
                return None
            raise
        data: dict[str, Any] = json.loads(text)
        return data

    def _skeleton(self) -> str:
        t = f"inet {self.table}"
        return "\n".join([
            f"add table {t}",
            f"add map {t} svc4 {{ type inet_proto . ipv4_addr . inet_service : verdict; }}",
            f"add map {t} svc6 {{ type inet_proto . ipv6_addr . inet_service : verdict; }}",
            f"add map {t} fwm4 {{ type mark : verdict; }}",
            f"add map {t} fwm6 {{ type mark : verdict; }}",
            f"add chain {t} dispatch",
            f"add rule {t} dispatch meta l4proto . ip daddr . th dport vmap @svc4",
            f"add rule {t} dispatch meta l4proto . ip6 daddr . th dport vmap @svc6",
            f"add rule {t} dispatch meta nfproto ipv4 meta mark vmap @fwm4",
            f"add rule {t} dispatch meta nfproto ipv6 meta mark vmap @fwm6",
            f"add chain {t} pre {{ type nat hook prerouting priority dstnat; policy accept; }}",
            f"add rule {t} pre jump dispatch",
            f"add chain {t} out {{ type nat hook output priority -100; policy accept; }}",
            f"add rule {t} out jump dispatch",
            "",
        ])

    async def _ensure(self) -> dict[str, Any]:
        data = await self._list()
        if data is None:
            await self._run(["-f", "-"], self._skeleton())
            data = await self._list()
            if data is None:
                raise DataPlaneError(f"nft table inet {self.table} vanished after creation")
        return data

    # --- reading ----------------------------------------------------------------------------

    @staticmethod
    def _parse(data: dict[str, Any], only: Collection[ServiceKey] | None = None
               ) -> dict[ServiceKey, ServiceEntry]:
        wanted = None if only is None else {f"w_{obj_id(k)}" for k in only}
        maps: dict[str, dict[str, Any]] = {}
        rules: dict[str, list[dict[str, Any]]] = {}
        for item in data.get("nftables", []):
            if "map" in item:
                maps[item["map"]["name"]] = item["map"]
            elif "rule" in item:
                rules.setdefault(item["rule"]["chain"], []).append(item["rule"])
        vjumps: set[tuple[str, str]] = set()
        for vname in ("svc4", "svc6", "fwm4", "fwm6"):
            for elem in maps.get(vname, {}).get("elem", []):
                key, verdict = elem
                target = verdict.get("jump", {}).get("target") if isinstance(verdict, dict) \
                    else None
                if target:
                    vjumps.add((vname, json.dumps(key, sort_keys=True) + "->" + target))
        table: dict[ServiceKey, ServiceEntry] = {}
        for name, m in maps.items():
            if not name.startswith("w_") or (wanted is not None and name not in wanted):
                continue
            spec = decode_spec(m.get("comment", ""))
            if spec is None or (only is not None and spec.key not in only):
                continue
            dests: dict[DestKey, DestSpec] = {}
            for elem in m.get("elem", []):
                k, weight = elem
                addr, port = k["concat"]
                dk = DestKey(str(ipaddress.ip_address(addr)), int(port))
                dests[dk] = DestSpec(dk, int(weight), Fwd.MASQ)
            h = name[2:]
            if not NftablesDataPlane._consistent(spec, dests, maps.get(f"d_{h}"),
                                                 rules.get(f"c_{h}", []), vjumps, h):
                spec = ServiceSpec(spec.key, spec.scheduler + BROKEN, spec.flags,
                                   spec.persistence_timeout, spec.persistence_granularity)
            table[spec.key] = ServiceEntry(spec, dests)
        return table

    @staticmethod
    def _consistent(spec: ServiceSpec, dests: dict[DestKey, DestSpec],
                    dmap: dict[str, Any] | None, rules: list[dict[str, Any]],
                    vjumps: set[tuple[str, str]], h: str) -> bool:
        if dmap is None:
            return False
        want = intervals(spec, list(dests.values()))
        have = []
        for elem in dmap.get("elem", []):
            k, v = elem
            lo, hi = (k["range"] if isinstance(k, dict) else (k, k))
            addr, port = v["concat"]
            have.append((int(lo), int(hi), DestKey(str(ipaddress.ip_address(addr)), int(port))))
        if sorted(have) != sorted(want):
            return False
        mod = want[-1][1] + 1 if want else 0
        if mod == 0:
            if rules:
                return False
        else:
            if len(rules) != 1 or f'"mod": {mod},' not in json.dumps(rules[0]):
                return False
        vname, vkey = _vmap_key(spec.key)
        return (vname, json.dumps(vkey, sort_keys=True) + "->" + f"c_{h}") in vjumps

    async def dump(self, services: Collection[ServiceKey] | None = None) -> Table:
        """The whole table, or only ``services`` (the table is still listed in one ``nft``
        call, fresh; only the requested services are decoded and checked)."""
        data = await self._ensure()
        return self._parse(data, None if services is None else set(services))

    async def dump_services(self) -> dict[ServiceKey, ServiceSpec]:
        """Every lvsd service and its settings, from the weight maps' comments (no checks of
        the dispatch objects: a full or scoped :meth:`dump` does those)."""
        data = await self._ensure()
        out: dict[ServiceKey, ServiceSpec] = {}
        for item in data.get("nftables", []):
            m = item.get("map")
            if m is not None and str(m.get("name", "")).startswith("w_"):
                spec = decode_spec(m.get("comment", ""))
                if spec is not None:
                    out[spec.key] = spec
        return out

    # --- writing ----------------------------------------------------------------------------

    @staticmethod
    def _existing(data: dict[str, Any]) -> tuple[set[str], set[tuple[str, str]]]:
        """Names of chains/maps in the table, and (vmap, key) elements present."""
        names: set[str] = set()
        elems: set[tuple[str, str]] = set()
        for item in data.get("nftables", []):
            for kind in ("map", "chain", "set"):
                if kind in item:
                    names.add(item[kind]["name"])
            if "map" in item and item["map"]["name"] in ("svc4", "svc6", "fwm4", "fwm6"):
                for k, _v in item["map"].get("elem", []):
                    elems.add((item["map"]["name"], json.dumps(k, sort_keys=True)))
        return names, elems

    def _delete_service(self, key: ServiceKey, names: set[str],
                        elems: set[tuple[str, str]]) -> list[str]:
        """Delete whatever exists of a service's objects (some may have been removed by hand)."""
        t = f"inet {self.table}"
        h = obj_id(key)
        vname, vkey = _vmap_key(key)
        lines = []
        if (vname, json.dumps(vkey, sort_keys=True)) in elems:
            lines.append(f"delete element {t} {vname} {{ {_vmap_elem(key)} }}")
        if f"c_{h}" in names:
            lines += [f"flush chain {t} c_{h}", f"delete chain {t} c_{h}"]
        for m in (f"d_{h}", f"w_{h}"):
            if m in names:
                lines.append(f"delete map {t} {m}")
        return lines

    def _create_service(self, spec: ServiceSpec, dests: Sequence[DestSpec]) -> list[str]:
        t = f"inet {self.table}"
        key = spec.key
        h = obj_id(key)
        fam, addrtype = ("ip", "ipv4_addr") if key.af == 4 else ("ip6", "ipv6_addr")
        lines = [
            f'add map {t} w_{h} {{ type {addrtype} . inet_service : mark; '
            f'comment "{encode_spec(spec)}"; }}',
            f"add map {t} d_{h} {{ typeof numgen inc mod 1 : {fam} daddr . th dport; "
            "flags interval; }",
            f"add chain {t} c_{h}",
        ]
        if dests:
            elems = ", ".join(f"{_elem_addr(d.key.addr, d.key.port)} : {d.weight}"
                              for d in sorted(dests, key=lambda d: d.key))
            lines.append(f"add element {t} w_{h} {{ {elems} }}")
        ivs = intervals(spec, dests)
        if ivs:
            elems = ", ".join(
                (f"{lo}-{hi}" if hi > lo else f"{lo}") + f" : {_elem_addr(dk.addr, dk.port)}"
                for lo, hi, dk in ivs)
            lines.append(f"add element {t} d_{h} {{ {elems} }}")
            mod = ivs[-1][1] + 1
            l4 = _PROTO_NAME.get(key.protocol, "{ tcp, udp, sctp }")
            lines.append(f"add rule {t} c_{h} meta l4proto {l4} dnat {fam} to "
                         f"{_hash_expr(spec, mod)} map @d_{h}")
        vname, _ = _vmap_key(key)
        lines.append(f"add element {t} {vname} {{ {_vmap_elem(key)} : jump c_{h} }}")
        return lines

    async def apply(self, op: Op) -> None:
        await self.apply_many([op])

    async def apply_many(self, ops: Sequence[Op]) -> None:
        if not ops:
            return
        data = await self._ensure()
        current = self._parse(data)
        nxt = to_mutable(current)
        for op in ops:
            if isinstance(op, AddService | EditService):
                why = self.refuse(op.spec)
                if why:
                    raise DataPlaneError(why)
                warn = self.warning(op.spec)
                if warn and warn not in self._warned:
                    self._warned.add(warn)
                    log.warning("%s", warn)
            elif isinstance(op, AddDest | EditDest):
                why = self.refuse(op.dest)
                if why:
                    raise DataPlaneError(why)
            apply_op(nxt, op)
        touched = dict.fromkeys(op_service(op) for op in ops)  # each once, in order
        names, elems = self._existing(data)
        lines: list[str] = []
        for key in touched:
            lines += self._delete_service(key, names, elems)
            if key in nxt:
                spec, dests = nxt[key]
                lines += self._create_service(spec, list(dests.values()))
        await self._run(["-f", "-"], "\n".join(lines) + "\n")
        self.transactions += 1

    async def stats(self) -> dict[tuple[ServiceKey, DestKey], DestStats]:
        """Active and inactive connections per destination, counted in conntrack (no traffic
        counters: :mod:`lvsd.dataplane.conntrack`); {} when the kernel shows no table."""
        table = await self.dump()
        lines = await asyncio.to_thread(conntrack.read_lines)
        return {} if lines is None else conntrack.count(lines, table)

    async def close(self) -> None:
        return None

    async def delete_table(self) -> None:
        """Remove the whole table (tests and ``lvs_flush_on_stop all`` cleanup)."""
        if await self._list() is not None:
            await self._run(["delete", "table", "inet", self.table])


def _vmap_key(key: ServiceKey) -> tuple[str, Any]:
    if key.fwmark:
        return (f"fwm{key.af}", key.fwmark)
    return (f"svc{key.af}", {"concat": [_PROTO_NAME.get(key.protocol, str(key.protocol)),
                                        key.addr, key.port]})


def _vmap_elem(key: ServiceKey) -> str:
    if key.fwmark:
        return str(key.fwmark)
    return f"{_PROTO_NAME.get(key.protocol, str(key.protocol))} . {key.addr} . {key.port}"

