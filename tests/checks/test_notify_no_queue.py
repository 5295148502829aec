"""The notifier with real scripts: state notifications never queue behind a slow script, and
``notify_master_rx_lower_pri`` runs are coalesced (issue 16 item 4; lvsd.vrrp.notify).

Bounds are generous (a busy machine); the figures are printed.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from lvsd.vrrp.notify import ORDER_GRACE, Notifier, ScriptSpec

pytestmark = pytest.mark.realserver


def _script(d: Path, name: str, body: str) -> str:
    p = d / name
    p.write_text(f"#!/bin/sh\n{body}\n")
    p.chmod(0o755)
    return str(p)


async def _until(cond: object, limit: float = 20.0) -> None:
    end = time.monotonic() + limit
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < end, "never happened"
        await asyncio.sleep(0.02)


async def test_hung_script_delays_the_next_state_by_the_grace_only(tmp_path: Path) -> None:
    rec = tmp_path / "rec"
    stamp = _script(tmp_path, "stamp.sh", f'echo "$1 $(date +%s.%N)" >> {rec}')
    n = Notifier("INSTANCE", "VI_1", {
        "MASTER": ScriptSpec("/bin/sleep 600"),
        "BACKUP": ScriptSpec(f"{stamp} backup"),
        "FAULT": ScriptSpec(f"{stamp} fault"),
        "notify": ScriptSpec(f"{stamp} generic"),
    }, (), timeout=10.0)  # the hung script is killed after 10 s
    n.notify("MASTER", 100)
    t0 = time.time()
    n.notify("BACKUP", 100)
    n.notify("FAULT", 100)
    await _until(lambda: rec.exists() and len(rec.read_text().splitlines()) == 5)
    # started in the order of the transitions (by their start times: a script's line may be
    # appended after a later one's)
    lines = sorted((float(t), w) for w, t in (ln.split() for ln in rec.read_text().splitlines()))
    assert [w for _, w in lines] == ["generic", "backup", "generic", "fault", "generic"], lines
    delay = lines[1][0] - t0
    print(f"notify_backup started {delay:.2f} s after it was due behind a hung "
          f"notify_master (grace {ORDER_GRACE:g} s)")
    assert delay < 5.0  # not the 10 s of the hung script's timeout
    await n.drain(30)
    assert n.stats.timed_out == 1


async def test_rx_lower_pri_is_coalesced_and_never_blocks_states(tmp_path: Path) -> None:
    rec = tmp_path / "rec"
    rx = _script(tmp_path, "rx.sh", f'echo rx >> {rec}; sleep 2')
    backup = _script(tmp_path, "backup.sh", f"echo backup >> {rec}")
    n = Notifier("INSTANCE", "VI_1", {
        "MASTER_RX_LOWER_PRI": ScriptSpec(rx),
        "BACKUP": ScriptSpec(backup),
    }, (), timeout=30.0)
    for _ in range(600):  # a flood of lower-priority adverts
        n.notify("MASTER_RX_LOWER_PRI", 100)
    n.notify("BACKUP", 100)
    await _until(lambda: rec.exists() and "backup" in rec.read_text())
    await n.drain(20)
    lines = rec.read_text().split()
    print(f"600 lower-priority notifications ran the script {lines.count('rx')} times")
    # one running and one pending: two runs, and notify_backup did not wait for them
    assert lines.count("rx") == 2, lines
    assert lines.index("backup") < 2, lines
    assert n.stats.coalesced == 598
