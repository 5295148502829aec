#!/usr/bin/env python3
"""Benchmark: a full dump of a large kernel IPVS table by lvsd vs ``ipvsadm -Sn``, same table.

    .venv/bin/python bench/ipvs_dump.py [--services 2300] [--dests 37000] [--repeat 3]

Boots the throw-away IPVS VM (``lab/ipvs-vm``) and re-runs itself inside, where it:

1. programs N virtual / M real servers (NAT, wrr; the table of bench/ipvs_program.py) with
   ``ipvsadm -R``;
2. times ``IPVSDataPlane.dump()`` (every service, every destination): the first dump of a
   fresh process (the decode cache empty: what a start or a one-off read pays), and the
   repeated dump of a long-running process (what every sweep of the daemon pays);
3. times ``ipvsadm -Sn > /dev/null`` (the peer: process start included, as an operator runs it);
4. checks the dump equals a reference read of the same table: one unbatched dump request per
   service, every message through the generic attribute walk (``decode_dest_message``), no
   cache: the decoder's equality with the plain path, on this kernel.

Prints each figure and the ratio lvsd / ipvsadm (the goal is <= 1.0). ``--capture FILE`` also
stores the raw receive buffers of a small table's dump (the unit tests' fixture,
tests/unit/data/ipvs_dump_6.1.bin).

Times are under software emulation (TCG) on a shared CPU: several times real hardware; the
ratio against ipvsadm in the same run is the comparable figure.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

from ipvs_program import ipvsadm, make_config, restore_text  # noqa: E402

from lvsd.pool.planner import Planner  # noqa: E402
from lvsd.pool.table import ServiceEntry, ServiceKey, Table  # noqa: E402

FIRST_DUMP = r"""
import asyncio, json, sys, time
from lvsd.dataplane.ipvs import IPVSDataPlane
async def main():
    dp = IPVSDataPlane()
    await dp.open()
    t0 = time.perf_counter()
    table = await dp.dump()
    dt = time.perf_counter() - t0
    print(json.dumps([dt, len(table), sum(len(e.dests) for e in table.values())]))
