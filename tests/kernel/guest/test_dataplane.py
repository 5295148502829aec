"""The IPVS data plane against the real kernel: every knob round-trips, ipvsadm agrees.

Runs inside the VM. Each test programs the kernel through :class:`IPVSDataPlane`, reads it back
with ``dump()`` (must equal what was asked) and with Debian's ``ipvsadm -Sn`` (an independent
implementation of the same netlink protocol: it must show the same settings).
"""

from __future__ import annotations

import pathlib

import pytest
from vmutil import ipvsadm, saved

from lvsd.dataplane.base import DataPlaneError
from lvsd.dataplane.ipvs import SCHEDULERS, IPVSDataPlane
from lvsd.pool.table import (
    AddDest,
    AddService,
    DelDest,
    DelService,
    DestKey,
    DestSpec,
    EditDest,
    EditService,
    Fwd,
    Op,
    Proto,
    ServiceKey,
    ServiceSpec,
)

TCP, UDP, SCTP = Proto.TCP, Proto.UDP, Proto.SCTP


def kernel_schedulers() -> list[str]:
    """Schedulers loaded in this kernel (the VM's init loads every one it ships; 6.1 has all
    but twos)."""
    return sorted(s for s in SCHEDULERS if pathlib.Path(f"/sys/module/ip_vs_{s}").exists())


async def test_every_scheduler_round_trips(ipvs: IPVSDataPlane) -> None:
    scheds = kernel_schedulers()
    assert {"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "mh", "fo",
            "ovf"} <= set(scheds)
    specs = [ServiceSpec(ServiceKey.for_addr(f"10.1.0.{i + 1}", 80, TCP), s)
             for i, s in enumerate(scheds)]
    await ipvs.apply_many([AddService(s) for s in specs])
    table = await ipvs.dump()
    assert {k: e.spec for k, e in table.items()} == {s.key: s for s in specs}
    lines = saved()
    for i, s in enumerate(scheds):
        assert f"-A -t 10.1.0.{i + 1}:80 -s {s}" in lines


async def test_flags_persistence_fwmark_ipv6_round_trip(ipvs: IPVSDataPlane) -> None:
    v4 = ServiceKey.for_addr("192.0.2.10", 80, TCP)
    v6 = ServiceKey.for_addr("fd00::10", 443, TCP)
    udp = ServiceKey.for_addr("192.0.2.10", 53, UDP)
    sctp = ServiceKey.for_addr("192.0.2.11", 3868, SCTP)
    fw4 = ServiceKey.for_fwmark(7, 4)
    fw6 = ServiceKey.for_fwmark(8, 6)
    specs = [
        ServiceSpec(v4, "sh", frozenset({"sh-port", "sh-fallback"}), 600, "255.255.255.0"),
        ServiceSpec(v6, "mh", frozenset({"mh-port", "mh-fallback", "ops"}), 30, "64"),
        ServiceSpec(udp, "rr", frozenset({"ops"})),
        ServiceSpec(sctp, "wlc", frozenset(), 120),
        ServiceSpec(fw4, "wrr"),
        ServiceSpec(fw6, "lc", frozenset(), 100, "48"),
    ]
    await ipvs.apply_many([AddService(s) for s in specs])
    table = await ipvs.dump()
    assert {k: e.spec for k, e in table.items()} == {s.key: s for s in specs}
    assert saved() == sorted([
        "-A -t 192.0.2.10:80 -s sh -p 600 -M 255.255.255.0 -b sh-fallback,sh-port",
        "-A -t [fd00::10]:443 -s mh -p 30 -M 64 -o -b mh-fallback,mh-port",
        "-A -u 192.0.2.10:53 -s rr -o",
        "-A --sctp-service 192.0.2.11:3868 -s wlc -p 120",
        "-A -f 7 -s wrr",
        "-A -f 8 -6 -s lc -p 100 -M 48",
    ])
    # "persistent" alone means ipvsadm's default timeout; the dump is canonical (no flag name)
    await ipvs.apply(EditService(ServiceSpec(udp, "rr", frozenset({"persistent"}))))
    assert (await ipvs.dump())[udp].spec == ServiceSpec(udp, "rr", frozenset(), 300)
    # and a persistence removed on edit is gone
    await ipvs.apply(EditService(ServiceSpec(v4, "sh", frozenset({"sh-port"}))))
    assert (await ipvs.dump())[v4].spec == ServiceSpec(v4, "sh", frozenset({"sh-port"}))


