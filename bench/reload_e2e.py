#!/usr/bin/env python3
"""Benchmark: SIGHUP reload end to end, 1 % changed, real kernel IPVS: lvsd vs keepalived 2.2.7.

    .venv/bin/python bench/reload_e2e.py [--services 2300] [--dests 37000] [--smp 2]

Boots the throw-away IPVS VM (``lab/ipvs-vm``) and re-runs itself inside, where, for each
daemon in turn on an empty kernel table:

1. writes the keepalived.conf of bench/ipvs_program.py's table (N virtual servers, M real
   servers, NAT, wrr; no health checkers, so both daemons hold every real server) and starts
   the daemon on it: ``lvsd run --check-only --dataplane ipvs`` / ``keepalived -n -C``; waits
   until the kernel holds that table;
2. puts the 1 %-changed file in its place (a third of 1 % of the real servers reweighted, a
   third removed, a third added; 1 % of the virtual servers change scheduler), sends SIGHUP and
   starts the clock;
3. stops it when the kernel holds the new table (the changed services are read every 20 ms,
   then a full read confirms: an unchanged service touched on the way would show) and, for
   lvsd, ``/events`` has reported the reload applied (generation 2) - the status updated;
4. checks, for lvsd, that the kernel operations it issued (every ``reconcile`` event on
   ``/events`` after the signal lists its writes) are exactly the table's difference: none for
   an unchanged server. (``/status`` is not read: a 37,000-server snapshot costs seconds in
   the emulated VM, and the event stream carries the same counters' source.)

Prints both times and the ratio lvsd / keepalived (the goal is <= 1.0), and lvsd's split:
signal -> reload applied (load, checks, pool reload) and -> kernel writes done. Times are under
software emulation (TCG) on a shared CPU: several times real hardware; the ratio is the figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

from ipvs_program import ipvsadm, make_config  # noqa: E402

from lvsd.config.model import Config  # noqa: E402
from lvsd.pool.planner import Planner  # noqa: E402
from lvsd.pool.reconciler import diff  # noqa: E402
from lvsd.pool.table import (  # noqa: E402
    AddDest,
    AddService,
    DelDest,
    DelService,
    EditDest,
    EditService,
    ServiceKey,
    Table,
    describe,
)

STATUS = "127.0.0.1:9330"
POLL = 0.02


def conf_text(cfg: Config) -> str:
    """The keepalived.conf for ``cfg``'s virtual servers (no checkers: every server is up)."""
    out = []
    for vs in cfg.virtual_servers:
        out.append(f"virtual_server {vs.address} {vs.port} {{\n    lb_algo {vs.lb_algo}\n"
                   "    lb_kind NAT\n    protocol TCP\n")
        out += [f"    real_server {rs.address} {rs.port} {{\n        weight {rs.weight}\n    }}\n"
                for rs in vs.real_servers]
        out.append("}\n")
    return "".join(out)


def changed_keys(old: Table, new: Table) -> list[ServiceKey]:
    return sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))


async def wait_table(dp: object, want: Table, scoped: list[ServiceKey], deadline: float
                     ) -> float:
    """Poll until the kernel holds ``want``: the services in ``scoped`` every POLL seconds,
    then a full read to confirm (then full reads only). The clock at the matching read."""
    from lvsd.dataplane.ipvs import IPVSDataPlane

    assert isinstance(dp, IPVSDataPlane)
    sub = {k: want[k] for k in scoped if k in want}
    full = False
    while time.perf_counter() < deadline:
        t = time.perf_counter()
        if not full:
            if dict(await dp.dump(scoped)) == sub:
                full = True
                if dict(await dp.dump()) == dict(want):
                    return t
        elif dict(await dp.dump()) == dict(want):
            return t
        await asyncio.sleep(POLL)
    raise SystemExit("timed out waiting for the kernel table")


def wait_http(path: str, ok: Callable[[bytes], bool], proc: subprocess.Popen[bytes],
              deadline: float) -> None:
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"daemon exited ({proc.returncode}) before {path} answered")
        try:
            with urllib.request.urlopen(f"http://{STATUS}{path}", timeout=30) as r:
                if ok(r.read()):
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"timed out waiting for {path}")