asyncio.run(main())
"""


def reference_dump() -> Table:
    """The table read the plain way: one dump request per service, generic decoding."""
    from lvsd.dataplane import ipvs as m

    sock = m._GenlSocket(None)
    try:
        table: dict[ServiceKey, ServiceEntry] = {}
        for msg in sock.ipvs(m.CMD_GET_SERVICE, b"", dump=True):
            spec = m.decode_service(m.parse_attrs(
                m.parse_attrs(msg, m._NLMSGHDR.size + m._GENLHDR.size)[m.ATTR_SERVICE]))
            dests = {}
            for dm in sock.ipvs(m.CMD_GET_DEST, m._nla(m.ATTR_SERVICE,
                                                       m.service_key_attrs(spec.key)), True):
                got = m.decode_dest_message(dm, spec.key.af)
                assert got is not None
                dests[got[0].key] = got[0]
            table[spec.key] = ServiceEntry(spec, dests)
        return table
    finally:
        sock.close()


def capture(path: Path) -> None:
    """A small mixed table (IPv4/IPv6 services, tunnel and persistence options), dumped with
    every raw receive buffer written to ``path`` (length-prefixed), and its expected table."""
    from lvsd.dataplane import ipvs as m

    ipvsadm("-C")
    ipvsadm("-R", stdin="\n".join([
        "-A -t 192.0.2.10:80 -s wrr",
        "-a -t 192.0.2.10:80 -r 10.0.0.1:8080 -m -w 3 -x 100 -y 10",
        "-a -t 192.0.2.10:80 -r 10.0.0.2:8080 -m -w 0",
        "-a -t 192.0.2.10:80 -r 10.0.0.4:80 -i --tun-type gue --tun-port 6080 --tun-nocsum",
        "-A -t [fd00::10]:443 -s sh -b sh-port -p 60 -M 64",
        "-a -t [fd00::10]:443 -r [fd00::99]:443 -g -w 7",
        "-a -t [fd00::10]:443 -r [2001:db8::]:443 -g -w 2",
        "-A -u 192.0.2.11:53 -s rr",
        "-A -f 7 -s lc",
        "-a -f 7 -r 10.0.0.9:0 -g -w 1",
    ]) + "\n")
    sock = m._GenlSocket(None)
    bufs: list[bytes] = []
    raw = sock.sock

    class Tap:
        def __getattr__(self, name: str) -> object:
            return getattr(raw, name)

        def recv_into(self, buf: bytearray) -> int:
            n = raw.recv_into(buf)
            bufs.append(bytes(buf[:n]))
            return n

    sock.sock = Tap()  # type: ignore[assignment]
    dp = m.IPVSDataPlane()
    dp._sock = sock
    table, _ = dp._dump_sync(False)
    assert table == reference_dump()
    with path.open("wb") as f:
        for b in bufs:
            f.write(len(b).to_bytes(4, "little") + b)
    print(f"captured {len(bufs)} buffers, {sum(map(len, bufs))} bytes -> {path}")
    print(ipvsadm("-Sn"))
    ipvsadm("-C")


async def guest_part(args: argparse.Namespace) -> dict[str, object]:
    from lvsd.dataplane.ipvs import IPVSDataPlane

    if args.capture:
        capture(Path(args.capture))
    res: dict[str, object] = {}
    desired = Planner(make_config(args.services, args.dests)).plan({}, 0.0).table
    ipvsadm("-C")
    t0 = time.perf_counter()
    ipvsadm("-R", stdin=restore_text(desired))
    res["program_s"] = time.perf_counter() - t0
    firsts = []
    for _ in range(args.repeat):
        p = subprocess.run([sys.executable, "-c", FIRST_DUMP], capture_output=True, text=True,
                           check=True, env={**os.environ, "PYTHONPATH": str(REPO / "src")})
        dt, n_svc, n_dst = json.loads(p.stdout)
        firsts.append(dt)
    res["first_s"] = firsts
    res["entries"] = [n_svc, n_dst]
    dp = IPVSDataPlane()
    await dp.open()
    table = await dp.dump()  # fills the decode cache, as the daemon's previous sweep did
    gc.collect()
    gc.freeze()  # as the daemon does after its first reconcile
    steady = []
    n0 = dp.requests
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        table = await dp.dump()
        steady.append(time.perf_counter() - t0)
    res["requests"] = (dp.requests - n0) // args.repeat
    res["steady_s"] = steady
    peer = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        subprocess.run("ipvsadm -Sn > /dev/null", shell=True, check=True)
        peer.append(time.perf_counter() - t0)
    res["ipvsadm_s"] = peer
    if args.profile:
        import cProfile
        import io
        import pstats

        pr = cProfile.Profile()
        pr.enable()
        dp._dump_sync(False)
        pr.disable()
        s = io.StringIO()
        pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(14)
        print(s.getvalue())
    await dp.close()
    ref = reference_dump()
    res["equal_reference"] = ref == table == desired
    ipvsadm("-C")
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--services", type=int, default=2300)
    ap.add_argument("--dests", type=int, default=37000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--smp", type=int, default=1)
    ap.add_argument("--profile", action="store_true", help="cProfile one dump (guest)")
    ap.add_argument("--capture", help="store a small table's raw dump buffers in this file")
    ap.add_argument("--in-vm", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.in_vm:
        res = asyncio.run(guest_part(args))
        Path(os.environ["LVSD_VM_OUT"], "bench.json").write_text(json.dumps(res))
        return 0

    sys.path.insert(0, str(REPO / "tests" / "support"))  # the VM harness (not shipped)
    import ipvsvm

    why = ipvsvm.missing()
    if why:
        print(f"skipped: {why}")
        return 1
    with tempfile.TemporaryDirectory(prefix="lvsd-bench-") as out:
        argv = [sys.executable, str(Path(__file__).resolve()), "--in-vm", "--services",
                str(args.services), "--dests", str(args.dests), "--repeat", str(args.repeat)]
        if args.profile:
            argv.append("--profile")
        if args.capture:
            argv += ["--capture", str(Path(out, "capture.bin"))]
        t0 = time.perf_counter()
        vm = ipvsvm.run(argv, out=Path(out), cwd=REPO, smp=args.smp, timeout=1500)
        wall = time.perf_counter() - t0
        f = Path(out, "bench.json")
        if args.profile or args.capture:
            print(vm.output[-6000:])
        if vm.returncode != 0 or not f.is_file():
            print(f"VM run failed (rc {vm.returncode}):\n{vm.output[-3000:]}\n{vm.stderr[-2000:]}")
            return 1
        if args.capture:
            Path(args.capture).write_bytes(Path(out, "capture.bin").read_bytes())
        g = json.loads(f.read_text())
    med = statistics.median
    first, steady, peer = med(g["first_s"]), med(g["steady_s"]), med(g["ipvsadm_s"])
    print(f"== full IPVS dump, {g['entries'][0]} services / {g['entries'][1]} destinations "
          f"(kernel IPVS in the VM, qemu TCG, smp {args.smp}; VM wall {wall:.0f} s; "
          f"medians of {args.repeat})")
    print(f"  lvsd dump, fresh process   {first:.2f} s   ratio lvsd/ipvsadm {first / peer:.2f}")
    print(f"  lvsd dump, repeated        {steady:.2f} s   ratio lvsd/ipvsadm {steady / peer:.2f}"
          f"   ({g['requests']} netlink requests)")
    print(f"  ipvsadm -Sn > /dev/null    {peer:.2f} s   (peer)")
    print(f"  same table as the reference read (one request per service, generic decoder): "
          f"{g['equal_reference']}")
    return 0 if g["equal_reference"] else 1


if __name__ == "__main__":
    sys.exit(main())