async def test_forwarding_methods_thresholds_tunnels(ipvs: IPVSDataPlane) -> None:
    v4 = ServiceKey.for_addr("192.0.2.10", 80, TCP)
    v6 = ServiceKey.for_addr("fd00::10", 80, TCP)
    dests4 = [
        DestSpec(DestKey("10.0.0.1", 8080), 3, Fwd.MASQ, 100, 10),
        DestSpec(DestKey("10.0.0.2", 80), 0, Fwd.DROUTE),
        DestSpec(DestKey("10.0.0.3", 80), 2, Fwd.TUNNEL),
        DestSpec(DestKey("10.0.0.4", 80), 1, Fwd.TUNNEL, tun_type=1, tun_port=6080, tun_flags=2),
        DestSpec(DestKey("10.0.0.5", 80), 1, Fwd.TUNNEL, tun_type=2, tun_flags=1),
        DestSpec(DestKey("fd00::99", 80), 7, Fwd.TUNNEL),  # IPv6 server in an IPv4 service
    ]
    dests6 = [DestSpec(DestKey("fd00::1", 80), 65535, Fwd.MASQ)]
    ops: list[Op] = [AddService(ServiceSpec(v4, "wrr")), AddService(ServiceSpec(v6, "rr"))]
    ops += [AddDest(v4, d) for d in dests4] + [AddDest(v6, d) for d in dests6]
    await ipvs.apply_many(ops)
    table = await ipvs.dump()
    assert dict(table[v4].dests) == {d.key: d for d in dests4}
    assert dict(table[v6].dests) == {d.key: d for d in dests6}
    lines = saved()
    for expect in [
        "-a -t 192.0.2.10:80 -r 10.0.0.1:8080 -m -w 3",  # -S does not print thresholds
        "-a -t 192.0.2.10:80 -r 10.0.0.2:80 -g -w 0",
        "-a -t 192.0.2.10:80 -r 10.0.0.3:80 -i -w 2 --tun-type ipip",
        "-a -t 192.0.2.10:80 -r 10.0.0.4:80 -i -w 1 --tun-type gue --tun-port 6080 --tun-remcsum",
        "-a -t 192.0.2.10:80 -r 10.0.0.5:80 -i -w 1 --tun-type gre --tun-csum",
        "-a -t [fd00::10]:80 -r [fd00::1]:80 -m -w 65535",
    ]:
        assert expect in lines, (expect, lines)
    thresholds = ipvsadm("-Ln", "--thresholds").splitlines()
    assert any(ln.split()[1:4] == ["10.0.0.1:8080", "100", "10"] for ln in thresholds
               if ln.strip().startswith("->") and len(ln.split()) > 3), thresholds
    # edit changes weight and method in place (no delete: "set", not pyroute2's "update")
    changed = DestSpec(DestKey("10.0.0.1", 8080), 0, Fwd.MASQ)
    await ipvs.apply(EditDest(v4, changed))
    assert (await ipvs.dump())[v4].dests[changed.key] == changed
    await ipvs.apply_many([DelDest(v4, DestKey("10.0.0.2", 80)), DelService(v6)])
    table = await ipvs.dump()
    assert DestKey("10.0.0.2", 80) not in table[v4].dests and v6 not in table


async def test_dump_reads_what_ipvsadm_made(ipvs: IPVSDataPlane) -> None:
    """Entries lvsd does not own are read exactly (the reconciler must see them to leave them)."""
    ipvsadm("-A", "-t", "198.51.100.1:25", "-s", "lblcr", "-p", "60", "-M", "255.255.0.0")
    ipvsadm("-a", "-t", "198.51.100.1:25", "-r", "10.9.0.1:2525", "-m", "-w", "4", "-x", "9")
    ipvsadm("-A", "-f", "42", "-6", "-s", "sh", "-b", "sh-port")
    table = await ipvs.dump()
    k = ServiceKey.for_addr("198.51.100.1", 25, TCP)
    assert table[k].spec == ServiceSpec(k, "lblcr", frozenset(), 60, "255.255.0.0")
    assert dict(table[k].dests) == {
        DestKey("10.9.0.1", 2525): DestSpec(DestKey("10.9.0.1", 2525), 4, Fwd.MASQ, 9, 0)}
    f = ServiceKey.for_fwmark(42, 6)
    assert table[f].spec == ServiceSpec(f, "sh", frozenset({"sh-port"}))


