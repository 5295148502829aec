"""``notify_stop`` does not run for an instance that never started (issue 16 item 8).

A real ``VrrpRunner`` inside a namespace (raw socket on eth0, netlink link dump) is stopped
while its ``start()`` is still under way (SIGTERM during startup): the worker is running but
the machine has not started. No state was ever announced (no ``notify_backup``), so no
``notify_stop`` may run either; and nothing of the start may be left running afterwards. Then,
as the control, a runner that did start runs ``notify_stop`` when stopped.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from lvsd.lab.netns import Topology
from wirelab import wire_topology

pytestmark = pytest.mark.netns

SCRIPT = r"""
import asyncio, sys
from pathlib import Path
from ipaddress import ip_address
from lvsd.vrrp.notify import Notifier, ScriptSpec
from lvsd.vrrp.params import TrackedInterface, VrrpParams
from lvsd.vrrp.runner import InstanceSpec, VrrpRunner

d = Path(sys.argv[1])


def runner(tag):
    rec = str(d / "record.sh")
    notifier = Notifier("INSTANCE", "VI_1", {
        "STOP": ScriptSpec(f"{rec} stop-{tag}"), "BACKUP": ScriptSpec(f"{rec} backup-{tag}")})
    params = VrrpParams(name="VI_1", vrid=51, priority=100, advert_int=1.0,
                        addresses=(ip_address("192.0.2.100"),),
                        track_interfaces=(TrackedInterface("eth0", 0),))
    return VrrpRunner(InstanceSpec(params=params, interface="eth0", notifier=notifier))


async def main():
    # stopped while starting: once its worker runs, start() waits for the netlink link dump
    r = runner("early")
    start = asyncio.get_running_loop().create_task(r.start())
    while r._worker is None:
        await asyncio.sleep(0)
    await r.stop()
    await start
    print("early-state", r.state().value)
    leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()
                and not t.done()]
    print("leftover", len(leftover))
    # control: started, then stopped
    r = runner("late")
    await r.start()
    await r.stop()
    print("late-state", r.state().value)


asyncio.run(main())
"""

RECORD = """#!/bin/sh
echo "$1" >> {d}/notified
"""


@pytest.fixture
def topo() -> Iterator[Topology]:
    with wire_topology("lt-vrearly", wire=False) as t:
        yield t


def test_no_notify_stop_for_an_instance_that_never_started(topo: Topology,
                                                            tmp_path: Path) -> None:
    rec = tmp_path / "record.sh"
    rec.write_text(RECORD.format(d=tmp_path))
    rec.chmod(0o755)
    p = topo["d1"].run(sys.executable, "-c", SCRIPT, str(tmp_path), check=False, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    out = p.stdout.split()
    notified = (tmp_path / "notified").read_text().split()
    print(out, notified)
    assert "stop-early" not in notified and "backup-early" not in notified, notified
    assert out[out.index("early-state") + 1] == "STOPPED"
    assert out[out.index("leftover") + 1] == "0", p.stdout  # nothing of the start runs on
    # the control: a runner that started announces its state and its stop
    assert notified == ["backup-late", "stop-late"], notified
