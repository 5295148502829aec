#!/usr/bin/env python3
"""Benchmark: established connections surviving a director failover and the failback, with
lvsd's connection sync, without it, and with keepalived 2.2.7's ``lvs_sync_daemon``.

    .venv/bin/python bench/conn_sync.py [--conns 50] [--during 10] [--variants ...]

Boots the throw-away IPVS VM (``lab/ipvs-vm``) and re-runs itself inside (``--in-vm``), where
each variant gets the lab of ``tests/kernel/guest/test_conn_sync.py`` (``tests/support/
connsync.py``: two directors as network namespaces on real kernel IPVS, DR and NAT echo servers,
a client holding long-lived connections that send a line every 100 ms), in the same run:

* ``lvsd``: lvsd with ``lvs_sync_daemon`` (its default mode: a backup daemon on both, a master
  one on the master);
* ``lvsd-keepalived-mode``: lvsd with ``lvs_sync_daemon_mode keepalived``;
* ``lvsd-nosync``: lvsd without ``lvs_sync_daemon``;
* ``keepalived``: keepalived 2.2.7 on both directors with the same file and its
  ``lvs_sync_daemon``.

Per variant: N connections through d1 (the master); the time until d2's kernel table holds
every one of them (sync variants); SIGKILL of d1's director process (lvsd, or every keepalived
process): how many connections go on through d2; M more connections opened through d2 during
the failover, and whether d1's kernel (still running, its director process dead) learns them;
d1's director started again, preempting: how many of the M were missing from d1's table when it
became master, the time from then until its table held every one of them, and how many of the
N + M go on through d1.

What decides the failback: in lvsd's default mode d1's backup daemon never stopped, so its
table is complete before its director even restarts. With keepalived's switching the old
master ran only a master daemon; it learns the connections opened meanwhile only after its
restart starts a backup daemon, from the new master's periodic re-sends (every
``sync_period`` packets of a connection), and keepalived preempts about a master-down interval
after its start. lvsd's own start is slow in the emulated VM (tens of seconds), which leaves
time for that re-send: the ``lvsd-keepalived-mode`` row then shows no loss although it switches
as keepalived does; ``old_master_learns_during`` is the column that tells the modes apart.

Under software emulation on a shared CPU absolute times are several times real hardware's; the
connection counts and the comparison between variants of the same run are the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "tests" / "support"))  # the VM harness and the lab (not shipped)

VARIANTS = ("lvsd", "lvsd-keepalived-mode", "lvsd-nosync", "keepalived")


def run_variant(variant: str, n: int, m: int) -> dict[str, str]:
    from connsync import DIRECTORS, SyncLab, wait_for

    kind = "keepalived" if variant == "keepalived" else "lvsd"
    sync = variant != "lvsd-nosync"
    out: dict[str, str] = {"variant": variant}
    lab = SyncLab(tag=f"lt-bsync{VARIANTS.index(variant)}")
    try:
        lab.build()
        client = lab.client
        assert client is not None
        lab.write_config(sync, "keepalived" if variant == "lvsd-keepalived-mode" else "both")
        for d in DIRECTORS:
            lab.start(d, kind)
        if not wait_for(lambda: lab.state("d1") == "MASTER" and lab.state("d2") != "MASTER",
                        120):
            out["error"] = "d1 never master"
            return out
        held = client.open(n)
        mark = client.marks(held)
        t0 = time.monotonic()
        wait_for(lambda: client.progressed(held, mark))
        ports = {c.local for c in held}
        if sync:
            ok = wait_for(lambda: ports <= lab.kernel_conns("d2"), 120)
            out["sync_to_backup_s"] = f"{time.monotonic() - t0:.1f}" if ok else "never"
        else:
            out["sync_to_backup_s"] = "-"
        # master kill
        lab.kill("d1")
        wait_for(lambda: lab.state("d2") == "MASTER", 60)
        wait_for(lambda: lab.routed_via("d2"), 60)
        mark = client.marks(held)
        wait_for(lambda: client.progressed(held, mark), 30)
        kept = [c for c in held if c.error is None and c.received > mark[id(c)]]
        out["kill_kept"] = f"{len(kept)}/{n}"
        # connections opened during the failover
        during = client.open(m)
        dmark = client.marks(during)
        wait_for(lambda: client.progressed(during, dmark), 30)
        dports = {c.local for c in during}
        # d1's kernel (its director process dead) while d2 is master: does it learn them?
        learnt = wait_for(lambda: dports <= lab.kernel_conns("d1"), 15)
        out["old_master_learns_during"] = "yes" if learnt else \
            f"no ({len(dports - lab.kernel_conns('d1'))}/{m} missing after 15 s)"
        # failback
        lab.start("d1", kind)
        wait_for(lambda: lab.state("d1") == "MASTER", 120)
        t1 = time.monotonic()
        missing = dports - lab.kernel_conns("d1")
        out["during_missing_at_takeover"] = f"{len(missing)}/{m}"
        complete = not missing or wait_for(lambda: dports <= lab.kernel_conns("d1"), 30)
        out["takeover_to_table_complete_s"] = (
            "0 (complete)" if not missing else
            f"{time.monotonic() - t1:.1f}" if complete else "never (30 s)")
        wait_for(lambda: lab.routed_via("d1"), 60)
        every = held + during
        mark = client.marks(every)
        wait_for(lambda: client.progressed(every, mark), 30)
        kept_all = [c for c in every if c.error is None and c.received > mark[id(c)]]
        kept_during = [c for c in during if c in kept_all]
        out["failback_kept"] = f"{len(kept_all)}/{n + m} ({len(kept_during)}/{m} opened " \
                               "during the failover)"
    finally:
        lab.close()
    return out


def in_vm(args: argparse.Namespace) -> int:
    cols = ("variant", "sync_to_backup_s", "kill_kept", "old_master_learns_during",
            "during_missing_at_takeover", "takeover_to_table_complete_s", "failback_kept",
            "error")
    print(" | ".join(cols))
    for v in args.variants:
        t = time.monotonic()
        try:
            row = run_variant(v, args.conns, args.during)
        except Exception as exc:  # one variant failing must not hide the others' figures
            row = {"variant": v, "error": f"{type(exc).__name__}: {exc}"}
        print(" | ".join(row.get(c, "") for c in cols) + f"   ({time.monotonic() - t:.0f} s)",
              flush=True)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--during", type=int, default=10)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    ap.add_argument("--smp", type=int, default=2)
    ap.add_argument("--in-vm", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.in_vm:
        return in_vm(args)
    import ipvsvm

    why = ipvsvm.missing()
    if why:
        print(f"cannot run: {why}")
        return 2
    argv = [sys.executable, str(Path(__file__).resolve()), "--in-vm", "--conns",
            str(args.conns), "--during", str(args.during), "--variants", *args.variants]
    res = ipvsvm.run(argv, cwd=REPO, smp=args.smp, mem_mb=2048, timeout=3600)
    with contextlib.suppress(BrokenPipeError):
        print(res.output)
    if res.vm_failed:
        print(res.stderr[-3000:])
    return res.returncode


if __name__ == "__main__":
    sys.exit(main())