async def test_kernel_errors_are_clear_and_classified(ipvs: IPVSDataPlane) -> None:
    k = ServiceKey.for_addr("192.0.2.10", 80, TCP)
    await ipvs.apply(AddService(ServiceSpec(k, "rr")))
    cases: list[tuple[Op, str]] = [
        (AddService(ServiceSpec(k, "rr")), "already exists (EEXIST)"),
        (AddDest(ServiceKey.for_addr("192.0.2.99", 80, TCP), DestSpec(DestKey("10.0.0.1", 80))),
         "service does not exist in the kernel (ESRCH)"),
        (EditDest(k, DestSpec(DestKey("10.0.0.9", 80))),
         "destination does not exist in the kernel (ENOENT)"),
        (DelService(ServiceKey.for_addr("192.0.2.98", 80, TCP)),
         "service does not exist in the kernel (ESRCH)"),
    ]
    if "twos" not in kernel_schedulers():
        cases.append((AddService(ServiceSpec(ServiceKey.for_addr("192.0.2.12", 80, TCP), "twos")),
                      "scheduler 'twos' is not available in this kernel"))
    for op, text in cases:
        with pytest.raises(DataPlaneError) as ei:
            await ipvs.apply(op)
        msg = str(ei.value)
        assert text in msg, msg
        assert msg.startswith("IPVS: ") and "\n" not in msg
        assert not ei.value.transient
    # a lower threshold above the upper one is refused before it reaches the kernel...
    bad = DestSpec(DestKey("10.0.0.1", 80), 1, Fwd.MASQ, 0, 5)
    assert "lower threshold" in (ipvs.refuse(bad) or "")
    # ...and the kernel agrees (ERANGE) if it is sent anyway
    with pytest.raises(DataPlaneError, match="ERANGE"):
        await ipvs.apply(AddDest(k, bad))
    # the socket is still usable after errors
    await ipvs.apply(AddDest(k, DestSpec(DestKey("10.0.0.1", 80))))
    assert DestKey("10.0.0.1", 80) in (await ipvs.dump())[k].dests


async def test_apply_many_keeps_order(ipvs: IPVSDataPlane) -> None:
    """600 operations with dependencies (service before dests, dest edits after adds)."""
    keys = [ServiceKey.for_addr(f"10.2.{i // 250}.{i % 250 + 1}", 80, TCP) for i in range(50)]
    ops: list[Op] = [AddService(ServiceSpec(k, "wrr")) for k in keys]
    for k in keys:
        ops += [AddDest(k, DestSpec(DestKey(f"10.3.0.{j + 1}", 80), j + 1)) for j in range(5)]
    for k in keys:
        ops += [EditDest(k, DestSpec(DestKey("10.3.0.1", 80), 0))]
        ops += [DelDest(k, DestKey("10.3.0.5", 80))]
    ops += [EditService(ServiceSpec(k, "rr")) for k in keys[:10]]
    ops += [DelService(k) for k in keys[40:]]
    ops += [AddService(ServiceSpec(k, "sh")) for k in keys[45:]]
    before = ipvs.requests
    await ipvs.apply_many(ops)
    assert ipvs.requests - before == len(ops)
    table = await ipvs.dump()
    assert set(table) == set(keys[:40]) | set(keys[45:])
    for k in keys[:40]:
        e = table[k]
        assert e.spec.scheduler == ("rr" if k in keys[:10] else "wrr")
        assert {d.key.addr: d.weight for d in e.dests.values()} == {
            "10.3.0.1": 0, "10.3.0.2": 2, "10.3.0.3": 3, "10.3.0.4": 4}
    for k in keys[45:]:
        assert table[k].spec.scheduler == "sh" and not table[k].dests


async def test_stats_count_connections(ipvs: IPVSDataPlane) -> None:
    k = ServiceKey.for_addr("192.0.2.10", 80, TCP)
    await ipvs.apply_many([AddService(ServiceSpec(k, "rr")),
                           AddDest(k, DestSpec(DestKey("10.0.0.1", 80)))])
    st = await ipvs.stats()
    assert set(st) == {(k, DestKey("10.0.0.1", 80))}
    assert st[(k, DestKey("10.0.0.1", 80))].active_conns == 0


async def test_the_kernel_layout_takes_the_fast_decoder(ipvs: IPVSDataPlane) -> None:
    """Dumps of this kernel are decoded by the one-struct path, and it agrees with the generic
    attribute walk on every field (IPv4, IPv6, tunnel options)."""
    from lvsd.dataplane import ipvs as m

    k = ServiceKey.for_addr("192.0.2.10", 80, TCP)
    dests = [DestSpec(DestKey("10.0.0.1", 8080), 3, Fwd.MASQ, 100, 10),
             DestSpec(DestKey("10.0.0.4", 80), 1, Fwd.TUNNEL, tun_type=1, tun_port=6080,
                      tun_flags=2),
             DestSpec(DestKey("fd00::99", 80), 7, Fwd.TUNNEL, tun_type=2, tun_flags=1)]
    await ipvs.apply_many([AddService(ServiceSpec(k, "wrr"))] + [AddDest(k, d) for d in dests])
    sock = ipvs._connect()
    msgs = sock.ipvs(m.CMD_GET_DEST, m._nla(m.ATTR_SERVICE, m.service_key_attrs(k)), dump=True)
    assert len(msgs) == 3
    got = []
    for msg in msgs:
        fast = m.decode_dest_fast(msg)
        idx = m._dest_index(msg)
        assert fast is not None and idx is not None
        assert fast == m.decode_dest(msg, idx, 4)
        got.append(fast)
    assert sorted(got, key=lambda d: d.key) == sorted(dests, key=lambda d: d.key)
