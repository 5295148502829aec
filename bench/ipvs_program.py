#!/usr/bin/env python3
"""Benchmark: program a large table into real kernel IPVS, then a 1% reload; ipvsadm as peer.

    .venv/bin/python bench/ipvs_program.py [--services 2300] [--dests 37000] [--smp 1]

On the host it first times the planner and the diff alone (pure Python, this machine), then
boots the throw-away IPVS VM (``lab/ipvs-vm``) and re-runs itself inside, where it:

1. cold-programs N virtual servers / M real servers (NAT, wrr) through the planner ->
   reconciler -> ``IPVSDataPlane`` chain: operations issued and wall time;
2. reloads a config in which 1% of the real servers changed (a third reweighted, a third
   removed, a third added) and 1% of the virtual servers changed scheduler: operations issued
   and wall time (keepalived's release notes give 0.24 s for such a reload on real hardware):
   a change-triggered reconcile, so it reads fresh only the services that changed (plus the
   service list), then a sweep (full read) for comparison;
3. runs the peer in the same VM: ``ipvsadm -C; ipvsadm -R`` restoring the same full table, and
   ``ipvsadm -R`` of the same reload commands; prints the ratios lvsd / ipvsadm;
4. checks both ways produced the same kernel table (``ipvsadm -Sn``).

The VM runs under software emulation (TCG) on a shared CPU: absolute times are several times
what real hardware gives; the ratios against ipvsadm in the same run are the comparable figure.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import ipaddress
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from lvsd.config.model import (  # noqa: E402
    NOPOS,
    Config,
    LbKind,
    Protocol,
    RealServer,
    VirtualServer,
)
from lvsd.pool.planner import Planner  # noqa: E402
from lvsd.pool.reconciler import Reconciler, diff  # noqa: E402
from lvsd.pool.table import (  # noqa: E402
    AddDest,
    AddService,
    DelDest,
    DelService,
    EditDest,
    EditService,
    Op,
    Table,
)


def make_config(n_vs: int, n_rs: int, changed: bool = False) -> Config:
    """n_vs TCP virtual servers 10.100.x.y:80 with n_rs real servers spread evenly.

    ``changed``: 1% of real servers changed (1/3 reweighted, 1/3 removed, 1/3 new) and 1% of
    virtual servers switched from wrr to wlc.
    """
    per, extra = divmod(n_rs, n_vs)
    vss = []
    rs_index = 0
    n_change = max(3, n_rs // 100)
    step = max(1, n_rs // n_change)
    vs_step = max(1, n_vs // max(1, n_vs // 100))
    for v in range(n_vs):
        vip = str(ipaddress.IPv4Address("10.100.0.1") + v)
        servers = []
        for _ in range(per + (1 if v < extra else 0)):
            addr = str(ipaddress.IPv4Address("10.128.0.1") + rs_index)
            weight = 1 + rs_index % 5
            kind = (rs_index // step) % 3 if rs_index % step == 0 else None
            rs_index += 1
            if changed and kind == 0:
                weight += 10  # reweighted
            elif changed and kind == 1:
                continue  # removed
            servers.append(RealServer(addr, 8080, weight=weight, lb_kind=LbKind.NAT))
            if changed and kind == 2:  # a new server next to it
                new = str(ipaddress.IPv4Address("10.192.0.1") + rs_index)
                servers.append(RealServer(new, 8080, weight=1, lb_kind=LbKind.NAT))
        algo = "wlc" if changed and v % vs_step == 0 else "wrr"
        vss.append(VirtualServer(pos=NOPOS, address=vip, port=80, protocol=Protocol.TCP,
                                 lb_algo=algo, lb_kind=LbKind.NAT, real_servers=tuple(servers)))
    return Config(source="bench", config_id="2" if changed else "1",
                  virtual_servers=tuple(vss))


def count(ops: list[Op] | tuple[Op, ...]) -> str:
    kinds = [AddService, EditService, DelService, AddDest, EditDest, DelDest]
    parts = [f"{k.__name__}={sum(isinstance(o, k) for o in ops)}" for k in kinds]
    return f"{len(ops)} ops (" + " ".join(p for p in parts if not p.endswith("=0")) + ")"


def restore_text(table: Table) -> str:
    lines = []
    for key in sorted(table):
        e = table[key]
        lines.append(f"-A -t {key.addr}:{key.port} -s {e.spec.scheduler}")
        for d in sorted(e.dests):
            lines.append(f"-a -t {key.addr}:{key.port} -r {d} -m -w {e.dests[d].weight}")
    return "\n".join(lines) + "\n"


def ops_text(ops: list[Op] | tuple[Op, ...]) -> str:
    """The same operations as ipvsadm -R commands (what a per-op tool would issue)."""
    out = []
    for op in ops:
        match op:
            case AddService(spec) | EditService(spec):
                flag = "-A" if isinstance(op, AddService) else "-E"
                out.append(f"{flag} -t {spec.key.addr}:{spec.key.port} -s {spec.scheduler}")
            case DelService(key):
                out.append(f"-D -t {key.addr}:{key.port}")
            case AddDest(svc, d) | EditDest(svc, d):
                flag = "-a" if isinstance(op, AddDest) else "-e"
                out.append(f"{flag} -t {svc.addr}:{svc.port} -r {d.key} -m -w {d.weight}")
            case DelDest(svc, k):
                out.append(f"-d -t {svc.addr}:{svc.port} -r {k}")
    return "\n".join(out) + "\n"


def ipvsadm(*args: str, stdin: str | None = None) -> str:
    p = subprocess.run(["ipvsadm", *args], input=stdin, capture_output=True, text=True,
                       timeout=900, check=False)
    if p.returncode != 0:
        raise SystemExit(f"ipvsadm {' '.join(args)} failed: {p.stderr.strip()[:500]}")
    return p.stdout


def host_part(args: argparse.Namespace) -> dict[str, float | str]:
    t0 = time.perf_counter()
    old, new = make_config(args.services, args.dests), make_config(args.services, args.dests,
                                                                   True)
    t1 = time.perf_counter()
    p = Planner(old)
    desired = p.plan({}, 0.0).table
    t2 = time.perf_counter()
    cold = diff(desired, {})
    t3 = time.perf_counter()
    p.reload(new)
    desired2 = p.plan({}, 1.0).table
    t4 = time.perf_counter()
    reload_ops = diff(desired2, desired)
    t5 = time.perf_counter()
    return {"config_build_s": t1 - t0, "plan_s": t2 - t1, "diff_cold_s": t3 - t2,
            "plan_reload_s": t4 - t3, "diff_reload_s": t5 - t4,
            "cold_ops": count(cold), "reload_ops": count(reload_ops)}


async def guest_part(args: argparse.Namespace) -> dict[str, float | str | bool]:
    from lvsd.dataplane.ipvs import IPVSDataPlane

    ipvsadm("-C")
    res: dict[str, float | str | bool] = {}
    planner = Planner(make_config(args.services, args.dests))
    desired = planner.plan({}, 0.0).table
    dp = IPVSDataPlane()
    await dp.open()
    rec = Reconciler(dp)
    rec.set_desired(desired)
    t0 = time.perf_counter()
    r = await rec.start()
    res["lvsd_cold_s"] = time.perf_counter() - t0
    assert r.ok, r.failed[:3]
    res["lvsd_cold_ops"] = count(r.ops)
    gc.collect()
    gc.freeze()  # as the daemon does after its first reconcile
    n0 = dp.requests
    t0 = time.perf_counter()
    await dp.dump()
    res["lvsd_full_dump_s"] = time.perf_counter() - t0
    res["lvsd_full_dump_requests"] = str(dp.requests - n0)

    new_config = make_config(args.services, args.dests, True)
    t0 = time.perf_counter()
    planner.reload(new_config)
    desired2 = planner.plan({}, 1.0).table
    res["lvsd_reload_plan_s"] = time.perf_counter() - t0
    rec.set_desired(desired2)
    n0 = dp.requests
    t0 = time.perf_counter()
    r2 = await rec.reconcile("reload")
    res["lvsd_reload_s"] = time.perf_counter() - t0
    assert r2.ok, r2.failed[:3]
    res["lvsd_reload_ops"] = count(r2.ops)
    res["lvsd_reload_requests"] = str(dp.requests - n0)
    res["lvsd_reload_read"] = rec.status.last_read  # "scoped N": N services read fresh
    t0 = time.perf_counter()
    r3 = await rec.reconcile("sweep")
    res["lvsd_sweep_s"] = time.perf_counter() - t0
    assert r3.ok and not r3.ops
    # the reload's writes alone (without the dump that precedes them): replay on the old table
    lvsd_table = sorted(ipvsadm("-Sn").splitlines())
    ipvsadm("-C")
    await dp.apply_many(diff(desired, {}))
    t0 = time.perf_counter()
    await dp.apply_many(list(r2.ops))
    res["lvsd_reload_apply_only_s"] = time.perf_counter() - t0
    await dp.close()

    # the peer: ipvsadm restoring the same table, then the same reload commands
    ipvsadm("-C")
    text = restore_text(desired)
    t0 = time.perf_counter()
    ipvsadm("-R", stdin=text)
    res["ipvsadm_cold_s"] = time.perf_counter() - t0
    rtext = ops_text(r2.ops)
    t0 = time.perf_counter()
    ipvsadm("-R", stdin=rtext)
    res["ipvsadm_reload_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    peer_table = sorted(ipvsadm("-Sn").splitlines())
    res["ipvsadm_dump_s"] = time.perf_counter() - t0
    res["same_table"] = peer_table == lvsd_table
    res["kernel_lines"] = str(len(lvsd_table))
    ipvsadm("-C")
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--services", type=int, default=2300)
    ap.add_argument("--dests", type=int, default=37000)
    ap.add_argument("--smp", type=int, default=1)
    ap.add_argument("--in-vm", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.in_vm:
        res = asyncio.run(guest_part(args))
        Path(os.environ["LVSD_VM_OUT"], "bench.json").write_text(json.dumps(res))
        return 0

    print(f"== {args.services} virtual servers / {args.dests} real servers")
    host = host_part(args)
    print("host (this machine, pure Python):")
    print(f"  planner, cold      {host['plan_s']:.3f} s")
    print(f"  diff, cold         {host['diff_cold_s']:.3f} s  -> {host['cold_ops']}")
    print(f"  planner, reload    {host['plan_reload_s']:.3f} s")
    print(f"  diff, reload       {host['diff_reload_s']:.3f} s  -> {host['reload_ops']}")

    sys.path.insert(0, str(REPO / "tests" / "support"))  # the VM harness (not shipped)
    import ipvsvm

    why = ipvsvm.missing()
    if why:
        print(f"kernel part skipped: {why}")
        return 1
    with tempfile.TemporaryDirectory(prefix="lvsd-bench-") as out:
        t0 = time.perf_counter()
        vm = ipvsvm.run([sys.executable, str(Path(__file__).resolve()), "--in-vm",
                         "--services", str(args.services), "--dests", str(args.dests)],
                        out=Path(out), cwd=REPO, smp=args.smp, timeout=1500)
        wall = time.perf_counter() - t0
        f = Path(out, "bench.json")
        if vm.returncode != 0 or not f.is_file():
            print(f"VM run failed (rc {vm.returncode}):\n{vm.output[-3000:]}\n{vm.stderr[-2000:]}")
            return 1
        g = json.loads(f.read_text())
    print(f"kernel IPVS in the VM (qemu TCG, smp {args.smp}; VM wall {wall:.1f} s):")
    print(f"  lvsd cold program  {g['lvsd_cold_s']:.2f} s  {g['lvsd_cold_ops']}")
    print(f"  ipvsadm -R (peer)  {g['ipvsadm_cold_s']:.2f} s  same table   "
          f"ratio lvsd/ipvsadm {g['lvsd_cold_s'] / g['ipvsadm_cold_s']:.2f}")
    print(f"  lvsd full dump     {g['lvsd_full_dump_s']:.2f} s  "
          f"({g['lvsd_full_dump_requests']} netlink requests)   ipvsadm -Sn "
          f"{g['ipvsadm_dump_s']:.2f} s   ratio {g['lvsd_full_dump_s'] / g['ipvsadm_dump_s']:.2f}")
    print(f"  lvsd 1% reload     {g['lvsd_reload_s']:.2f} s  {g['lvsd_reload_ops']} "
          f"(read + diff + apply; {g['lvsd_reload_requests']} netlink requests; read "
          f"{g['lvsd_reload_read']} services + the service list)")
    print(f"    of which apply   {g['lvsd_reload_apply_only_s']:.3f} s")
    print(f"    planner before   {g['lvsd_reload_plan_s']:.2f} s  (not in the figure above; "
          f"gc.freeze() after start, as the daemon)")
    print(f"  ipvsadm -R reload  {g['ipvsadm_reload_s']:.3f} s  (same ops)   ratio lvsd "
          f"apply/ipvsadm {g['lvsd_reload_apply_only_s'] / g['ipvsadm_reload_s']:.2f}, "
          f"whole reconcile/ipvsadm {g['lvsd_reload_s'] / g['ipvsadm_reload_s']:.2f}")
    print(f"  lvsd sweep         {g['lvsd_sweep_s']:.2f} s  (full read + diff, nothing to do; "
          f"the old per-change cost)")
    print(f"  kernel table identical both ways: {g['same_table']} ({g['kernel_lines']} lines)")
    print("  (keepalived release notes: 0.24 s for such a reload, on real hardware)")
    return 0 if g["same_table"] else 1


if __name__ == "__main__":
    sys.exit(main())