class Events:
    """``/events`` read on a raw connection: every event, with the clock it arrived at."""

    def __init__(self) -> None:
        self.got: list[tuple[float, str, dict[str, object]]] = []
        self.since = 0.0  # events that came before are not counted
        self._task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()

    async def start(self) -> None:
        host, port = STATUS.split(":")
        r, w = await asyncio.open_connection(host, int(port))
        w.write(f"GET /events HTTP/1.1\r\nHost: {STATUS}\r\n"
                "Accept: text/event-stream\r\n\r\n".encode())
        await w.drain()
        self._task = asyncio.create_task(self._read(r))
        await asyncio.wait_for(self.ready.wait(), 300)

    async def _read(self, r: asyncio.StreamReader) -> None:
        buf = ""
        pat = re.compile(r"event: (\S+)\ndata: (.*)\n")
        while True:
            chunk = await r.read(1 << 20)
            if not chunk:
                return
            t = time.perf_counter()
            buf += chunk.decode(errors="replace")
            if ": lvsd events" in buf:
                self.ready.set()
            cut = buf.rfind("\n\n")
            if cut < 0:
                continue
            for m in pat.finditer(buf, 0, cut + 2):
                self.got.append((t, m.group(1), json.loads(m.group(2))))
            buf = buf[cut + 2:]

    def first(self, kind: str, **match: object) -> float | None:
        for t, k, data in self.got:
            if t >= self.since and k == kind and all(data.get(a) == v for a, v in match.items()):
                return t
        return None

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


