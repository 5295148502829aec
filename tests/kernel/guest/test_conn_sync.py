"""Established connections survive a director failover and the failback: IPVS connection sync
driven by ``lvs_sync_daemon``, on REAL kernel IPVS, in the VM.

The lab (network namespaces on one bridge, all inside the VM): two directors d1 (priority 150)
and d2 (100), each running ``lvsd run --dataplane ipvs`` on its own namespace's kernel IPVS, one
VRRP instance holding the service VIP 192.0.2.100 and the NAT real servers' gateway 10.0.0.254
(the inside VIP moves with the outside one: conf/nat's pattern), ``lvs_sync_daemon eth0 VI_1``
(lvsd's default mode: a backup sync daemon on both, a master one on the master). Two DR real
servers (192.0.2.21/22, VIP on lo, port 7000) and two NAT ones (10.0.0.11/12, port 7001) echo
what they get. The client holds long-lived TCP connections through the VIP, half DR, half NAT,
each sending a line every 100 ms and reading its echo.

The scenario, each step asserted on every connection:

1. d1 MASTER; 50 connections through it. The backup's kernel table (``ipvsadm -Lnc`` in d2)
   holds every one of them (the time it took is reported).
2. SIGKILL of d1's lvsd. d2 becomes MASTER; once the client's and the NAT servers' ARP entries
   point at d2 (its gratuitous ARPs), every connection goes on through d2 (d1's kernel, still
   running, no longer sees their packets).
3. While d2 is master, 10 more connections are opened (through d2). d1's kernel learns them
   (its backup daemon kept running after its lvsd died).
4. d1's lvsd starts again, adopts its kernel's sync daemons, preempts: every connection (the
   60) goes on through d1.
5. The control, same lab: a reload drops ``lvs_sync_daemon`` on both (the daemons stop), 10
   new connections are opened through d1, d1's lvsd is SIGKILLed again: the 60 synced earlier
   go on through d2, the 10 new ones are lost (reset by d2, which has no entry for them). So
   the test fails when sync does not work.

Figures (sync delay, failover times, connections lost) go to ``$LVSD_VM_OUT/conn_sync.report``.
Waits are bounded (generous under emulation), never timed assertions.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from connsync import DIRECTORS, Conn, SyncLab, wait_for

N_CONNS = 50  # held through the failover (half DR, half NAT)
N_DURING = 10  # opened while d2 is master
REPORT: list[str] = []


def report(line: str) -> None:
    REPORT.append(line)
    print(line, flush=True)


@pytest.fixture
def lab() -> Iterator[SyncLab]:
    lab = SyncLab()
    try:
        lab.build()
        yield lab
    finally:
        lab.close()
        text = "== connection sync (lvs_sync_daemon) on kernel IPVS ==\n" + "\n".join(REPORT)
        out = os.environ.get("LVSD_VM_OUT")
        if out:
            Path(out, "conn_sync.report").write_text(text + "\n")


def _alive(conns: list[Conn]) -> list[Conn]:
    return [c for c in conns if c.error is None]


# two lvsd starts and a restart under software emulation: far above pytest's default bound
@pytest.mark.timeout(1200)
def test_connections_survive_failover_and_failback(lab: SyncLab) -> None:
    client = lab.client
    assert client is not None
    t_start = time.monotonic()
    lab.write_config(sync=True)
    with ThreadPoolExecutor(2) as pool:
        for f in [pool.submit(lab.start, d) for d in DIRECTORS]:
            f.result()
    assert wait_for(lambda: lab.state("d1") == "MASTER"), lab.logs()
    assert wait_for(lambda: lab.state("d2") == "BACKUP"), lab.logs()
    report(f"lab up in {time.monotonic() - t_start:.1f} s")
    # lvsd's default mode: both run a backup daemon, the master a master one too
    assert "master sync daemon" in lab.daemons("d1") and "backup sync daemon" in lab.daemons("d1")
    assert "master sync daemon" not in lab.daemons("d2")
    assert "backup sync daemon (mcast=eth0, syncid=51" in lab.daemons("d2")
    s = lab.status("d1")
    assert s is not None
    sds = {d["role"]: d for d in s["reconciler"]["sync_daemons"]}
    assert sds["master"]["running"] and sds["backup"]["running"], sds
    assert s["reconciler"]["sync_vrrp_state"] == "MASTER"

    # 1. connections through d1; d2's kernel learns every one
    held = client.open(N_CONNS)
    t0 = time.monotonic()
    mark = client.marks(held)
    assert wait_for(lambda: client.progressed(held, mark)), "traffic through d1 never flowed"
    assert wait_for(lambda: lab.routed_via("d1")), lab.where()
    ports = {c.local for c in held}
    assert wait_for(lambda: ports <= lab.kernel_conns("d2")), (
        f"d2's kernel is missing {sorted(ports - lab.kernel_conns('d2'))}\n{lab.logs()}")
    report(f"d2 (backup) kernel holds all {N_CONNS} connections "
           f"{time.monotonic() - t0:.1f} s after they were established")
    assert _alive(held) == held

    # 2. SIGKILL of the master's lvsd: d2 takes over, every connection goes on through it
    t1 = time.monotonic()
    lab.kill("d1")
    assert wait_for(lambda: lab.state("d2") == "MASTER"), lab.logs()
    assert wait_for(lambda: lab.routed_via("d2")), f"traffic never moved to d2: {lab.where()}"
    mark = client.marks(held)
    assert wait_for(lambda: client.progressed(held, mark)), "connections stalled on d2"
    lost = [c for c in held if c.error is not None]
    report(f"master SIGKILL -> d2: {len(held) - len(lost)}/{len(held)} connections kept "
           f"({time.monotonic() - t1:.1f} s until d2 carried them)")
    assert not lost, [(c.port, c.error) for c in lost]
    assert "master sync daemon" in lab.daemons("d2")

    # 3. connections opened during the failover reach d1's kernel (its backup daemon runs on)
    during = client.open(N_DURING)
    mark = client.marks(during)
    assert wait_for(lambda: client.progressed(during, mark)), "new connections through d2"
    dports = {c.local for c in during}
    assert wait_for(lambda: dports <= lab.kernel_conns("d1")), (
        f"d1's kernel is missing {sorted(dports - lab.kernel_conns('d1'))}")

    # 4. failback: d1's lvsd returns, adopts its daemons, preempts; every connection goes on
    t2 = time.monotonic()
    off = len(lab.log("d1", 0))
    lab.start("d1")
    assert wait_for(lambda: lab.state("d1") == "MASTER"), lab.logs()
    assert wait_for(lambda: lab.routed_via("d1")), f"traffic never moved back: {lab.where()}"
    every = held + during
    mark = client.marks(every)
    assert wait_for(lambda: client.progressed(every, mark)), "connections stalled on d1"
    lost = [c for c in every if c.error is not None]
    report(f"failback -> d1: {len(every) - len(lost)}/{len(every)} connections kept "
           f"({N_DURING} opened during the failover; {time.monotonic() - t2:.1f} s incl. the "
           "lvsd start)")
    assert not lost, [(c.port, c.error) for c in lost]
    # the restart adopted the backup daemon its kernel ran on (no restart of it), stopped the
    # stale master one while BACKUP and started it again as MASTER
    restart = lab.log("d1", off)
    assert "start sync daemon backup" not in restart, restart
    assert "start: stop sync daemon master" in restart, restart
    assert "vrrp: start sync daemon master" in restart, restart

    # 5. the control: without lvs_sync_daemon, connections opened now are lost on failover
    lab.write_config(sync=False)
    before = {d: (lab.status(d) or {}).get("config", {}).get("reloads_total") for d in DIRECTORS}
    for d in DIRECTORS:
        lab.procs[d].send_signal(signal.SIGHUP)
    assert wait_for(lambda: all(
        (lab.status(d) or {}).get("config", {}).get("reloads_total") == before[d] + 1
        for d in DIRECTORS)), lab.logs()
    assert wait_for(lambda: "sync daemon" not in lab.daemons("d1") + lab.daemons("d2")), (
        lab.daemons("d1"), lab.daemons("d2"))
    unsynced = client.open(N_DURING)
    mark = client.marks(unsynced)
    assert wait_for(lambda: client.progressed(unsynced, mark)), "connections through d1"
    lab.kill("d1")
    assert wait_for(lambda: lab.state("d2") == "MASTER"), lab.logs()
    assert wait_for(lambda: lab.routed_via("d2")), f"traffic never moved to d2: {lab.where()}"
    assert wait_for(lambda: all(c.error is not None for c in unsynced)), \
        "connections d2 never heard of survived: the control proves nothing"
    mark = client.marks(every)
    assert wait_for(lambda: client.progressed(every, mark))
    kept = len(_alive(every))
    report(f"without lvs_sync_daemon, master SIGKILL -> d2: 0/{N_DURING} new connections "
           f"kept (reset by d2); {kept}/{len(every)} synced earlier kept")
    assert kept == len(every)
    report(f"total {time.monotonic() - t_start:.1f} s")