async def run_lvsd(work: Path, old: Table, new: Table, new_text: str, res: dict[str, object],
                   dp: object) -> None:
    from lvsd.dataplane.ipvs import IPVSDataPlane

    assert isinstance(dp, IPVSDataPlane)
    conf = work / "lvsd.conf"
    lvsd = Path(sys.executable).with_name("lvsd")
    log = (work / "lvsd.log").open("wb")
    t0 = time.perf_counter()
    proc = subprocess.Popen([str(lvsd), "run", "-f", str(conf), "--check-only", "--dataplane",
                             "ipvs", "--status-listen", STATUS, "-p", "", "--sweep", "3600"],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_http("/healthz", lambda b: b.startswith(b"ok"), proc, t0 + 1200)
        res["lvsd_start_s"] = time.perf_counter() - t0
        await wait_table(dp, old, [], time.perf_counter() + 60)
        ev = Events()  # every reconcile that writes reports its operations here
        await ev.start()
        tmp = work / "lvsd.conf.new"
        tmp.write_text(new_text)
        os.replace(tmp, conf)
        t0 = ev.since = time.perf_counter()
        os.kill(proc.pid, signal.SIGHUP)
        t_kernel = await wait_table(dp, new, changed_keys(old, new), t0 + 1200)
        while ev.first("reload", generation=2) is None and time.perf_counter() < t0 + 600:
            await asyncio.sleep(POLL)
        t_reload = ev.first("reload", generation=2)
        assert t_reload is not None, "no reload event"
        # the reconcile's own report comes right after its last write
        while ev.first("reconcile") is None and time.perf_counter() < t0 + 600:
            await asyncio.sleep(POLL)
        await asyncio.sleep(2.0)  # a second reconcile writing again would show here
        ev.stop()
        res["lvsd_reload_s"] = max(t_kernel, t_reload) - t0
        res["lvsd_applied_s"] = t_reload - t0
        res["lvsd_reconciled_s"] = (ev.first("reconcile") or float("nan")) - t0
        res["lvsd_generation"] = 2
        issued = [str(op) for t, k, data in ev.got if k == "reconcile" and t >= t0
                  for op in data.get("ops", [])]  # type: ignore[attr-defined]
        want_ops = diff(new, old)
        res["lvsd_ops"] = len(issued)
        res["expected_ops"] = len(want_ops)
        res["ops_by_kind"] = {k.__name__: sum(isinstance(o, k) for o in want_ops) for k in
                              (AddService, EditService, DelService, AddDest, EditDest, DelDest)}
        res["lvsd_extra_ops"] = sorted(set(issued) - {describe(o) for o in want_ops})[:10]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


async def run_keepalived(work: Path, old: Table, new: Table, new_text: str,
                         res: dict[str, object], dp: object) -> None:
    conf = work / "keepalived.conf"
    log = (work / "keepalived.log").open("wb")
    t0 = time.perf_counter()
    proc = subprocess.Popen(["keepalived", "-n", "-l", "-C", "-f", str(conf),
                             "-p", str(work / "k.pid"), "-c", str(work / "kc.pid")],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        await wait_table(dp, old, [], t0 + 1200)
        res["keepalived_start_s"] = time.perf_counter() - t0
        tmp = work / "keepalived.conf.new"
        tmp.write_text(new_text)
        os.replace(tmp, conf)
        t0 = time.perf_counter()
        os.kill(proc.pid, signal.SIGHUP)
        t_kernel = await wait_table(dp, new, changed_keys(old, new), t0 + 1200)
        res["keepalived_reload_s"] = t_kernel - t0
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(300)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


async def guest_part(args: argparse.Namespace) -> dict[str, object]:
    from lvsd.dataplane.ipvs import IPVSDataPlane

    res: dict[str, object] = {}
    old_cfg = make_config(args.services, args.dests)
    new_cfg = make_config(args.services, args.dests, True)
    old = Planner(old_cfg).plan({}, 0.0).table
    new = Planner(new_cfg).plan({}, 0.0).table
    old_text, new_text = conf_text(old_cfg), conf_text(new_cfg)
    work = Path(tempfile.mkdtemp(prefix="reload-e2e-"))
    dp = IPVSDataPlane()
    await dp.open()
    for who, runner in (("lvsd", run_lvsd), ("keepalived", run_keepalived)):
        if who not in args.only:
            continue
        ipvsadm("-C")
        (work / f"{who}.conf").write_text(old_text)
        try:
            await runner(work, old, new, new_text, res, dp)
        finally:
            for line in (work / f"{who}.log").read_text(errors="replace").splitlines()[-15:]:
                print(f"  [{who}] {line}")
        ipvsadm("-C")
    await dp.close()
    res["changed_services"] = len(changed_keys(old, new))
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--services", type=int, default=2300)
    ap.add_argument("--dests", type=int, default=37000)
    ap.add_argument("--smp", type=int, default=2)
    ap.add_argument("--only", default="lvsd,keepalived", help="daemons to run (comma list)")
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
        t0 = time.perf_counter()
        vm = ipvsvm.run([sys.executable, str(Path(__file__).resolve()), "--in-vm", "--services",
                         str(args.services), "--dests", str(args.dests), "--only", args.only],
                        out=Path(out), cwd=REPO, smp=args.smp, mem_mb=2048, timeout=2400)
        wall = time.perf_counter() - t0
        f = Path(out, "bench.json")
        print(vm.output[-4000:])
        if vm.returncode != 0 or not f.is_file():
            print(f"VM run failed (rc {vm.returncode}):\n{vm.stderr[-2000:]}")
            return 1
        g = json.loads(f.read_text())
    print(f"== SIGHUP reload, 1 % changed, {args.services} virtual / {args.dests} real servers "
          f"({g['changed_services']} services changed; kernel IPVS in the VM, qemu TCG, smp "
          f"{args.smp}; VM wall {wall:.0f} s)")
    ok = True
    if "lvsd_reload_s" in g:
        print(f"  lvsd        start {g['lvsd_start_s']:.1f} s; reload {g['lvsd_reload_s']:.2f} s "
              f"(applied, status generation {g['lvsd_generation']}: {g['lvsd_applied_s']:.2f} s;"
              f" reconcile event {g['lvsd_reconciled_s']:.2f} s)")
        print(f"              kernel operations {g['lvsd_ops']} = the table's difference "
              f"{g['expected_ops']} {g['ops_by_kind']}; for unchanged servers: "
              f"{len(g['lvsd_extra_ops'])} {g['lvsd_extra_ops']}")
        ok = g["lvsd_ops"] == g["expected_ops"] and not g["lvsd_extra_ops"]
    if "keepalived_reload_s" in g:
        print(f"  keepalived  start {g['keepalived_start_s']:.1f} s; reload "
              f"{g['keepalived_reload_s']:.2f} s (peer: 2.2.7, same table)")
    if "lvsd_reload_s" in g and "keepalived_reload_s" in g:
        print(f"  ratio lvsd/keepalived {g['lvsd_reload_s'] / g['keepalived_reload_s']:.2f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
